"""NIH ChestX-ray14: 14-label targets, patient ids, official splits, and bounding boxes.

Layout read (what `replication fetch chestxray14` writes, or the files placed by hand):

    <root>/Data_Entry_2017_v2020.csv[.gz]   (or Data_Entry_2017.csv[.gz])  labels and patient ids
    <root>/BBox_List_2017.csv[.gz]          984 boxes in the 1024x1024 pixel space of the release
    <root>/train_val_list.txt, test_list.txt the official patient-wise split (optional)
    <root>/images/*.png                     the images present (all 112,120, or any subset)
    <root>/images/ORIGINAL_SIZES.csv        (optional) size each PNG was downscaled from

Only images present on disk become cases; the rows whose image is absent are counted, not errors.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pandas as pd

from replication.data.images import list_pngs, load_images
from replication.data.store import Cohort, Exclusions
from replication.errors import DataError

LABELS = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)
NO_FINDING = "No Finding"
BOX_LABEL_ALIASES = {"Infiltrate": "Infiltration"}  # BBox_List_2017 spells one finding differently
ENTRY_COLUMNS = ("Image Index", "Finding Labels", "Patient ID")


def _first_existing(root: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def read_data_entry(path: str | os.PathLike) -> pd.DataFrame:
    """Image Index, Patient ID and the 14 0/1 label columns; DataError naming the file and row on bad input."""
    try:
        frame = pd.read_csv(path, dtype={"Image Index": str, "Finding Labels": str, "Patient ID": str})
    except (OSError, EOFError, pd.errors.ParserError, UnicodeDecodeError) as e:
        raise DataError(path, f"unreadable CSV ({type(e).__name__}: {e})") from None
    missing = [c for c in ENTRY_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(path, f"missing columns {missing}; expected at least {list(ENTRY_COLUMNS)}")
    out = pd.DataFrame({
        "case_id": frame["Image Index"].str.strip(),
        "patient_id": frame["Patient ID"].str.strip(),
        "view_position": frame.get("View Position", pd.Series("", index=frame.index)).fillna(""),
    })
    for label in LABELS:
        out[label] = 0
    for row, labels in enumerate(frame["Finding Labels"].fillna("")):
        names = [n.strip() for n in labels.split("|") if n.strip()]
        unknown = [n for n in names if n not in LABELS and n != NO_FINDING]
        if unknown or not names:
            raise DataError(path, f"Finding Labels {labels!r}: expected '|'-separated names from {list(LABELS)} or '{NO_FINDING}'", record=f"row {row + 2}, {out.at[row, 'case_id']}")
        for n in names:
            if n != NO_FINDING:
                out.at[row, n] = 1
    dup = out["case_id"].duplicated()
    if dup.any():
        raise DataError(path, "duplicate Image Index", record=out.loc[dup, "case_id"].iloc[0])
    return out


def read_boxes(path: str | os.PathLike) -> pd.DataFrame:
    """case_id, finding, x, y, w, h in the release's 1024x1024 pixel space."""
    try:
        frame = pd.read_csv(path, header=None, skiprows=1, usecols=range(6), dtype={0: str, 1: str})
    except (OSError, EOFError, ValueError, pd.errors.ParserError) as e:
        raise DataError(path, f"expected 6 columns 'Image Index, Finding Label, Bbox [x, y, w, h]' ({type(e).__name__}: {e})") from None
    frame.columns = ["case_id", "finding", "x", "y", "w", "h"]
    frame["finding"] = frame["finding"].str.strip().replace(BOX_LABEL_ALIASES)
    bad = ~frame["finding"].isin(LABELS)
    if bad.any():
        raise DataError(path, f"unknown finding {frame.loc[bad, 'finding'].iloc[0]!r}", record=frame.loc[bad, "case_id"].iloc[0])
    if frame[["x", "y", "w", "h"]].isna().any().any() or (frame[["w", "h"]] <= 0).any().any():
        raise DataError(path, "box with missing or non-positive size", record=frame.loc[frame[["x", "y", "w", "h"]].isna().any(axis=1) | (frame[["w", "h"]] <= 0).any(axis=1), "case_id"].iloc[0])
    return frame


def read_official_split(root: Path) -> dict[str, str] | None:
    """Image Index → 'train_val' or 'test' from the official lists, or None when they are absent."""
    files = {"train_val": _first_existing(root, ("train_val_list.txt",)), "test": _first_existing(root, ("test_list.txt",))}
    if not all(files.values()):
        return None
    split: dict[str, str] = {}
    for name, path in files.items():
        for line in pd.read_csv(path, header=None, dtype=str)[0].str.strip():
            split[line] = name
    return split


def read_chestxray14(root: str | os.PathLike, image_size: int, load_pixels: bool = True) -> Cohort:
    """The cohort of ChestX-ray14 images present under <root>/images, with labels and rescaled boxes."""
    root = Path(root)
    entry_path = _first_existing(root, ("Data_Entry_2017_v2020.csv", "Data_Entry_2017.csv"))
    if entry_path is None:
        raise DataError(root, "Data_Entry_2017_v2020.csv(.gz) not found; see docs/DATA.md for where to get it")
    entries = read_data_entry(entry_path)
    excluded = Exclusions()
    notes: list[str] = []
    pngs = {f"{stem}.png": p for stem, p in list_pngs(root / "images").items()}
    if not pngs:
        raise DataError(root / "images", "no PNG images; run `replication fetch chestxray14` or place the images there")
    present = entries["case_id"].isin(pngs)
    excluded.add("images", "image file not present in images/", entries.loc[~present, "case_id"])
    orphans = sorted(set(pngs) - set(entries["case_id"]))
    excluded.add("images", "image without a Data_Entry row (ignored)", orphans)
    cases = entries[present].reset_index(drop=True)

    official = read_official_split(root)
    if official is not None:
        cases["official_split"] = cases["case_id"].map(official).fillna("")
        notes.append("official train_val_list/test_list used for the test split")
    else:
        notes.append("official split lists absent: patient-wise stratified splits")

    cases["image_index"] = -1
    images = None
    sizes: list[tuple[int, int] | None] = [None] * len(cases)
    if load_pixels:
        images, sizes, failures = load_images([pngs[c] for c in cases["case_id"]], image_size, desc="ChestX-ray14 images")
        failed = {i for i, _ in failures}
        for i, reason in failures:
            excluded.add("images", "unreadable image file", [f"{cases.at[i, 'case_id']}: {reason}"])
        if failed:
            cases = cases.drop(index=sorted(failed)).reset_index(drop=True)
            sizes = [s for s in sizes if s is not None]
        cases["image_index"] = np.arange(len(cases))

    boxes = None
    box_path = _first_existing(root, ("BBox_List_2017.csv",))
    if box_path is not None:
        all_boxes = read_boxes(box_path)
        available = all_boxes["case_id"].isin(cases["case_id"])
        excluded.add("boxes", "box whose image is not available", all_boxes.loc[~available, "case_id"].unique())
        boxes = rescale_boxes(all_boxes[available].reset_index(drop=True), cases, sizes, image_size, root / "images" / "ORIGINAL_SIZES.csv")
    else:
        notes.append("BBox_List_2017.csv absent: no localisation ground truth")
    return Cohort(
        name="chestxray14",
        source=str(root),
        synthetic=False,
        cases=cases,
        images=images,
        label_names=list(LABELS),
        boxes=boxes,
        exclusions=excluded,
        parameters={"image_size": image_size},
        notes=notes,
    )


def rescale_boxes(
    boxes: pd.DataFrame,
    cases: pd.DataFrame,
    file_sizes: list[tuple[int, int] | None],
    image_size: int,
    original_sizes_csv: Path,
) -> pd.DataFrame:
    """Boxes from the release's pixel space to the (image_size, image_size) arrays.

    A box is in the pixels of the released PNG. Where a copy was downscaled (ORIGINAL_SIZES.csv says
    from what size), that size is the box's space; otherwise the file on disk is the release itself.
    """
    released = {}
    if original_sizes_csv.is_file():
        table = pd.read_csv(original_sizes_csv, dtype={"image": str})
        released = {r.image: (int(r.width), int(r.height)) for r in table.itertuples()}
    on_disk = dict(zip(cases["case_id"], file_sizes))
    space = np.array([released.get(c) or on_disk.get(c) or (1024, 1024) for c in boxes["case_id"]], float).reshape(-1, 2)
    out = boxes.copy()
    out[["x", "w"]] = out[["x", "w"]].to_numpy(float) * (image_size / space[:, :1])
    out[["y", "h"]] = out[["y", "h"]].to_numpy(float) * (image_size / space[:, 1:])
    return out
