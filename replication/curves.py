"""Paper Table 3 and Fig. 5 from the tidy curve table: one row per (setting, model, split, epoch).

The paper reports accuracy "on average of 50 epochs": the mean over epochs of the validation accuracy.
Here each split gives one such mean (and a final-epoch and a best-epoch accuracy, and the final AUROC);
the table shows mean ± std over splits, and the paired differences multimodal − text and
multimodal − image with a 95% t-interval across splits (the same splits for every model).
"""

from __future__ import annotations

from typing import Any, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from replication.errors import DataError

CURVE_COLUMNS = ("setting", "model", "split", "epoch", "val_accuracy", "val_loss", "val_auroc")
MODELS = ("multimodal", "text", "image")


def check_curves(curves: pd.DataFrame) -> pd.DataFrame:
    """One row per (setting, model, split, epoch), every column present."""
    missing = [c for c in CURVE_COLUMNS if c not in curves.columns]
    if missing:
        raise DataError("curves table", f"missing columns {missing}")
    dup = curves.duplicated(["setting", "model", "split", "epoch"])
    if dup.any():
        row = curves.loc[dup].iloc[0]
        raise DataError("curves table", "more than one row for one (setting, model, split, epoch)", record=tuple(row[["setting", "model", "split", "epoch"]]))
    return curves


def per_split(curves: pd.DataFrame) -> pd.DataFrame:
    """For each (setting, model, split): mean accuracy over epochs, final, best, final AUROC, epochs."""
    check_curves(curves)
    ordered = curves.sort_values("epoch")
    grouped = ordered.groupby(["setting", "model", "split"], sort=False)
    return grouped.agg(
        mean_accuracy=("val_accuracy", "mean"),
        final_accuracy=("val_accuracy", "last"),
        best_accuracy=("val_accuracy", "max"),
        final_auroc=("val_auroc", "last"),
        epochs=("epoch", "max"),
    ).reset_index()


def paired_difference(values_a: np.ndarray, values_b: np.ndarray, confidence: float = 0.95) -> dict[str, float]:
    """Mean of a − b over paired splits with a t-interval; with one split the interval is undefined (NaN)."""
    d = np.asarray(values_a, float) - np.asarray(values_b, float)
    mean = float(d.mean())
    if len(d) < 2:
        return {"mean": mean, "low": float("nan"), "high": float("nan"), "splits": int(len(d))}
    half = float(stats.t.ppf(0.5 + confidence / 2, len(d) - 1) * d.std(ddof=1) / np.sqrt(len(d)))
    return {"mean": mean, "low": mean - half, "high": mean + half, "splits": int(len(d))}


def table3(curves: pd.DataFrame, reference: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Per setting and model: mean ± std over splits of each per-split statistic, the paper's number, and paired gaps."""
    splits = per_split(curves)
    out: dict[str, Any] = {}
    for setting, rows in splits.groupby("setting", sort=False):
        entry: dict[str, Any] = {"models": {}, "differences": {}}
        for model, group in rows.groupby("model", sort=False):
            entry["models"][model] = {
                col: {"mean": float(group[col].mean()), "std": float(group[col].std(ddof=1)) if len(group) > 1 else 0.0}
                for col in ("mean_accuracy", "final_accuracy", "best_accuracy", "final_auroc")
            }
            entry["models"][model]["splits"] = int(len(group))
            entry["models"][model]["epochs"] = int(group["epochs"].max())
            paper = (reference or {}).get(setting, {}).get(model)
            entry["models"][model]["paper_mean_accuracy"] = paper
        wide = rows.pivot(index="split", columns="model", values="mean_accuracy")
        for other in ("text", "image"):
            if "multimodal" in wide and other in wide:
                paired = wide[["multimodal", other]].dropna()
                entry["differences"][f"multimodal - {other}"] = paired_difference(paired["multimodal"], paired[other])
        out[str(setting)] = entry
    return out


def table3_markdown(summary: Mapping[str, Any], synthetic: bool, baselines: Mapping[str, Mapping[str, float]] | None = None) -> str:
    """Table 3 as Markdown, one block per learning-rate setting."""
    cell = lambda s: f"{s['mean']:.3f} ± {s['std']:.3f}"
    lines = ["> SYNTHETIC DATA: these numbers are not comparable with the paper's.\n"] if synthetic else []
    for setting, entry in summary.items():
        lines += [f"**{setting}**\n", "| model | accuracy, mean over epochs | final epoch | best epoch | final AUROC | splits × epochs | paper |",
                  "|---|---|---|---|---|---|---|"]
        for model, s in entry["models"].items():
            paper = s.get("paper_mean_accuracy")
            lines.append(f"| {model} | {cell(s['mean_accuracy'])} | {cell(s['final_accuracy'])} | {cell(s['best_accuracy'])} | "
                         f"{cell(s['final_auroc'])} | {s['splits']} × {s['epochs']} | {paper if paper is not None else '—'} |")
        for name, b in (baselines or {}).items():
            lines.append(f"| {name} (baseline) | {b['accuracy']:.3f} | | | {b.get('auroc', float('nan')):.3f} | | — |")
        for name, d in entry["differences"].items():
            lines.append(f"\n{name}: {d['mean']:+.3f} (95% interval {d['low']:+.3f} to {d['high']:+.3f}, {d['splits']} paired splits)")
        lines.append("")
    return "\n".join(lines) + "\n"
