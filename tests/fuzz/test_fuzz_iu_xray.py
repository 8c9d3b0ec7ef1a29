"""The IU X-ray reader under hostile reports, archives and view metadata (docs/DATA.md lists the policies)."""

from __future__ import annotations

import gzip
import io
import re
import tarfile
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, strategies as st

from fuzzkit import REPORT_EDITS, SECTIONS, Quiet, fuzz, make_tar, mutate_report, report_fields, serialise
from fuzzkit import iu_seeds  # noqa: F401 (pytest fixtures)
from replication.data.iu_xray import parse_report, read_iu_xray, read_reports, read_view_positions
from replication.errors import DataError


@pytest.fixture(scope="session")
def reference(iu_seeds) -> dict[str, dict]:
    """The reader's result on every unmutated seed (checked against the real archive by tests/realdata)."""
    return Quiet({name: report_fields(parse_report(data, name)) for name, data in iu_seeds.files.items()})


def expected_row(name: str, fields: dict) -> dict:
    return {"case_id": fields["report_id"], **{s.lower(): fields["sections"][s] for s in SECTIONS},
            "mesh_major": "; ".join(fields["mesh_major"]), "mesh_minor": "; ".join(fields["mesh_minor"]),
            "label": fields["label"], "images": "; ".join(fields["images"]), "source_file": name}


def test_seeds_survive_reserialisation(iu_seeds, reference):
    """The mutations rewrite the XML with ElementTree; unmutated, that must not change what is read."""
    print(f"IU seeds: {iu_seeds.source}, {len(iu_seeds.files)} reports")
    for name, data in iu_seeds.files.items():
        assert report_fields(parse_report(serialise(ET.fromstring(data)), name)) == reference[name]
    assert {f["label"] for f in reference.values()} == {0, 1}


@pytest.mark.parametrize("edit", REPORT_EDITS)
@fuzz(8)
@given(data=st.data())
def test_a_mutated_report_is_read_right_or_excluded_with_its_reason(iu_seeds, reference, edit, data):
    name = data.draw(st.sampled_from(sorted(iu_seeds.files)))
    blob, outcome, what = mutate_report(data.draw, iu_seeds.files[name], reference[name], edit)
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "ecgen-radiology"
        folder.mkdir()
        for other, content in iu_seeds.files.items():
            (folder / other).write_bytes(blob if other == name else content)
        cohort = read_iu_xray(tmp, image_size=16)
    rows = cohort.cases.set_index("case_id")
    dropped = cohort.exclusions.frame().query("stage == 'read_reports'")
    expected = {n: f for n, f in reference.items() if n != name}
    if outcome.kind == "excluded":
        assert list(dropped["record"]) == [f"{name}"], what
        reason = dropped["reason"].iloc[0]
        assert re.search(outcome.reason, reason), f"{what}: reason {reason!r} does not match {outcome.reason!r}"
        assert reason != "malformed XML", what  # the parser's detail is kept
    else:
        assert dropped.empty, f"{what}: {dropped.to_dict('records')}"
        expected[name] = {**reference[name], **outcome.changes}
    assert sorted(rows.index) == sorted(f["report_id"] for f in expected.values()), what
    for n, fields in expected.items():
        row = expected_row(n, fields)
        got = rows.loc[row.pop("case_id"), list(row)].to_dict()
        assert got == row, f"{what}: {n}"
    # the label is the paper's rule on the distinct major terms, never a default for a missing source
    for n, fields in expected.items():
        terms = {m.lower() for m in fields["mesh_major"]}
        assert terms and rows.loc[fields["report_id"], "label"] == (0 if terms == {"normal"} else 1)


@pytest.fixture(scope="session")
def archives(iu_seeds) -> dict[str, bytes]:
    return Quiet({"tgz": make_tar(iu_seeds.files, "w:gz"), "tar": make_tar(iu_seeds.files, "w")})


def _header_blocks(blob: bytes) -> list[int]:
    with tarfile.open(fileobj=io.BytesIO(blob)) as tar:
        return [m.offset for m in tar.getmembers()]


@pytest.mark.parametrize("kind", ["tgz-cut", "tgz-flip", "tar-cut", "tar-cut-at-block", "tar-header-flip"])
@fuzz(8)
@given(data=st.data())
def test_a_damaged_archive_is_refused_or_read_whole(iu_seeds, reference, archives, kind, data):
    """Truncated anywhere, or a byte changed (gzip: anywhere; plain tar: in a header, where tar has a checksum)."""
    blob = bytearray(archives["tgz" if kind.startswith("tgz") else "tar"])
    if kind.endswith("cut"):
        blob = blob[: data.draw(st.integers(0, len(blob) - 1))]
    elif kind == "tar-cut-at-block":  # the cut tarfile itself reads as a shorter archive, without a word
        blob = blob[: 512 * data.draw(st.integers(0, len(blob) // 512 - 3))]
    else:
        starts = _header_blocks(bytes(blob)) if kind == "tar-header-flip" else [0]
        span = 512 if kind == "tar-header-flip" else len(blob)
        at = data.draw(st.sampled_from(starts)) + data.draw(st.integers(0, span - 1))
        blob[at] ^= data.draw(st.integers(1, 255))
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "NLMCXR_reports.tgz"
        path.write_bytes(bytes(blob))
        try:
            reports, dropped = read_reports(path)
        except DataError as e:
            assert str(path) in str(e) and "archive" in str(e), str(e)
            return
    # read: then it must be the whole archive, each report as the reference
    assert len(dropped) == 0 and {Path(r.source_file.split(":")[-1]).name: report_fields(r) for r in reports} == reference, kind


def _meta_csv(frame: pd.DataFrame) -> bytes:
    return frame.to_csv(index=False).encode()


@pytest.mark.parametrize("kind", ["drop", "reorder", "duplicate_row", "conflict", "empty_id", "empty_view", "encoding", "cut", "gz-cut"])
@fuzz(4)
@given(data=st.data())
def test_view_metadata_is_read_right_or_refused_naming_the_row(iu_seeds, kind, data):
    meta = iu_seeds.metadata.copy()
    with tempfile.TemporaryDirectory() as tmp:
        plain = Path(tmp) / "meta.csv"
        plain.write_bytes(_meta_csv(meta))
        reference = read_view_positions(plain)
        expect_error, expected = None, dict(reference)
        row = data.draw(st.integers(0, len(meta) - 1))
        image = re.sub(r"^(CXR\d+)_\d+_(IM-)", r"\1_\2", meta.at[row, "imageid"])
        if kind == "drop":
            column = data.draw(st.sampled_from(list(meta.columns)))
            meta = meta.drop(columns=column)
            if column in ("imageid", "View Position"):
                expect_error = r"expected columns 'imageid' and 'View Position'"
        elif kind == "reorder":
            meta = meta[data.draw(st.permutations(list(meta.columns)))]
        elif kind == "duplicate_row":
            meta = pd.concat([meta, meta.iloc[[row]]], ignore_index=True)
        elif kind == "conflict":
            twin = meta.iloc[[row]].copy()
            twin["View Position"] = "AP" if meta.at[row, "View Position"] != "AP" else "LL"
            meta = pd.concat([meta, twin], ignore_index=True)
            expect_error = rf"\[record row {len(meta) + 1}, {re.escape(image)}\]: View Position .* contradicts"
        elif kind == "empty_id":
            meta.at[row, "imageid"] = data.draw(st.sampled_from(["", "  "]))
            expect_error = rf"\[record row {row + 2}\]: empty imageid"
        elif kind == "empty_view":
            meta.at[row, "View Position"] = ""
            expected[image] = ""
        blob = _meta_csv(meta)
        if kind == "encoding":
            how = data.draw(st.sampled_from(["bom", "latin-1", "utf-16", "invalid-id", "invalid-unused"]))
            head, body = blob.split(b"\n", 1)
            blob = {"bom": b"\xef\xbb\xbf" + blob, "latin-1": blob.decode().encode("latin-1"), "utf-16": blob.decode().encode("utf-16"),
                    "invalid-id": head + b"\n" + body.replace(b"CXR", b"C\xffXR", 1),
                    "invalid-unused": head + b"\n" + body.replace(b",CR,", b",C\xff,", 1)}[how]
            expect_error = r"not UTF-8 text" if how in ("utf-16", "invalid-id") else None
            if how == "invalid-unused":  # pandas decodes only the columns it keeps: an error, or the right views
                expect_error = "either"
        path = plain
        if kind == "cut":
            cut = data.draw(st.integers(0, len(blob) - 1))
            complete = blob[:cut].count(b"\n") - 1  # data rows whose line end survived
            blob = blob[:cut]
        if kind == "gz-cut":
            packed = gzip.compress(blob, mtime=0)
            blob = packed[: data.draw(st.integers(0, len(packed) - 1))]
            path = Path(tmp) / "meta.csv.gz"
            expect_error = r"unreadable or truncated file|empty file"
        path.write_bytes(blob)
        try:
            got = read_view_positions(path)
        except DataError as e:
            assert str(path) in str(e)
            if kind == "cut":
                assert re.search(r"cut short|empty file|expected columns", str(e)), str(e)
                return
            assert expect_error and re.search("not UTF-8 text" if expect_error == "either" else expect_error, str(e)), f"{kind}: {e}"
            return
    assert expect_error in (None, "either"), f"{kind}: read, expected an error {expect_error!r}"
    if kind == "cut":  # only a cut right after a line end reads, and then as the complete rows before it
        assert got.items() <= reference.items() and len(got) >= complete
        return
    assert got == expected, kind
