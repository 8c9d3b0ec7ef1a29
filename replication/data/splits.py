"""Stratified, grouped train/val/test splits, repeatable from a seed and shared by every model.

Grouped: all cases of one group (a report's images, a patient's studies) fall on the same side,
which removes the frontal/lateral leakage of the authors' notebooks. Stratified: each side keeps the
label balance of the whole, so accuracies over splits are comparable.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from replication.errors import DataError, ParameterError

PARTS = ("train", "val", "test")


def check_fractions(fractions: Mapping[str, float]) -> dict[str, float]:
    f = {p: float(fractions.get(p, 0.0)) for p in PARTS}
    unknown = set(fractions) - set(PARTS)
    if unknown:
        raise ParameterError("splits.fractions", dict(fractions), f"only the keys {PARTS}")
    if any(v < 0 for v in f.values()) or f["train"] <= 0 or abs(sum(f.values()) - 1) > 1e-6:
        raise ParameterError("splits.fractions", dict(fractions), "non-negative train/val/test fractions, train > 0, summing to 1")
    return f


def grouped_stratified_split(
    strata: Sequence[int],
    groups: Sequence[object],
    fractions: Mapping[str, float],
    seed: int,
    fixed_test: Sequence[bool] | None = None,
) -> np.ndarray:
    """Assign each case to 'train', 'val' or 'test'.

    Groups are shuffled within each stratum (a group's stratum is its largest label) and dealt out
    in order until each part holds its fraction of the stratum's cases. `fixed_test` marks cases that
    must be test (ChestX-ray14's official list); the rest is divided between train and val.
    """
    f = check_fractions(fractions)
    strata = np.asarray(strata)
    groups = pd.Series(np.asarray(groups, dtype=object)).astype(str).to_numpy()
    out = np.empty(len(strata), dtype=object)
    rng = np.random.default_rng(seed)
    free = np.ones(len(strata), bool)
    if fixed_test is not None:
        fixed = np.asarray(fixed_test, bool)
        leaking = set(groups[fixed]) & set(groups[~fixed])
        if leaking:
            raise DataError("official split", "a group has cases on both sides of the fixed test list", record=sorted(leaking)[0])
        out[fixed] = "test"
        free = ~fixed
        f = {"train": f["train"] / (f["train"] + f["val"]), "val": f["val"] / (f["train"] + f["val"]), "test": 0.0}
    frame = pd.DataFrame({"stratum": strata[free], "group": groups[free], "row": np.flatnonzero(free)})
    group_stratum = frame.groupby("group")["stratum"].max()
    group_rows = frame.groupby("group")["row"].apply(list)
    for stratum in sorted(group_stratum.unique()):
        names = np.array(sorted(group_stratum.index[group_stratum == stratum]))
        names = names[rng.permutation(len(names))]
        sizes = np.array([len(group_rows[g]) for g in names])
        total = sizes.sum()
        cum = np.cumsum(sizes) - sizes / 2.0  # a group goes where its midpoint falls
        bounds = np.cumsum([f[p] * total for p in PARTS])
        part = np.searchsorted(bounds, cum, side="right").clip(max=len(PARTS) - 1)
        for g, p in zip(names, part):
            out[group_rows[g]] = PARTS[p]
    return out.astype(str)


def make_splits(
    cases: pd.DataFrame,
    count: int,
    fractions: Mapping[str, float],
    seed: int,
    stratify: str | None = "label",
    group: str = "patient_id",
) -> pd.DataFrame:
    """Add split_0 … split_{count-1} columns; each split is a different seeded draw.

    Raises DataError when a part of a split holds one class only (its accuracy would mean nothing).
    """
    if not isinstance(count, int) or count < 1:
        raise ParameterError("splits.count", count, "an integer >= 1")
    out = cases.copy()
    strata = out[stratify].to_numpy() if stratify else np.zeros(len(out), int)
    fixed = out["official_split"].eq("test").to_numpy() if "official_split" in out.columns else None
    for k in range(count):
        column = f"split_{k}"
        out[column] = grouped_stratified_split(strata, out[group], fractions, seed=seed + 1000 * k, fixed_test=fixed)
        if stratify:
            for part in PARTS:
                labels = set(out.loc[out[column] == part, stratify])
                if fractions.get(part, 0) > 0 and len(labels) < 2:
                    raise DataError(column, f"the {part} part holds {'no cases' if not labels else 'one class only'} ({sorted(labels)}); use more cases or other fractions")
    return out
