"""DVC stage `table2`: the text CNN per embedding variant (+ ablations) and the baselines, over the splits."""

from __future__ import annotations

import pandas as pd
import yaml

from replication.data.store import read_cohort
from replication.errors import DataError
from replication.io import atomic_path, write_json, write_text
from replication.models.baselines import majority_class, tfidf_logistic_regression
from replication.models.embeddings import embedding_matrix, load_vectors, train_word2vec
from replication.params import load_params
from replication.data.text import corpus_statistics
from replication.text_experiment import PARTS, check_variants, clean_cases, summarise, table2_markdown, text_split, train_text_cnn

OUT = "results/{profile}/table2"  # one folder per profile, so real and synthetic results sit side by side


def main(argv: list[str] | None = None) -> int:
    params = load_params()
    cohort = read_cohort("outputs/prepared/iu")
    seed, text, cnn, w2v, table = int(params["seed"]), params["text"], params["text_cnn"], params["word2vec"], params["table2"]
    configs = [(v, v, dict(text)) for v in check_variants(table["variants"])]
    configs += [(f"custom ({a.replace('_', ' ')}: {not text[a]})", "custom", {**text, a: not text[a]}) for a in table.get("ablations", [])]
    generic = None
    try:
        generic = load_vectors(table["generic_path"], expected_dim=w2v["dim"]) if "generic" in table["variants"] else None
    except DataError as e:
        print(f"table2: generic embedding not run: {e}")
    runs, history_rows = [], []
    out = OUT.format(profile=params["profile"])
    # the reports are cleaned once per cleaning setting, not once per variant and split
    cleaned = {keep: clean_cases(cohort.cases, keep) for keep in {bool(c["keep_negations"]) for _, _, c in configs} | {bool(text["keep_negations"])}}
    with atomic_path(out) as tmp:
        tmp.mkdir()
        for k, column in enumerate(cohort.split_columns):
            for name, variant, text_config in configs:
                split = text_split(cohort.cases, column, text_config, cleaned[bool(text_config["keep_negations"])])
                if variant == "generic" and generic is None:
                    runs.append({"variant": name, "split": column, "reason": f"no embedding file at {table['generic_path']}"})
                    continue
                if variant == "custom":
                    vectors = (load_vectors(f"outputs/word2vec/split_{k}.kv") if text_config == text else
                               train_word2vec(split.docs["train"], dim=w2v["dim"], window=w2v["window"], min_count=w2v["min_count"],
                                              epochs=w2v["epochs"], sg=w2v["sg"], seed=seed + k))
                else:
                    vectors = generic if variant == "generic" else None
                matrix, coverage = embedding_matrix(split.vocab, vectors, w2v["dim"], seed=seed + k)
                metrics, history, _ = train_text_cnn(split, matrix, cnn, seed=seed + k, name=f"{name} {column}")
                runs.append({"variant": name, "split": column, "metrics": metrics, "coverage": coverage, "truncated": split.truncated,
                             "excluded": len(split.exclusions)})
                history_rows += [{"variant": name, "split": column, **{key: history[key][i] for key in history}} for i in range(len(history["epoch"]))]
            split = text_split(cohort.cases, column, text, cleaned[bool(text["keep_negations"])])
            parts = {p: (split.docs[p], split.labels[p]) for p in PARTS}
            runs.append({"variant": "tf-idf + logistic regression", "split": column,
                         "metrics": tfidf_logistic_regression(split.docs["train"], split.labels["train"], parts, seed=seed)})
            runs.append({"variant": "majority class", "split": column, "metrics": majority_class(split.labels["train"], {p: split.labels[p] for p in PARTS})})
        summary = summarise(runs)
        reference = yaml.safe_load(open("paper/reference.yaml"))["table2"]
        corpus = corpus_statistics(list(cleaned[bool(text["keep_negations"])][0]["tokens"]), int(text["sequence_length"]))
        write_json(tmp / "metrics.json", {"synthetic": cohort.synthetic, "source": cohort.source, "profile": params["profile"],
                                          "corpus": corpus, "summary": summary})
        write_json(tmp / "runs.json", runs)
        pd.DataFrame(history_rows).to_csv(tmp / "history.csv", index=False)
        write_text(tmp / "table2.md", table2_markdown(summary, reference, cohort.synthetic))
    print(open(f"{out}/table2.md").read())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
