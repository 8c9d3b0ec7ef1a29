"""From a source (real files or a synthetic cohort) to the prepared dataset every model reads.

The prepared IU-like dataset has the model's `text`, the binary `label`, an image index and the
split columns; the prepared pretraining dataset has the multi-label targets and patient-wise splits.
"""

from __future__ import annotations

import os
from typing import Sequence

from replication.data.chestxray14 import read_chestxray14
from replication.data.iu_xray import read_iu_xray
from replication.data.splits import make_splits
from replication.data.store import Cohort, read_cohort
from replication.errors import DataError, ParameterError
from replication.params import Cxr14Data, IuData, Params, SplitsParams, plain

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


def data_section(params: Params, role: str) -> IuData | Cxr14Data:
    """`params.data.<role>`, with an unknown role named."""
    if role not in SOURCES:
        raise ParameterError("data", role, f"one of {sorted(SOURCES)}")
    return getattr(params.data, role)


def prepare(role: str, data: IuData | Cxr14Data, splits: SplitsParams, image_size: int, seed: int) -> Cohort:
    """The prepared dataset for `role` ('iu' target or 'cxr14' pretraining) from its `data` section."""
    cohort = load_source(role, data.source, data.path, image_size)
    if role == "iu":
        cohort = compose_text(cohort, list(data.text_sections))
        if cohort.cases.empty:
            raise DataError(data.path, f"no case has text in the sections {list(data.text_sections)}; every one is in the exclusions")
        stratify = "label"
    else:
        if not cohort.label_names:
            raise DataError(data.path, "a pretraining cohort needs multi-label targets (label_names is empty)")
        cohort.cases["any_finding"] = (cohort.cases[cohort.label_names].sum(axis=1) > 0).astype(int)
        stratify = "any_finding"
    try:
        cohort.cases = make_splits(cohort.cases, splits.count, plain(splits.fractions), seed, stratify=stratify)
    except DataError as e:  # name the data that cannot be split, not only the split column
        raise DataError(data.path, f"its {len(cohort.cases)} cases cannot be split as asked: {e}") from None
    cohort.parameters = {"role": role, "data": plain(data), "image_size": image_size, "splits": plain(splits),
                         "seed": seed, "source_parameters": cohort.parameters}
    cohort.validate()
    return cohort
