"""The ChestX-ray14 readers under hostile Data_Entry, BBox_List, ORIGINAL_SIZES and image files."""

from __future__ import annotations

import io
import re
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, strategies as st
from PIL import Image

from fuzzkit import BOX_EDITS, ENTRY_EDITS, Quiet, csv_text, fuzz, mutate_boxes, mutate_entry, write_cxr
from fuzzkit import cxr_seeds  # noqa: F401 (pytest fixtures)
from replication.data.chestxray14 import LABELS, read_chestxray14
from replication.errors import DataError

SIZE = 16


def _summary(cohort) -> dict:
    return {(e["stage"], e["reason"]): e["count"] for e in cohort.exclusions.summary()}


def _cases(cohort) -> pd.DataFrame:
    return cohort.cases.drop(columns="image_index").set_index("case_id").sort_index()


def _boxes(cohort) -> pd.DataFrame:
    return cohort.boxes.sort_values(["case_id", "finding", "x", "y"]).reset_index(drop=True)


def _pixels(cohort) -> dict[str, np.ndarray]:
    return {c: cohort.images[i] for c, i in zip(cohort.cases["case_id"], cohort.cases["image_index"])}


@pytest.fixture(scope="session")
def reference(cxr_seeds, tmp_path_factory):
    cohort = read_chestxray14(write_cxr(tmp_path_factory.mktemp("cxr-ref"), cxr_seeds), image_size=SIZE)
    print(f"ChestX-ray14 seeds: {cxr_seeds.source}: {len(cohort.cases)} cases, {len(cohort.boxes)} boxes")
    assert len(cohort.boxes) > 0 and len(cohort.cases) == len(cxr_seeds.entry) - 1
    return Quiet(cases=_cases(cohort), boxes=_boxes(cohort), summary=_summary(cohort), pixels=_pixels(cohort))


def _read(root: Path):
    return read_chestxray14(root, image_size=SIZE)


def _assert_error(e: DataError, path: Path, pattern: str, what: str) -> None:
    assert str(path) in str(e), f"{what}: the error does not name the file: {e}"
    assert re.search(pattern, str(e)), f"{what}: {e} does not match {pattern!r}"


def _assert_same(cohort, reference, what: str, cases: pd.DataFrame | None = None, boxes: pd.DataFrame | None = None,
                 summary: dict | None = None) -> None:
    pd.testing.assert_frame_equal(_cases(cohort), reference["cases"] if cases is None else cases, obj=what)
    pd.testing.assert_frame_equal(_boxes(cohort), reference["boxes"] if boxes is None else boxes, obj=what)
    assert _summary(cohort) == (reference["summary"] if summary is None else summary), what
    pixels = _pixels(cohort)
    for case_id, arr in pixels.items():
        np.testing.assert_array_equal(arr, reference["pixels"][case_id], err_msg=what)


def _with(summary: dict, key: tuple, n: int = 1) -> dict:
    out = dict(summary)
    out[key] = out.get(key, 0) + n
    return {k: v for k, v in out.items() if v}


@pytest.mark.parametrize("edit", ENTRY_EDITS)
@fuzz(4)
@given(data=st.data())
def test_data_entry_mutations(cxr_seeds, reference, edit, data):
    content, expected, what = mutate_entry(data.draw, cxr_seeds.entry, edit)
    name = "Data_Entry_2017_v2020.csv"
    if isinstance(content, tuple):
        name, content = name + ".gz", content[1]
    blob = content if isinstance(content, bytes) else csv_text(content).encode()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_cxr(Path(tmp), cxr_seeds, entry=blob, entry_name=name)
        try:
            cohort = _read(root)
        except DataError as e:
            assert isinstance(expected, tuple) and expected[0] in ("error", "either", "cut"), f"{what}: {e}"
            _assert_error(e, root / name, expected[1], what)
            return
    assert not (isinstance(expected, tuple) and expected[0] == "error"), f"{what}: read, expected {expected}"
    if expected in ("same",) or expected[0] == "either":
        _assert_same(cohort, reference, what)
    elif expected[0] == "view":
        cases = reference["cases"].copy()
        for case_id, view in expected[1].items():
            cases.loc[case_id, "view_position"] = view
        _assert_same(cohort, reference, what, cases=cases)
    elif expected[0] == "drop_case":
        case_id = expected[1]
        boxes = reference["boxes"][reference["boxes"]["case_id"] != case_id].reset_index(drop=True)
        summary = _with(reference["summary"], ("images", "image without a Data_Entry row (ignored)"))
        if len(boxes) < len(reference["boxes"]):
            summary = _with(summary, ("boxes", "box whose image is not available"))
        _assert_same(cohort, reference, what, cases=reference["cases"].drop(index=case_id), boxes=boxes, summary=summary)
    else:  # a cut that fell right after a line end: the complete rows read as before, the rest are absent
        assert expected[0] == "cut"
        kept = _cases(cohort)
        pd.testing.assert_frame_equal(kept, reference["cases"].loc[kept.index], obj=what)
        assert len(kept) >= 1


@pytest.mark.parametrize("edit", BOX_EDITS)
@fuzz(4)
@given(data=st.data())
def test_box_list_mutations(cxr_seeds, reference, edit, data):
    rows = cxr_seeds.boxes[1:] + [cxr_seeds.absent_box]
    content, expected, what = mutate_boxes(data.draw, cxr_seeds.boxes[0], rows, edit)
    blob = content if isinstance(content, bytes) else csv_text(content).encode()
    with tempfile.TemporaryDirectory() as tmp:
        root = write_cxr(Path(tmp), cxr_seeds, boxes=blob)
        try:
            cohort = _read(root)
        except DataError as e:
            assert isinstance(expected, tuple) and expected[0] in ("error", "cut"), f"{what}: {e}"
            _assert_error(e, root / "BBox_List_2017.csv", expected[1], what)
            return
    assert not (isinstance(expected, tuple) and expected[0] == "error"), f"{what}: read, expected {expected}"
    if expected == "same":
        _assert_same(cohort, reference, what)
    elif expected[0] == "dup":
        _assert_same(cohort, reference, what, summary=_with(reference["summary"], ("boxes", "box row repeated exactly (the first was kept)")))
    elif expected[0] == "edge":
        got = _boxes(cohort)
        assert len(got) == len(reference["boxes"]) and (got[expected[2]] == 0).any(), what
    elif expected[0] == "tiny":
        got = _boxes(cohort)
        assert ((got[["w", "h"]] > 0).all().all()) and got[["w", "h"]].min().min() == pytest.approx(1e-9 * SIZE / 1024), what
        assert len(got) == len(reference["boxes"]), what
    else:
        kept = _boxes(cohort)
        merged = kept.merge(reference["boxes"], how="left", indicator=True)
        assert (merged["_merge"] == "both").all(), f"{what}: a box read that is not the reference's"


@pytest.mark.parametrize("kind", ["forget_one", "no_file", "bad_value", "other_size", "unused_size", "reorder", "drop_col", "dup_row",
                                  "conflict", "cut", "damaged_image", "rgba_image", "upper_suffix", "twin_files"])
@fuzz(3)
@given(data=st.data())
def test_original_sizes_and_image_mutations(cxr_seeds, reference, kind, data):
    """ORIGINAL_SIZES.csv damaged or silent about a box image; an image file damaged, unusual or doubled."""
    names = sorted(cxr_seeds.images)
    boxed = sorted(set(reference["boxes"]["case_id"]))
    table = [["image", "width", "height"]] + [[n, "1024", "1024"] for n in names]
    images = dict(cxr_seeds.images)
    target = data.draw(st.sampled_from(boxed))
    row = names.index(target) + 1
    n_boxes = int((reference["boxes"]["case_id"] == target).sum())
    without_target = reference["boxes"][reference["boxes"]["case_id"] != target].reset_index(drop=True)
    unknown = "box image of unknown original size (the file is 32x32, not the 1024x1024 release, and ORIGINAL_SIZES.csv has no row for it)"
    expected: tuple = ("same",)
    text = None
    if kind == "forget_one":
        del table[row]
        expected = ("boxes", without_target, _with(reference["summary"], ("boxes", unknown)))
    elif kind == "no_file":
        text = ""
        expected = ("boxes", reference["boxes"].iloc[:0], _with(reference["summary"], ("boxes", unknown), len(boxed)))
    elif kind == "bad_value":
        value = data.draw(st.sampled_from(["", "abc", "0", "-1024", "1024.5", "NaN", "inf"]))
        table[row][data.draw(st.integers(1, 2))] = value
        expected = ("error", rf"ORIGINAL_SIZES.csv \[record row {row + 1}, {re.escape(target)}\]: (width|height) .*expected a positive whole number")
    elif kind == "other_size":
        value = data.draw(st.sampled_from(["512", "2048", "99999999"]))
        table[row][1] = value
        reason = f"box image downscaled from {value}x1024 (ORIGINAL_SIZES.csv), not from the 1024x1024 release the boxes are drawn in"
        expected = ("boxes", without_target, _with(reference["summary"], ("boxes", reason)))
    elif kind == "unused_size":
        other = [n for n in names if n not in boxed]
        if other:
            table[names.index(other[0]) + 1][1] = "99999999"
    elif kind == "reorder":
        order = data.draw(st.permutations(range(3)))
        table = [[line[k] for k in order] for line in table]
    elif kind == "drop_col":
        col = data.draw(st.integers(0, 2))
        table = [[v for k, v in enumerate(line) if k != col] for line in table]
        expected = ("error", r"ORIGINAL_SIZES.csv: missing columns")
    elif kind == "dup_row":
        table.append(list(table[row]))
    elif kind == "conflict":
        table.append([target, "512", "512"])
        expected = ("error", rf"ORIGINAL_SIZES.csv \[record row {len(table)}, {re.escape(target)}\]: size 512x512 contradicts")
    elif kind == "cut":
        full = csv_text(table, "\r\n")
        text = full[: data.draw(st.integers(1, len(full) - 1))]
        expected = ("cut",)
    elif kind == "damaged_image":
        blob = images[target]
        images[target] = data.draw(st.sampled_from([b"", blob[: len(blob) // 2], blob[:8]]))
        expected = ("unreadable", target, n_boxes)
    elif kind == "rgba_image":  # the same grey in R, G and B, any alpha: the same pixels
        with Image.open(io.BytesIO(images[target])) as im:
            grey = np.asarray(im)
        rgba = np.dstack([grey, grey, grey, np.full_like(grey, 77)])
        buf = io.BytesIO()
        Image.fromarray(rgba, "RGBA").save(buf, "PNG")
        images[target] = buf.getvalue()
    elif kind in ("upper_suffix", "twin_files"):
        images[target.replace(".png", ".PNG")] = images[target]
        if kind == "upper_suffix":
            del images[target]
        else:
            expected = ("error", r"two files for one image")
    if text is None:
        text = csv_text(table, "\r\n")
    with tempfile.TemporaryDirectory() as tmp:
        root = write_cxr(Path(tmp), cxr_seeds, original_sizes=text, images=images)
        if kind == "no_file":
            (root / "images" / "ORIGINAL_SIZES.csv").unlink()
        try:
            cohort = _read(root)
        except DataError as e:
            assert expected[0] in ("error", "cut"), f"{kind}: {e}"
            _assert_error(e, root / "images", expected[1] if expected[0] == "error" else r"ORIGINAL_SIZES.csv: .*(cut short|missing columns|image empty|expected)", kind)
            return
    assert expected[0] != "error", f"{kind}: read, expected {expected}"
    if expected[0] == "same":
        _assert_same(cohort, reference, kind)
    elif expected[0] == "boxes":
        _assert_same(cohort, reference, kind, boxes=expected[1], summary=expected[2])
    elif expected[0] == "unreadable":
        records = cohort.exclusions.frame()
        bad = records[records["reason"] == "unreadable image file"]
        assert len(bad) == 1 and bad["record"].iloc[0].startswith(f"{target}: ") and "unreadable image" in bad["record"].iloc[0]
        summary = _with(_with(reference["summary"], ("images", "unreadable image file")), ("boxes", "box whose image is not available"))
        _assert_same(cohort, reference, kind, cases=reference["cases"].drop(index=target), boxes=without_target, summary=summary)
    else:  # a cut right after a line end: the rows before it stand; box images whose row was cut are excluded as unknown
        got = _boxes(cohort)
        assert got.merge(reference["boxes"], how="left", indicator=True)["_merge"].eq("both").all()
        lost = set(reference["boxes"]["case_id"]) - set(got["case_id"])
        assert _summary(cohort).get(("boxes", unknown), 0) == len(lost)
    assert set(LABELS) <= set(cohort.cases.columns)
