"""Paper Table 2 (§2.1): the text CNN with custom / generic / random embeddings, beside the baselines.

The custom embedding is gensim word2vec trained per split on that split's training reports
(`custom_embeddings`, the `word2vec` stage). Every variant is trained and evaluated on the same stratified
splits; train, validation and test accuracy (and AUROC) are reported as mean ± std over splits, with the
TF-IDF + logistic-regression and majority-class baselines on the same cases.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from replication.data.store import Cohort, Exclusions
from replication.data.text import Vocabulary, clean_report, corpus_statistics
from replication.errors import DataError, ParameterError
from replication.experiments.reference import paper_value
from replication.params import StatisticsParams, Table2Params, TextCnnParams, TextParams, Word2VecParams

PARTS = ("train", "val", "test")
BASELINES = ("tf-idf + logistic regression", "majority class")


# ---------------------------------------------------------------------------------------------- data
@dataclass
class TextSplit:
    """One split's cleaned documents, labels and encoded ids, with the vocabulary fitted on its train part."""

    docs: dict[str, list[list[str]]]
    labels: dict[str, np.ndarray]
    ids: dict[str, np.ndarray]
    vocab: Vocabulary
    truncated: dict[str, int]
    exclusions: Exclusions = field(default_factory=Exclusions)


def clean_cases(cases: pd.DataFrame, keep_negations: bool) -> tuple[pd.DataFrame, Exclusions]:
    """Add a `tokens` column; reports with no token left after cleaning are excluded and counted."""
    out = cases.copy()
    out["tokens"] = [clean_report(t, keep_negations) for t in out["text"].fillna("")]
    empty = out["tokens"].map(len).eq(0)
    excluded = Exclusions()
    excluded.add("text", "no token left after cleaning", out.loc[empty, "case_id"])
    return out[~empty].reset_index(drop=True), excluded


def text_split(cases: pd.DataFrame, split: str, text: TextParams,
               cleaned: tuple[pd.DataFrame, Exclusions] | None = None) -> TextSplit:
    """Encode one split. `text.tokenizer_defect` re-fits the vocabulary on each evaluation part, as the authors' notebook did.
    `cleaned`: `clean_cases(cases, text.keep_negations)` computed once by a caller that encodes many splits."""
    if split not in cases.columns:
        raise DataError("prepared cohort", f"no split column {split!r}")
    cleaned, excluded = cleaned if cleaned is not None else clean_cases(cases, text.keep_negations)
    docs = {p: list(cleaned.loc[cleaned[split] == p, "tokens"]) for p in PARTS}
    labels = {p: cleaned.loc[cleaned[split] == p, "label"].to_numpy(np.float32) for p in PARTS}
    for p in PARTS:
        if len(docs[p]) == 0:
            raise DataError(split, f"the {p} part has no reports")
    vocab = Vocabulary.fit(docs["train"], text.max_words)
    ids, truncated = {}, {}
    for p in PARTS:
        encoder = vocab if p == "train" or not text.tokenizer_defect else Vocabulary.fit(docs[p], text.max_words)
        ids[p], truncated[p] = encoder.encode(docs[p], text.sequence_length)
    return TextSplit(docs, labels, ids, vocab, truncated, excluded)


# ----------------------------------------------------------------------------------- the custom embedding
def custom_embeddings(cohort: Cohort, text: TextParams, w2v: Word2VecParams, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    """word2vec per split ({split column: KeyedVectors}) and, per split, the vocabulary coverage and corpus size.

    `w2v.corpus`: 'train' (this package: the split's training reports) or 'all' (every report, as the authors'
    notebook, which leaks the evaluation reports into the embedding)."""
    from replication.models.embeddings import embedding_matrix, train_word2vec

    if w2v.corpus not in ("train", "all"):
        raise ParameterError("word2vec.corpus", w2v.corpus, "'train' or 'all'")
    vectors, summary = {}, {}
    for k, column in enumerate(cohort.split_columns):
        split = text_split(cohort.cases, column, text)
        corpus = split.docs["train"] if w2v.corpus == "train" else list(clean_cases(cohort.cases, text.keep_negations)[0]["tokens"])
        vectors[column] = train_word2vec(corpus, dim=w2v.dim, window=w2v.window, min_count=w2v.min_count,
                                         epochs=w2v.epochs, sg=w2v.sg, seed=seed + k)
        _, coverage = embedding_matrix(split.vocab, vectors[column], w2v.dim)
        summary[column] = {"words": len(vectors[column].index_to_key), "vocabulary": len(split.vocab.words),
                           "coverage": coverage, "train_reports": len(corpus)}
    return vectors, summary


# ------------------------------------------------------------------------------------------- training
def train_text_cnn(split: TextSplit, embedding_matrix: np.ndarray, cnn: TextCnnParams, seed: int, name: str,
                   history_path: str | Path | None = None) -> tuple[dict[str, dict[str, float]], dict[str, list[float]], Any]:
    """Train the Kim CNN on one split; returns per-part metrics, the per-epoch history and the model."""
    from replication.models.text_cnn import compile_text_cnn, text_cnn
    from replication.training.loop import fit_binary
    from replication.training.metrics import evaluate_binary
    from replication.training.seeding import seed_everything

    seed_everything(seed)
    model = text_cnn(vocab_size=embedding_matrix.shape[0], embedding_dim=embedding_matrix.shape[1],
                     sequence_length=split.ids["train"].shape[1], kernel_sizes=tuple(cnn.kernel_sizes),
                     feature_maps=cnn.feature_maps, l2=cnn.l2, dropout=cnn.dropout, pool_size=cnn.pool_size,
                     embedding_matrix=embedding_matrix)
    compile_text_cnn(model, cnn.learning_rate, cnn.clipvalue, cnn.optimizer)
    history = fit_binary(model, (split.ids["train"], split.labels["train"]), (split.ids["val"], split.labels["val"]),
                         epochs=cnn.epochs, batch_size=cnn.batch_size, name=name, history_path=history_path)
    return {p: evaluate_binary(model, split.ids[p], split.labels[p]) for p in PARTS}, history, model


def check_variants(variants: Sequence[str]) -> list[str]:
    from replication.models.embeddings import VARIANTS

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ParameterError("table2.variants", list(variants), f"names from {VARIANTS}")
    return list(variants)


@dataclass
class Table2Result:
    runs: list[dict[str, Any]]                     # one per (variant, split): metrics, coverage, or why not run
    histories: dict[tuple[str, str], dict[str, list[float]]]   # (variant, split column) -> per-epoch history
    summary: dict[str, Any]
    corpus: dict[str, float]
    dataset: dict[str, float]                      # the paper's dataset facts, measured on this cohort
    notes: list[str] = field(default_factory=list)


def run_table2(cohort: Cohort, word2vec_dir: str | Path, text: TextParams, w2v: Word2VecParams, cnn: TextCnnParams,
               table: Table2Params, seed: int, log: Any = print) -> Table2Result:
    """Every embedding variant (and ablation: one `text` switch flipped) on every split, then the baselines.

    The custom variant reads the `word2vec` stage's vectors (`word2vec_dir`/split_<k>.kv); an ablation that changes
    the cleaning trains its own word2vec on its own training reports. A generic embedding file that is absent
    makes that variant 'not run' (with the reason), never a silent substitute."""
    from replication.models.baselines import majority_class, tfidf_logistic_regression, tfidf_scores
    from replication.models.embeddings import embedding_matrix, load_vectors, train_word2vec
    from replication.training.batches import predict_scores

    configs = [(v, v, text) for v in check_variants(table.variants)]
    for ablation in table.ablations:
        if not isinstance(getattr(text, ablation, None), bool):
            raise ParameterError("table2.ablations", list(table.ablations), "switches of the text section (true/false keys)")
        configs.append((f"custom ({ablation.replace('_', ' ')}: {not getattr(text, ablation)})", "custom",
                        replace(text, **{ablation: not getattr(text, ablation)})))
    notes, generic = [], None
    if "generic" in table.variants:
        try:
            generic = load_vectors(table.generic_path, expected_dim=w2v.dim)
        except DataError as e:
            notes.append(f"generic embedding not run: {e}")
            if log:
                log(f"table2: generic embedding not run: {e}")
    # the reports are cleaned once per cleaning setting, not once per variant and split
    cleaned = {keep: clean_cases(cohort.cases, keep) for keep in {c.keep_negations for _, _, c in configs} | {text.keep_negations}}
    runs: list[dict[str, Any]] = []
    histories: dict[tuple[str, str], dict[str, list[float]]] = {}
    for k, column in enumerate(cohort.split_columns):
        for name, variant, config in configs:
            split = text_split(cohort.cases, column, config, cleaned[config.keep_negations])
            if variant == "generic" and generic is None:
                runs.append({"variant": name, "split": column, "reason": f"no embedding file at {table.generic_path}"})
                continue
            if variant == "custom":
                vectors = (load_vectors(Path(word2vec_dir) / f"split_{k}.kv") if config == text else
                           train_word2vec(split.docs["train"], dim=w2v.dim, window=w2v.window, min_count=w2v.min_count,
                                          epochs=w2v.epochs, sg=w2v.sg, seed=seed + k))
            else:
                vectors = generic if variant == "generic" else None
            matrix, coverage = embedding_matrix(split.vocab, vectors, w2v.dim, seed=seed + k)
            metrics, history, model = train_text_cnn(split, matrix, cnn, seed=seed + k, name=f"{name} {column}")
            runs.append({"variant": name, "split": column, "metrics": metrics, "coverage": coverage,
                         "truncated": split.truncated, "excluded": len(split.exclusions),
                         "scores": {p: predict_scores(model, split.ids[p]).ravel().astype(float).tolist() for p in ("val", "test")},
                         "labels": {p: split.labels[p].astype(int).tolist() for p in ("val", "test")}})
            histories[(name, column)] = history
        split = text_split(cohort.cases, column, text, cleaned[text.keep_negations])
        parts = {p: (split.docs[p], split.labels[p]) for p in PARTS}
        tfidf = tfidf_scores(split.docs["train"], split.labels["train"], {p: split.docs[p] for p in ("val", "test")}, seed=seed)
        runs.append({"variant": BASELINES[0], "split": column,
                     "metrics": tfidf_logistic_regression(split.docs["train"], split.labels["train"], parts, seed=seed),
                     "scores": {p: tfidf[p].astype(float).tolist() for p in ("val", "test")},
                     "labels": {p: split.labels[p].astype(int).tolist() for p in ("val", "test")}})
        runs.append({"variant": BASELINES[1], "split": column, "counts": {p: int(len(split.labels[p])) for p in PARTS},
                     "majority": float(np.mean(split.labels["train"]) >= 0.5),
                     "metrics": majority_class(split.labels["train"], {p: split.labels[p] for p in PARTS})})
    corpus = corpus_statistics(list(cleaned[text.keep_negations][0]["tokens"]), text.sequence_length)
    counts = cohort.counts()
    dataset = {"reports": counts["cases"], "abnormal_fraction": counts["label_1"] / counts["cases"] if counts["cases"] else float("nan"),
               "cases_with_image": counts["cases_with_image"], "mean_words_per_report": corpus["mean_words"]}
    return Table2Result(runs, histories, summarise(runs), corpus, dataset, notes)


# ------------------------------------------------------------------------------------------- reporting
def summarise(runs: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Mean and std over splits of each part's accuracy and AUROC ('not run' variants are kept as such)."""
    out: dict[str, Any] = {}
    frame = pd.DataFrame([{"variant": r["variant"], "split": r["split"], **{f"{p}_{m}": r["metrics"][p][m] for p in PARTS for m in ("accuracy", "auroc")}}
                          for r in runs if r.get("metrics")])
    for variant, group in frame.groupby("variant", sort=False):
        out[variant] = {col: {"mean": float(group[col].mean()), "std": float(group[col].std(ddof=1)) if len(group) > 1 else 0.0}
                        for col in group.columns if col not in ("variant", "split")}
        out[variant]["splits"] = int(len(group))
    for r in runs:
        if not r.get("metrics"):
            out.setdefault(r["variant"], {"not_run": r.get("reason", "")})
    return out


# custom − each alternative: the paper's claim (custom beats generic), the random-embedding floor, the TF-IDF baseline
COMPARISONS = (("custom", "generic"), ("custom", "random"), ("custom", BASELINES[0]))


def table2_tests(runs: Sequence[Mapping[str, Any]], statistics: StatisticsParams, seed: int) -> dict[str, Any]:
    """Table 2 on the test split: per split each variant's and baseline's test AUROC (DeLong interval) and accuracy
    at the threshold chosen on validation, the paired tests of custom − generic / random / TF-IDF on the same test
    cases (DeLong, McNemar, paired bootstrap), and across splits the corrected resampled t-test."""
    from replication import statistics as st

    st.check_statistics(statistics.confidence, statistics.resamples)
    splits = []
    for column in dict.fromkeys(r["split"] for r in runs):
        here = [r for r in runs if r["split"] == column]
        scored = {r["variant"]: r for r in here if "scores" in r}
        majority = next(r for r in here if r["variant"] == BASELINES[1])
        labels = next(iter(scored.values()))["labels"]
        for name, r in scored.items():
            if r["labels"] != labels:
                raise DataError(column, f"{name} was scored on other test cases; the paired tests need the same ones")
        scores = {name: (r["scores"]["val"], r["scores"]["test"]) for name, r in scored.items()}
        splits.append({"split": column, "counts": majority["counts"],
                       **st.compare_on_test(labels["val"], labels["test"], scores, COMPARISONS, majority["majority"],
                                            statistics.resamples, statistics.confidence, seed)})
    n_train = float(np.mean([s["counts"]["train"] for s in splits]))
    n_test = float(np.mean([s["counts"]["test"] for s in splits]))
    return {"splits": splits, **st.summarise_splits(splits, n_train, n_test, statistics.confidence)}


def table2_metrics(result: Table2Result) -> dict[str, Any]:
    """What `dvc metrics` compares across commits: per variant the accuracies and test AUROC (mean and sd over splits),
    and the dataset facts the paper states."""
    keys = ("train_accuracy", "val_accuracy", "test_accuracy", "test_auroc")
    per_variant = {variant: {**{k: s[k]["mean"] for k in keys}, **{f"{k}_sd": s[k]["std"] for k in keys}}
                   for variant, s in result.summary.items() if "not_run" not in s}
    return {"variants": per_variant, "dataset": result.dataset}


def table2_markdown(summary: Mapping[str, Any], reference: Mapping[str, Any] | None, synthetic: bool) -> str:
    """Table 2 as Markdown: train/val/test accuracy (mean ± std over splits), AUROC, and the paper's numbers
    (`reference`: paper/reference.yaml, entries table2.<variant>.<part>)."""
    lines = []
    if synthetic:
        lines.append("> SYNTHETIC DATA: these numbers are not comparable with the paper's.\n")
    lines.append("| model | train acc | val acc | test acc | test AUROC | splits | paper train/val/test |")
    lines.append("|---|---|---|---|---|---|---|")
    for variant, s in summary.items():
        paper = [paper_value(reference, f"table2.{variant}.{p}") for p in PARTS]
        paper_text = "/".join(f"{v:.2f}" for v in paper) if None not in paper else "—"
        if "not_run" in s:
            lines.append(f"| {variant} | not run: {s['not_run']} | | | | | {paper_text} |")
            continue
        cell = lambda k: f"{s[k]['mean']:.3f} ± {s[k]['std']:.3f}"  # noqa: E731
        lines.append(f"| {variant} | {cell('train_accuracy')} | {cell('val_accuracy')} | {cell('test_accuracy')} | {cell('test_auroc')} | {s['splits']} | {paper_text} |")
    return "\n".join(lines) + "\n"
