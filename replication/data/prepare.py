"""From a source (real files or a synthetic cohort) to the prepared dataset every model reads.

The prepared IU-like dataset has the model's `text`, the binary `label`, an image index and the
split columns; the prepared pretraining dataset has the multi-label targets and patient-wise splits.
"""

from __future__ import annotations

import os
from typing import Any, Mapping, Sequence

from replication.data.chestxray14 import read_chestxray14
from replication.data.iu_xray import read_iu_xray
from replication.data.splits import make_splits
from replication.data.store import Cohort, read_cohort
from replication.errors import DataError, ParameterError

SOURCES = {"iu": ("synthetic", "iu_xray"), "cxr14": ("synthetic", "chestxray14")}
SECTION_COLUMNS = ("comparison", "indication", "findings", "impression")


def load_source(role: str, source: str, path: str | os.PathLike, image_size: int) -> Cohort:
    """Read the cohort named by `data.<role>` in params.yaml."""
    if role not in SOURCES:
        raise ParameterError("data", role, f"one of {sorted(SOURCES)}")
    if source not in SOURCES[role]:
        raise ParameterError(f"data.{role}.source", source, f"one of {SOURCES[role]}")
    if source == "iu_xray":
        return read_iu_xray(path, image_size)
    if source == "chestxray14":
        return read_chestxray14(path, image_size)
    cohort = read_cohort(path, verify=True)
    if cohort.image_size is not None and cohort.image_size != image_size:
        raise DataError(path, f"synthetic images are {cohort.image_size} px but image_size is {image_size}; re-run the synth stage")
    return cohort


def compose_text(cohort: Cohort, sections: Sequence[str]) -> Cohort:
    """Join the chosen report sections into `text`; cases left with no text are excluded and counted."""
    unknown = [s for s in sections if s not in SECTION_COLUMNS]
    if unknown or not sections:
        raise ParameterError("data.iu.text_sections", list(sections), f"a non-empty list from {SECTION_COLUMNS}")
    missing = [s for s in sections if s not in cohort.cases.columns]
    if missing:
        raise DataError(cohort.source, f"cohort {cohort.name!r} has no report sections {missing}")
    cases = cohort.cases.copy()
    cases["text"] = cases[list(sections)].fillna("").astype(str).agg(" ".join, axis=1).str.strip()
    empty = cases["text"].eq("")
    cohort.exclusions.add("prepare", f"no text in the sections {'+'.join(sections)}", cases.loc[empty, "case_id"])
    cohort.cases = cases[~empty].reset_index(drop=True)
    return cohort


def prepare(role: str, params: Mapping[str, Any]) -> Cohort:
    """The prepared dataset for `role` ('iu' target or 'cxr14' pretraining) under these params."""
    data = params["data"][role]
    cohort = load_source(role, data["source"], data["path"], int(params["image_size"]))
    if role == "iu":
        cohort = compose_text(cohort, data.get("text_sections", ["findings", "impression"]))
        if cohort.cases.empty:
            raise DataError(data["path"], f"no case has text in the sections {data.get('text_sections')}; every one is in the exclusions")
        stratify = "label"
    else:
        if not cohort.label_names:
            raise DataError(data["path"], "a pretraining cohort needs multi-label targets (label_names is empty)")
        cohort.cases["any_finding"] = (cohort.cases[cohort.label_names].sum(axis=1) > 0).astype(int)
        stratify = "any_finding"
    split = params["splits"]
    try:
        cohort.cases = make_splits(cohort.cases, int(split["count"]), split["fractions"], int(params["seed"]), stratify=stratify)
    except DataError as e:  # name the data that cannot be split, not only the split column
        raise DataError(data["path"], f"its {len(cohort.cases)} cases cannot be split as asked: {e}") from None
    cohort.parameters = {"role": role, "data": dict(data), "image_size": params["image_size"], "splits": dict(split),
                         "seed": params["seed"], "source_parameters": cohort.parameters}
    cohort.validate()
    return cohort
