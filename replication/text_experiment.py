"""The paper's Table 2: the text CNN with custom / generic / random embeddings, and the baselines.

Every variant is trained and evaluated on the same stratified splits; train, validation and test
accuracy (and AUROC) are reported as mean ± std over splits.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from replication.data.store import Exclusions
from replication.data.text import Vocabulary, clean_report
from replication.errors import DataError, ParameterError

PARTS = ("train", "val", "test")


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


def text_split(cases: pd.DataFrame, split: str, text: Mapping[str, Any],
               cleaned: tuple[pd.DataFrame, Exclusions] | None = None) -> TextSplit:
    """Encode one split. `text.tokenizer_defect` re-fits the vocabulary on each evaluation part, as the authors' notebook did.
    `cleaned`: `clean_cases(cases, text.keep_negations)` computed once by a caller that encodes many splits."""
    if split not in cases.columns:
        raise DataError("prepared cohort", f"no split column {split!r}")
    cleaned, excluded = cleaned if cleaned is not None else clean_cases(cases, bool(text.get("keep_negations", False)))
    docs = {p: list(cleaned.loc[cleaned[split] == p, "tokens"]) for p in PARTS}
    labels = {p: cleaned.loc[cleaned[split] == p, "label"].to_numpy(np.float32) for p in PARTS}
    for p in PARTS:
        if len(docs[p]) == 0:
            raise DataError(split, f"the {p} part has no reports")
    vocab = Vocabulary.fit(docs["train"], int(text.get("max_words", 15000)))
    length = int(text.get("sequence_length", 140))
    ids, truncated = {}, {}
    for p in PARTS:
        encoder = vocab if p == "train" or not text.get("tokenizer_defect", False) else Vocabulary.fit(docs[p], int(text.get("max_words", 15000)))
        ids[p], truncated[p] = encoder.encode(docs[p], length)
    return TextSplit(docs, labels, ids, vocab, truncated, excluded)


def train_text_cnn(
    split: TextSplit,
    embedding_matrix: np.ndarray,
    cnn: Mapping[str, Any],
    seed: int,
    name: str,
    history_path: str | Path | None = None,
) -> tuple[dict[str, dict[str, float]], dict[str, list[float]], Any]:
    """Train the Kim CNN on one split; returns per-part metrics, the per-epoch history and the model."""
    from replication.models.text_cnn import compile_text_cnn, text_cnn
    from replication.train import evaluate_binary, fit_binary, seed_everything

    seed_everything(seed)
    model = text_cnn(
        vocab_size=embedding_matrix.shape[0], embedding_dim=embedding_matrix.shape[1],
        sequence_length=split.ids["train"].shape[1], kernel_sizes=tuple(cnn.get("kernel_sizes", (3, 4, 5))),
        feature_maps=int(cnn.get("feature_maps", 10)), l2=float(cnn.get("l2", 0.03)), dropout=float(cnn.get("dropout", 0.5)),
        pool_size=cnn.get("pool_size", 2), embedding_matrix=embedding_matrix,
    )
    compile_text_cnn(model, float(cnn.get("learning_rate", 1.0)), float(cnn.get("clipvalue", 3.0)), cnn.get("optimizer", "adadelta"))
    start = time.perf_counter()
    history = fit_binary(model, (split.ids["train"], split.labels["train"]), (split.ids["val"], split.labels["val"]),
                         epochs=int(cnn.get("epochs", 10)), batch_size=int(cnn.get("batch_size", 32)), name=name, history_path=history_path)
    seconds = time.perf_counter() - start
    metrics = {p: evaluate_binary(model, split.ids[p], split.labels[p]) for p in PARTS}
    metrics["train_seconds"] = {"value": seconds, "reports_per_second": len(split.labels["train"]) * len(history["epoch"]) / seconds}
    return metrics, history, model


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


def table2_markdown(summary: Mapping[str, Any], reference: Mapping[str, Mapping[str, float]], synthetic: bool) -> str:
    """Table 2 as Markdown: train/val/test accuracy (mean ± std over splits), AUROC, and the paper's numbers."""
    lines = []
    if synthetic:
        lines.append("> SYNTHETIC DATA: these numbers are not comparable with the paper's.\n")
    lines.append("| model | train acc | val acc | test acc | test AUROC | splits | paper train/val/test |")
    lines.append("|---|---|---|---|---|---|---|")
    for variant, s in summary.items():
        paper = reference.get(variant)
        paper_text = "/".join(f"{paper[p]:.2f}" for p in PARTS) if paper else "—"
        if "not_run" in s:
            lines.append(f"| {variant} | not run: {s['not_run']} | | | | | {paper_text} |")
            continue
        cell = lambda k: f"{s[k]['mean']:.3f} ± {s[k]['std']:.3f}"
        lines.append(f"| {variant} | {cell('train_accuracy')} | {cell('val_accuracy')} | {cell('test_accuracy')} | {cell('test_auroc')} | {s['splits']} | {paper_text} |")
    return "\n".join(lines) + "\n"


def check_variants(variants: Sequence[str]) -> list[str]:
    from replication.models.embeddings import VARIANTS

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ParameterError("table2.variants", list(variants), f"names from {VARIANTS}")
    return list(variants)
