"""paper/reference.yaml: the index from each paper number to the experiment and the results metric that reproduce it."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

from replication.errors import DataError

KINDS = ("accuracy", "auroc", "difference", "fraction", "count", "parameter", "unassigned")
SOURCES = ("paper", "notebooks")   # the paper's text, or only the authors' notebooks (PAPER_FACTS.md)


@dataclass(frozen=True)
class PaperNumber:
    """One number of the paper: where it is, its value, who reproduces it (module) and where that value lands."""

    id: str
    section: str
    quantity: str
    where: str
    paper: float
    experiment: str
    file: str                  # relative to results/<profile>/
    metric: str | None         # dotted key inside `file`; None: nothing measures it (a parameter, an unassigned number)
    kind: str
    sd: str | None = None
    note: str = ""
    source: str = "paper"


def load_reference(path: str | Path) -> dict[str, Any]:
    return yaml.safe_load(Path(path).read_text())


def paper_numbers(reference: Mapping[str, Any], where: str = "paper/reference.yaml") -> list[PaperNumber]:
    """Every entry of `numbers:`, checked: an entry without its fields is an error naming it."""
    out = []
    for key, entry in (reference.get("numbers") or {}).items():
        try:
            number = PaperNumber(id=key, **entry)
        except TypeError as e:
            raise DataError(where, f"entry {key!r}: {e}") from None
        if number.kind not in KINDS:
            raise DataError(where, f"entry {key!r}: kind {number.kind!r} is not one of {KINDS}")
        if number.source not in SOURCES:
            raise DataError(where, f"entry {key!r}: source {number.source!r} is not one of {SOURCES}")
        out.append(number)
    return out


def lookup(data: Mapping[str, Any] | None, dotted: str | None) -> Any:
    """`data["a"]["b.c"]...` for 'a.b.c' with keys that may themselves hold dots; None where absent."""
    if data is None or dotted is None:
        return None
    if dotted in data:
        return data[dotted]
    parts = dotted.split(".")
    for i in range(len(parts) - 1, 0, -1):
        head = ".".join(parts[:i])
        if head in data and isinstance(data[head], Mapping):
            return lookup(data[head], ".".join(parts[i:]))
    return None


def read_json(path: Path) -> dict[str, Any] | None:
    return json.loads(path.read_text()) if path.is_file() else None


def paper_value(reference: Mapping[str, Any] | None, number_id: str) -> float | None:
    """The paper's value of index entry `number_id` (e.g. 'table3.high.text'), None where the index has no such entry."""
    entry = ((reference or {}).get("numbers") or {}).get(number_id)
    return None if entry is None else entry["paper"]
