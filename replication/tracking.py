"""Per-epoch series through dvclive: one folder per (setting, model, split), so `dvc plots show` draws one line each.

A fit's history (a dict of equal-length lists, `epoch` among them) is logged after the fit, not from a
callback, because the loop records validation metrics that Keras' callbacks do not see (AUROC, per-class
values) and a resumed fit restores its history from the checkpoint. Steps are the epoch numbers (1, 2, ...).
Each series folder holds `plots/metrics/<metric>.tsv`; dvclive's summary (`metrics.json`, the last epoch) is removed,
because `dvc plots show` reads every file of a plots folder and cannot draw a summary (the stage's own
metrics.json holds the numbers to compare).
dvclive asks git for the current commit: inside a git repository that has no commit yet it fails (a clone, or a
folder outside git, is fine).
"""

from __future__ import annotations

import math
import os
import re
from pathlib import Path
from typing import Any, Mapping, Sequence

SAFE = re.compile(r"[^A-Za-z0-9_.-]+")


def series_name(*parts: Any) -> str:
    """A folder name from the series' labels: `series_name("high", "text", "split_0")` -> 'high-text-split_0'."""
    return "-".join(SAFE.sub("_", str(p)).strip("_") for p in parts if str(p))


def log_history(directory: str | os.PathLike, history: Mapping[str, Sequence[Any]], metrics: Sequence[str] | None = None) -> Path:
    """Write `history` (per-epoch lists) to `directory` as a dvclive run; NaN epochs are left out of a series."""
    from dvclive import Live

    directory = Path(directory)
    keys = [k for k in (metrics or [k for k in history if k != "epoch"]) if k in history]
    with Live(str(directory), dvcyaml=None, save_dvc_exp=False, report=None) as live:
        for i, epoch in enumerate(history["epoch"]):
            live.step = int(epoch)
            for key in keys:
                value = history[key][i]
                if value is not None and isinstance(value, (int, float)) and math.isfinite(float(value)):
                    live.log_metric(key, float(value))
    (directory / "metrics.json").unlink(missing_ok=True)
    return directory


def log_histories(root: str | os.PathLike, histories: Mapping[str, Mapping[str, Sequence[Any]]],
                  metrics: Sequence[str] | None = None) -> list[Path]:
    """`log_history` for each named series under `root` (`{series_name(...): history}`)."""
    return [log_history(Path(root) / name, history, metrics) for name, history in histories.items()]
