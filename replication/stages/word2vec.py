"""DVC stage `word2vec`: the custom embedding, one gensim model per split (trained on that split's training reports)."""

from __future__ import annotations

import time

from replication.data.store import read_cohort
from replication.io import atomic_path, write_json
from replication.models.embeddings import embedding_matrix, train_word2vec
from replication.params import load_params
from replication.text_experiment import clean_cases, text_split

OUT = "outputs/word2vec"


def main(argv: list[str] | None = None) -> int:
    params = load_params()
    cohort = read_cohort("outputs/prepared/iu")
    w2v, text = params["word2vec"], params["text"]
    metrics = {"corpus": w2v["corpus"], "synthetic": cohort.synthetic, "splits": {}}
    with atomic_path(OUT) as tmp:
        tmp.mkdir()
        for k, column in enumerate(cohort.split_columns):
            split = text_split(cohort.cases, column, text)
            corpus = split.docs["train"] if w2v["corpus"] == "train" else list(clean_cases(cohort.cases, text["keep_negations"])[0]["tokens"])
            start = time.perf_counter()
            vectors = train_word2vec(corpus, dim=w2v["dim"], window=w2v["window"], min_count=w2v["min_count"],
                                     epochs=w2v["epochs"], sg=w2v["sg"], seed=int(params["seed"]) + k)
            seconds = time.perf_counter() - start
            vectors.save(str(tmp / f"split_{k}.kv"))
            _, coverage = embedding_matrix(split.vocab, vectors, w2v["dim"])
            metrics["splits"][column] = {"words": len(vectors.index_to_key), "vocabulary": len(split.vocab.words),
                                         "coverage": coverage, "train_reports": len(corpus), "seconds": seconds}
            print(f"word2vec {column}: {len(vectors.index_to_key)} words, coverage {coverage:.3f}, {seconds:.1f} s")
        write_json(tmp / "metrics.json", metrics)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
