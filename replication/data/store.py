"""The one on-disk format every source is turned into: a *cohort* directory.

A cohort is what the models consume, whatever it came from (the real IU X-ray archive, the real NIH
ChestX-ray14 files, or the synthetic generator):

    cases.csv        one row per case: case_id, patient_id, image_index (-1 = no image), and as the
                     source has them: text, label (binary), one 0/1 column per name in label_names,
                     split_0 … split_{k-1} (train/val/test), and source-specific columns
    images.npy       uint8 (n_images, size, size); cases point into it with image_index
    masks.npy        uint16 (n_images, size, size) bit field; bit k set = pixel inside mask_names[k]
                     (synthetic cohorts only: the ground truth real data lacks)
    boxes.csv        case_id, finding, x, y, w, h in the pixels of images.npy (ChestX-ray14 only)
    exclusions.csv   every record left out, with the stage and the reason
    manifest.json    source, synthetic flag, label/mask names, counts, exclusions by reason,
                     parameters and seed, SHA-256 of every file above

Writing is atomic: the directory is built beside the target and renamed onto it.
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

import numpy as np
import pandas as pd

from replication.errors import DataError
from replication.io import atomic_path, sha256_file

FORMAT_VERSION = 1
REQUIRED_COLUMNS = ("case_id", "patient_id", "image_index")
SPLIT_VALUES = ("train", "val", "test")


class Exclusions:
    """Records every case a filter removes, with why, so nothing is dropped silently."""

    def __init__(self) -> None:
        self.rows: list[dict[str, str]] = []

    def add(self, stage: str, reason: str, ids: Iterable[object]) -> int:
        ids = [str(i) for i in ids]
        self.rows.extend({"stage": stage, "reason": reason, "record": i} for i in ids)
        return len(ids)

    def extend(self, other: "Exclusions") -> None:
        self.rows.extend(other.rows)

    def summary(self) -> list[dict[str, Any]]:
        counts = Counter((r["stage"], r["reason"]) for r in self.rows)
        return [{"stage": s, "reason": r, "count": n} for (s, r), n in counts.items()]

    def frame(self) -> pd.DataFrame:
        return pd.DataFrame(self.rows, columns=["stage", "reason", "record"])

    def __len__(self) -> int:
        return len(self.rows)


@dataclass
class Cohort:
    """Cases, their images and (synthetic only) masks, with the manifest that says where they came from."""

    name: str
    source: str
    synthetic: bool
    cases: pd.DataFrame
    images: np.ndarray | None = None
    masks: np.ndarray | None = None
    mask_names: list[str] = field(default_factory=list)
    label_names: list[str] = field(default_factory=list)
    boxes: pd.DataFrame | None = None
    exclusions: Exclusions = field(default_factory=Exclusions)
    parameters: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.validate()

    @property
    def split_columns(self) -> list[str]:
        return sorted((c for c in self.cases.columns if c.startswith("split_")), key=lambda c: int(c[6:]))

    @property
    def image_size(self) -> int | None:
        return None if self.images is None else int(self.images.shape[1])

    def validate(self, where: object = None) -> None:
        """Check the invariants every consumer relies on; raise DataError naming the first broken one."""
        where = where or f"cohort {self.name!r}"
        missing = [c for c in REQUIRED_COLUMNS if c not in self.cases.columns]
        if missing:
            raise DataError(where, f"cases table lacks columns {missing}")
        dup = self.cases["case_id"][self.cases["case_id"].duplicated()]
        if len(dup):
            raise DataError(where, f"duplicate case ids, e.g. {list(dup[:3])}", record=dup.iloc[0])
        for name in self.label_names:
            if name not in self.cases.columns:
                raise DataError(where, f"label column {name!r} named in label_names is missing")
        idx = self.cases["image_index"].to_numpy()
        n_images = 0 if self.images is None else len(self.images)
        if self.images is not None:
            if self.images.dtype != np.uint8 or self.images.ndim != 3 or self.images.shape[1] != self.images.shape[2]:
                raise DataError(where, f"images must be uint8 (n, size, size), got {self.images.dtype} {self.images.shape}")
        bad = (idx < -1) | (idx >= n_images)
        if bad.any():
            raise DataError(where, f"image_index out of range 0..{n_images - 1}", record=self.cases["case_id"][bad].iloc[0])
        if self.masks is not None:
            if self.images is None or self.masks.shape != self.images.shape or self.masks.dtype != np.uint16:
                raise DataError(where, f"masks must be uint16 with the images' shape, got {self.masks.dtype} {self.masks.shape}")
            if len(self.mask_names) > 16:
                raise DataError(where, f"at most 16 mask names fit a uint16 bit field, got {len(self.mask_names)}")
        for col in self.split_columns:
            wrong = ~self.cases[col].isin(SPLIT_VALUES)
            if wrong.any():
                raise DataError(where, f"{col} holds values other than {SPLIT_VALUES}", record=self.cases["case_id"][wrong].iloc[0])

    def mask(self, name: str, image_index: int | np.ndarray | slice = slice(None)) -> np.ndarray:
        """Boolean mask(s) of one ground-truth region kind (e.g. 'nodule' or 'marker')."""
        if self.masks is None:
            raise KeyError(f"cohort {self.name!r} has no masks")
        bit = self.mask_names.index(name)
        return (self.masks[image_index] >> bit) & 1 == 1

    def counts(self) -> dict[str, Any]:
        c: dict[str, Any] = {
            "cases": int(len(self.cases)),
            "patients": int(self.cases["patient_id"].nunique()),
            "cases_with_image": int((self.cases["image_index"] >= 0).sum()),
            "images": 0 if self.images is None else int(len(self.images)),
        }
        if "text" in self.cases.columns:
            c["cases_with_text"] = int(self.cases["text"].fillna("").str.strip().ne("").sum())
        if "label" in self.cases.columns:
            c["label_1"] = int((self.cases["label"] == 1).sum())
            c["label_0"] = int((self.cases["label"] == 0).sum())
        for name in self.label_names:
            c.setdefault("positives", {})[name] = int(self.cases[name].sum())
        if self.boxes is not None:
            c["boxes"] = int(len(self.boxes))
        for col in self.split_columns:
            c[col] = {k: int(v) for k, v in self.cases[col].value_counts().sort_index().items()}
        return c

    def manifest(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "source": self.source,
            "synthetic": self.synthetic,
            "synthetic_notice": (
                "SYNTHETIC DATA generated by replication.data.synthetic: not the paper's data; "
                "numbers computed on it are not comparable with the paper's." if self.synthetic else None
            ),
            "image_size": self.image_size,
            "label_names": self.label_names,
            "mask_names": self.mask_names,
            "counts": self.counts(),
            "exclusions": self.exclusions.summary(),
            "parameters": self.parameters,
            "notes": self.notes,
        }

    def write(self, path: str | os.PathLike) -> Path:
        """Write the cohort directory atomically; returns its path."""
        self.validate()
        path = Path(path)
        with atomic_path(path) as tmp:
            tmp.mkdir()
            self.cases.to_csv(tmp / "cases.csv", index=False)
            self.exclusions.frame().to_csv(tmp / "exclusions.csv", index=False)
            if self.images is not None:
                np.save(tmp / "images.npy", self.images, allow_pickle=False)
            if self.masks is not None:
                np.save(tmp / "masks.npy", self.masks, allow_pickle=False)
            if self.boxes is not None:
                self.boxes.to_csv(tmp / "boxes.csv", index=False)
            manifest = self.manifest()
            manifest["files"] = {p.name: sha256_file(p) for p in sorted(tmp.iterdir())}
            (tmp / "manifest.json").write_text(json.dumps(manifest, indent=2, default=_plain) + "\n")
        return path


def _plain(obj: Any) -> Any:
    if isinstance(obj, (np.integer, np.floating)):
        return obj.item()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serialisable: {type(obj).__name__}")


def read_cohort(path: str | os.PathLike, mmap: bool = True, verify: bool = False) -> Cohort:
    """Read a cohort directory; `verify` re-hashes every file against the manifest."""
    path = Path(path)
    manifest_path = path / "manifest.json"
    if not manifest_path.is_file():
        raise DataError(path, "not a cohort directory (no manifest.json); run `replication synth` or `replication prepare`")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as e:
        raise DataError(manifest_path, f"not valid JSON ({e})") from None
    if manifest.get("format_version") != FORMAT_VERSION:
        raise DataError(manifest_path, f"format_version {manifest.get('format_version')!r}, expected {FORMAT_VERSION}")
    if verify:
        for name, digest in manifest.get("files", {}).items():
            if not (path / name).is_file():
                raise DataError(path / name, "listed in the manifest but missing")
            if sha256_file(path / name) != digest:
                raise DataError(path / name, "content does not match the SHA-256 in manifest.json (modified or truncated)")
    cases = pd.read_csv(path / "cases.csv", dtype={"case_id": str, "patient_id": str}, keep_default_na=False, na_values=[""])
    if "text" in cases.columns:
        cases["text"] = cases["text"].fillna("")
    mode = "r" if mmap else None
    images = np.load(path / "images.npy", mmap_mode=mode) if (path / "images.npy").is_file() else None
    masks = np.load(path / "masks.npy", mmap_mode=mode) if (path / "masks.npy").is_file() else None
    boxes = pd.read_csv(path / "boxes.csv", dtype={"case_id": str}) if (path / "boxes.csv").is_file() else None
    exclusions = Exclusions()
    if (path / "exclusions.csv").is_file():
        frame = pd.read_csv(path / "exclusions.csv", dtype=str, keep_default_na=False)
        exclusions.rows = frame.to_dict("records")
    cohort = Cohort(
        name=manifest["name"],
        source=manifest["source"],
        synthetic=bool(manifest["synthetic"]),
        cases=cases,
        images=images,
        masks=masks,
        mask_names=list(manifest.get("mask_names", [])),
        label_names=list(manifest.get("label_names", [])),
        boxes=boxes,
        exclusions=exclusions,
        parameters=manifest.get("parameters", {}),
        notes=list(manifest.get("notes", [])),
    )
    return cohort
