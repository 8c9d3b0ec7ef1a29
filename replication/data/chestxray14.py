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

import gzip
import io
import os
import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from replication.data.images import ImageReadError, list_pngs, load_images, read_size
from replication.data.store import Cohort, Exclusions
from replication.errors import DataError

LABELS = (
    "Atelectasis", "Cardiomegaly", "Effusion", "Infiltration", "Mass", "Nodule", "Pneumonia",
    "Pneumothorax", "Consolidation", "Edema", "Emphysema", "Fibrosis", "Pleural_Thickening", "Hernia",
)
NO_FINDING = "No Finding"
BOX_LABEL_ALIASES = {"Infiltrate": "Infiltration"}  # BBox_List_2017 spells one finding differently
ENTRY_COLUMNS = ("Image Index", "Finding Labels", "Patient ID")
BOX_COLUMNS = ("x", "y", "w", "h")
BOX_HEADER = ["Image Index", "Finding Label", "Bbox [x", "y", "w", "h]"]  # the release's header line, unquoted
BOX_HEADER_ONE_CELL = ["Image Index", "Finding Label", "Bbox [x,y,w,h]"]  # the same, quoted into one cell
RELEASE_SIZE = (1024, 1024)  # every image of the NIH release; BBox_List_2017 is in this pixel space
NIH_NAME = r"^([0-9]{8})_[0-9]{3}\.png$"  # patient number, follow-up number


def _first_existing(root: Path, names: tuple[str, ...]) -> Path | None:
    for name in names:
        for candidate in (root / name, root / f"{name}.gz"):
            if candidate.is_file():
                return candidate
    return None


def read_csv_checked(path: str | os.PathLike, expected: str, complete_lines: bool = True, **kwargs) -> pd.DataFrame:
    """pandas.read_csv of a CSV (or .csv.gz) whose every failure is a DataError naming the file, what was expected and why.

    Shared by the readers. Beyond what pandas checks: a gzip stream must be whole (CRC and length), and the
    text must end with a line end (`complete_lines`), so a file cut inside its last row (whose last value
    would then read as a shorter, plausible number) is refused instead of loaded.
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
        if path.name.endswith(".gz"):
            raw = gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:  # gzip.BadGzipFile is an OSError
        raise DataError(path, f"unreadable or truncated file ({type(e).__name__}: {e}); expected a complete CSV with {expected}") from None
    try:
        frame = pd.read_csv(io.BytesIO(raw), **kwargs)
    except UnicodeDecodeError as e:
        raise DataError(path, f"not UTF-8 text ({e}); expected a UTF-8 CSV with {expected}") from None
    except pd.errors.EmptyDataError:
        raise DataError(path, f"empty file; expected a CSV with {expected}") from None
    except ValueError as e:  # pandas' parser errors, usecols that do not match
        raise DataError(path, f"unreadable CSV ({type(e).__name__}: {e}); expected {expected}") from None
    if complete_lines and not raw.endswith((b"\n", b"\r")):
        raise DataError(path, f"the last line has no line end: the file was cut short; expected a complete CSV with {expected}")
    return frame


def _first_bad(mask: pd.Series) -> int:
    return int(np.flatnonzero(mask.to_numpy())[0])


def _refuse_repeated_columns(path: str | os.PathLike, frame: pd.DataFrame, columns: tuple[str, ...]) -> None:
    """pandas renames a repeated header 'X' to 'X.1' and reads the first: refuse it instead of choosing."""
    repeated = [c for c in columns if f"{c}.1" in frame.columns]
    if repeated:
        raise DataError(path, f"column {repeated[0]!r} appears more than once; expected it once")


def read_data_entry(path: str | os.PathLike) -> pd.DataFrame:
    """Image Index, Patient ID and the 14 0/1 label columns; DataError naming the file, row and field on bad input.

    Only the columns the cohort uses are read and checked (Image Index, Finding Labels, Patient ID,
    View Position); age, sex and the others are not read, so their values cannot change the cohort.
    """
    frame = read_csv_checked(path, f"the columns {list(ENTRY_COLUMNS)}", dtype={"Image Index": str, "Finding Labels": str, "Patient ID": str})
    missing = [c for c in ENTRY_COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(path, f"missing columns {missing}; expected at least {list(ENTRY_COLUMNS)}")
    _refuse_repeated_columns(path, frame, ENTRY_COLUMNS)
    if frame.empty:
        raise DataError(path, "no rows; expected one row per image")
    frame = frame.reset_index(drop=True)
    out = pd.DataFrame({
        "case_id": frame["Image Index"].fillna("").str.strip(),
        "patient_id": frame["Patient ID"].fillna("").str.strip(),
        "view_position": frame.get("View Position", pd.Series("", index=frame.index)).fillna("").astype(str).str.strip(),
    })

    def refuse(bad: pd.Series, problem: str, column: str) -> None:
        """DataError at the first row where `bad` holds; {value} in `problem` is that row's `column`."""
        if bad.any():
            row = _first_bad(bad)
            value = "" if pd.isna(frame.at[row, column]) else frame.at[row, column]
            raise DataError(path, problem.format(value=value), record=f"row {row + 2}, {out.at[row, 'case_id'] or '(no Image Index)'}")

    refuse(out["case_id"].eq(""), "Image Index empty; expected the image's file name, e.g. 00000001_000.png", "Image Index")
    refuse(~out["patient_id"].str.fullmatch(r"[0-9]+"), "Patient ID {value!r}: expected a whole number", "Patient ID")
    nih_patient = out["case_id"].str.extract(NIH_NAME, expand=False)
    refuse(nih_patient.notna() & (nih_patient.str.lstrip("0") != out["patient_id"].str.lstrip("0")),
           "Patient ID {value!r} contradicts the Image Index, whose first 8 digits are the patient number; expected the same patient",
           "Patient ID")
    for label in LABELS:
        out[label] = 0
    for row, labels in enumerate(frame["Finding Labels"].fillna("")):
        names = [n.strip() for n in labels.split("|") if n.strip()]
        unknown = [n for n in names if n not in LABELS and n != NO_FINDING]
        if unknown or not names or (NO_FINDING in names and len(set(names)) > 1):
            raise DataError(path, f"Finding Labels {labels!r}: expected '|'-separated names from {list(LABELS)}, or '{NO_FINDING}' alone",
                            record=f"row {row + 2}, {out.at[row, 'case_id']}")
        for n in names:
            if n != NO_FINDING:
                out.at[row, n] = 1
    dup = out["case_id"].duplicated()
    if dup.any():
        raise DataError(path, "duplicate Image Index; expected one row per image", record=f"row {_first_bad(dup) + 2}, {out.loc[dup, 'case_id'].iloc[0]}")
    return out


def read_boxes(path: str | os.PathLike) -> pd.DataFrame:
    """case_id, finding, x, y, w, h in the release's 1024x1024 pixel space.

    DataError naming the row and the field for a header that is not BBox_List_2017's, a coordinate that
    is not a finite number, a box with no area, or one reaching outside the 1024x1024 release image.
    """
    expected = "6 columns 'Image Index, Finding Label, Bbox [x, y, w, h]'"
    header = [str(c).strip() for c in read_csv_checked(path, expected, nrows=0).columns]
    if header[:6] != BOX_HEADER and header[:3] != BOX_HEADER_ONE_CELL:
        raise DataError(path, f"header {header[:6]}; expected {expected} in this order")
    frame = read_csv_checked(path, expected, header=None, skiprows=1, usecols=range(6), dtype={0: str, 1: str})
    frame.columns = ["case_id", "finding", *BOX_COLUMNS]
    if frame.empty:
        raise DataError(path, "no boxes; expected one row per box")
    frame["case_id"] = frame["case_id"].fillna("").str.strip()

    def refuse(bad: pd.Series, problem: str, values: pd.Series | None = None) -> None:
        """DataError at the first row where `bad` holds; {value} in `problem` is that row's entry of `values`."""
        if bad.any():
            row = _first_bad(bad)
            value = None if values is None else values.iloc[row]
            value = value.item() if isinstance(value, np.generic) else value  # 1e+308, not np.float64(1e+308)
            raise DataError(path, problem.format(value=value), record=f"row {row + 2}, {frame.at[row, 'case_id'] or '(no Image Index)'}")

    refuse(frame["case_id"].eq(""), "Image Index empty; expected the image's file name")
    frame["finding"] = frame["finding"].str.strip().replace(BOX_LABEL_ALIASES)
    refuse(~frame["finding"].isin(LABELS), "unknown finding {value!r}; expected one of " + str(list(LABELS)), frame["finding"])
    for c in BOX_COLUMNS:
        raw = frame[c]
        if not (pd.api.types.is_float_dtype(raw) or pd.api.types.is_integer_dtype(raw)):  # text somewhere in the column
            numbers = pd.to_numeric(raw.astype(str).str.strip(), errors="coerce")
            refuse(numbers.isna() & raw.notna(), f"Bbox {c} {{value!r}} is not a number; expected pixels", raw)
            frame[c] = numbers
        refuse(frame[c].isna(), f"Bbox {c} missing; expected pixels")
        refuse(~np.isfinite(frame[c].astype(float)), f"Bbox {c} {{value!r}}: expected a finite number of pixels", frame[c])
    for c in ("x", "y"):
        refuse(frame[c] < 0, f"Bbox {c} {{value!r}} is negative; expected a box inside the image (>= 0)", frame[c])
    for c in ("w", "h"):
        refuse(frame[c] <= 0, f"Bbox {c} {{value!r}}: expected a positive box size", frame[c])
    for origin, extent, side in (("x", "w", RELEASE_SIZE[0]), ("y", "h", RELEASE_SIZE[1])):
        end = frame[origin] + frame[extent]
        refuse(end > side, f"Bbox {origin} + {extent} = {{value!r}}: expected a box inside the {RELEASE_SIZE[0]}x{RELEASE_SIZE[1]} release image", end)
    return frame


def read_official_split(root: Path) -> dict[str, str] | None:
    """Image Index → 'train_val' or 'test' from the official lists, or None when both are absent.

    DataError when only one list is there, a line holds more than a name, or an image is in both lists.
    """
    files = {"train_val": _first_existing(root, ("train_val_list.txt",)), "test": _first_existing(root, ("test_list.txt",))}
    if not any(files.values()):
        return None
    if not all(files.values()):
        have, lack = ("train_val", "test") if files["train_val"] else ("test", "train_val")
        raise DataError(files[have], f"{lack}_list.txt(.gz) is missing beside it; expected both official lists or neither")
    split: dict[str, str] = {}
    for name, path in files.items():
        # the NIH lists may lack a final line end; a cut name is caught by its missing .png instead
        frame = read_csv_checked(path, "one image file name per line", complete_lines=False, header=None, dtype=str)
        if frame.shape[1] != 1:
            raise DataError(path, f"{frame.shape[1]} fields on a line; expected one image file name per line")
        for row, line in enumerate(frame[0].fillna("").str.strip()):
            if line and not line.endswith(".png"):
                raise DataError(path, f"{line!r} is not a PNG file name; expected one image file name per line, e.g. 00000001_000.png",
                                record=f"line {row + 1}")
            if line and split.setdefault(line, name) != name:
                raise DataError(path, f"{line} is in both train_val_list and test_list; expected each image in one list", record=f"line {row + 1}, {line}")
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
    if cases.empty:
        raise DataError(root / "images", f"none of the {len(pngs)} PNGs has a row in {entry_path.name}; expected NIH image names such as 00000001_000.png")

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
        if cases.empty:
            raise DataError(root / "images", "no readable image (every one is listed in the exclusions)")
        cases["image_index"] = np.arange(len(cases))

    boxes = None
    box_path = _first_existing(root, ("BBox_List_2017.csv",))
    if box_path is not None:
        all_boxes = read_boxes(box_path)
        repeated = all_boxes.duplicated()
        excluded.add("boxes", "box row repeated exactly (the first was kept)", all_boxes.loc[repeated, "case_id"] + ": " + all_boxes.loc[repeated, "finding"])
        all_boxes = all_boxes[~repeated]
        available = all_boxes["case_id"].isin(cases["case_id"])
        excluded.add("boxes", "box whose image is not available", all_boxes.loc[~available, "case_id"].unique())
        boxes = rescale_boxes(all_boxes[available].reset_index(drop=True), cases, sizes, image_size, root / "images" / "ORIGINAL_SIZES.csv",
                              exclusions=excluded, paths=pngs)
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


def read_original_sizes(path: str | os.PathLike) -> dict[str, tuple[int, int]]:
    """image → (width, height) it was downscaled from; DataError naming the row for a size that is not a positive integer."""
    expected = "the columns image,width,height"
    table = read_csv_checked(path, expected, dtype=str)
    missing = [c for c in ("image", "width", "height") if c not in table.columns]
    if missing:
        raise DataError(path, f"missing columns {missing}; expected {expected}")
    _refuse_repeated_columns(path, table, ("image", "width", "height"))
    names = table["image"].fillna("").str.strip()
    if names.eq("").any():
        raise DataError(path, "image empty; expected a file name", record=f"row {_first_bad(names.eq('')) + 2}")
    for column in ("width", "height"):
        numbers = pd.to_numeric(table[column], errors="coerce")
        bad = ~(np.isfinite(numbers) & (numbers > 0) & (numbers == np.round(numbers)))
        if bad.any():
            row = _first_bad(bad)
            raise DataError(path, f"{column} {table.at[row, column]!r}: expected a positive whole number of pixels", record=f"row {row + 2}, {names[row]}")
        table[column] = numbers.astype(np.int64)
    sizes: dict[str, tuple[int, int]] = {}
    for row, (name, w, h) in enumerate(zip(names, table["width"], table["height"])):
        if sizes.setdefault(name, (int(w), int(h))) != (w, h):
            raise DataError(path, f"size {w}x{h} contradicts {sizes[name][0]}x{sizes[name][1]} given earlier; expected one size per image",
                            record=f"row {row + 2}, {name}")
    return sizes


def rescale_boxes(
    boxes: pd.DataFrame,
    cases: pd.DataFrame,
    file_sizes: list[tuple[int, int] | None],
    image_size: int,
    original_sizes_csv: Path,
    *,
    exclusions: Exclusions | None = None,
    paths: dict[str, Path] | None = None,
) -> pd.DataFrame:
    """Boxes from the release's 1024x1024 pixel space to the (image_size, image_size) arrays.

    A box can be mapped only onto a file known to show the whole release image: one ORIGINAL_SIZES.csv
    says was downscaled from 1024x1024, or, without a row there, a file that is itself 1024x1024.
    Any other file (a downscaled copy of unknown origin, a copy of another size) is never guessed at:
    its boxes are counted in `exclusions` with the reason, or, without `exclusions`, a DataError.
    `paths` lets the size of a file not decoded (file_sizes None) be read from its header.
    """
    released = read_original_sizes(original_sizes_csv) if original_sizes_csv.is_file() else {}
    on_disk = dict(zip(cases["case_id"], file_sizes))
    refused: dict[str, str] = {}
    for case_id in boxes["case_id"].unique():
        if case_id in released:
            if released[case_id] != RELEASE_SIZE:
                w, h = released[case_id]
                refused[case_id] = (f"box image downscaled from {w}x{h} (ORIGINAL_SIZES.csv), not from the "
                                    f"{RELEASE_SIZE[0]}x{RELEASE_SIZE[1]} release the boxes are drawn in")
            continue
        size = on_disk.get(case_id)
        if size is None and paths is not None and case_id in paths:
            try:
                size = read_size(paths[case_id])
            except ImageReadError as e:
                refused[case_id] = f"box image unreadable ({e.problem})"
                continue
        if size != RELEASE_SIZE:
            refused[case_id] = ("box image of unknown original size (" + (f"the file is {size[0]}x{size[1]}" if size else "its size is unknown")
                                + f", not the {RELEASE_SIZE[0]}x{RELEASE_SIZE[1]} release, and ORIGINAL_SIZES.csv has no row for it)")
    if refused:
        if exclusions is None:
            case_id, reason = next(iter(refused.items()))
            raise DataError(original_sizes_csv, f"{reason}; expected its original size there", record=case_id)
        for reason in dict.fromkeys(refused.values()):
            exclusions.add("boxes", reason, [c for c, r in refused.items() if r == reason])
        boxes = boxes[~boxes["case_id"].isin(refused)].reset_index(drop=True)
    out = boxes.copy()
    out[["x", "w"]] = out[["x", "w"]].to_numpy(float) * (image_size / RELEASE_SIZE[0])
    out[["y", "h"]] = out[["y", "h"]].to_numpy(float) * (image_size / RELEASE_SIZE[1])
    return out
