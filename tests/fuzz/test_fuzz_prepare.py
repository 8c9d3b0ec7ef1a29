"""`prepare` for both cohorts on mutated real (or synthetic) sources: a named DataError, or the prepared dataset
with every exclusion counted in its manifest and every kept case's text and labels right."""

from __future__ import annotations

import json
import re
import tempfile
import xml.etree.ElementTree as ET
from pathlib import Path

import pandas as pd
import pytest
from hypothesis import given, strategies as st

from fuzzkit import Quiet, csv_text, fuzz, mutate_boxes, mutate_entry, mutate_report, report_fields, serialise, write_cxr
from fuzzkit import cxr_seeds, iu_seeds  # noqa: F401 (pytest fixtures)
from replication.data.chestxray14 import LABELS
from replication.data.iu_xray import parse_report
from replication.data.prepare import prepare
from replication.data.store import read_cohort
from replication.errors import DataError

SPLITS = {"count": 1, "fractions": {"train": 0.5, "val": 0.25, "test": 0.25}}
CLONES = 3  # each seed report is also written under 3 more ids, so that every split part holds both labels


def _prepare(role: str, path: Path):
    """`prepare` with the sections a profile would give it: the real source at `path`, 16 px, SPLITS."""
    from replication.params import Cxr14Data, IuData, SplitsParams, build

    source = (build(IuData, {"source": "iu_xray", "path": str(path), "text_sections": ["findings", "impression"]}) if role == "iu"
              else build(Cxr14Data, {"source": "chestxray14", "path": str(path)}))
    return prepare(role, source, build(SplitsParams, SPLITS), 16, 2019)


def _clone(data: bytes, k: int) -> bytes:
    root = ET.fromstring(data)
    uid = root.find("uId")
    uid.set("id", f"CXR{100000 * k + int(uid.get('id')[3:])}")
    return serialise(root)


@pytest.fixture(scope="session")
def iu_files(iu_seeds) -> dict[str, bytes]:
    files = dict(iu_seeds.files)
    for k in range(1, CLONES + 1):
        files.update({f"{100000 * k + int(n[:-4])}.xml": _clone(d, k) for n, d in iu_seeds.files.items()})
    return Quiet(files)


def _write_iu(root: Path, files: dict[str, bytes]) -> Path:
    (root / "ecgen-radiology").mkdir(parents=True)
    for name, data in files.items():
        (root / "ecgen-radiology" / name).write_bytes(data)
    return root


def _prepared(role: str, root: Path):
    """prepare, written and read back as the pipeline does (hashes verified)."""
    cohort = _prepare(role, root)
    cohort.write(root / "prepared")
    manifest = json.loads((root / "prepared" / "manifest.json").read_text())
    return read_cohort(root / "prepared", verify=True), manifest


@fuzz(15)
@given(data=st.data())
def test_prepare_iu_on_a_mutated_report(iu_seeds, iu_files, data):
    name = data.draw(st.sampled_from(sorted(iu_seeds.files)))
    ref = report_fields(parse_report(iu_seeds.files[name], name))
    blob, outcome, what = mutate_report(data.draw, iu_seeds.files[name], ref)
    with tempfile.TemporaryDirectory() as tmp:
        root = _write_iu(Path(tmp), {**iu_files, name: blob})
        try:
            cohort, manifest = _prepared("iu", root)
        except DataError as e:  # only a split that can no longer hold both labels may refuse here
            assert str(root) in str(e) and re.search(r"cannot be split as asked: split_0: the (train|val|test) part holds", str(e)), f"{what}: {e}"
            return
    cases = cohort.cases.set_index("case_id")
    reasons = {(e["stage"], e["reason"]): e["count"] for e in manifest["exclusions"]}
    without_text = sum(not (r.sections["FINDINGS"] + r.sections["IMPRESSION"]).strip()
                       for r in (parse_report(d, n) for n, d in iu_files.items() if n != name))
    expected_n = len(iu_files) - without_text  # the unmutated reports prepare keeps
    if outcome.kind == "excluded":
        assert ref["report_id"] not in cases.index, what
        assert any(stage == "read_reports" and re.search(outcome.reason, reason) for stage, reason in reasons), f"{what}: {reasons}"
        assert len(cases) == expected_n - 1, what
        return
    fields = {**ref, **outcome.changes}
    text = " ".join([fields["sections"]["FINDINGS"], fields["sections"]["IMPRESSION"]]).strip()
    if not text:
        assert ref["report_id"] not in cases.index and reasons[("prepare", "no text in the sections findings+impression")] >= 1, what
        return
    row = cases.loc[fields["report_id"]]
    assert row["text"] == text and row["label"] == fields["label"] and row["split_0"] in ("train", "val", "test"), what
    assert len(cases) == expected_n, what


@pytest.fixture(scope="session")
def cxr_prepared_reference(cxr_seeds, tmp_path_factory):
    cohort, manifest = _prepared("cxr14", write_cxr(tmp_path_factory.mktemp("cxr-prep"), cxr_seeds))
    return Quiet(cases=cohort.cases.set_index("case_id")[list(LABELS) + ["patient_id", "any_finding"]], manifest=manifest)


@fuzz(15)
@given(data=st.data())
def test_prepare_cxr14_on_mutated_metadata(cxr_seeds, cxr_prepared_reference, data):
    which = data.draw(st.sampled_from(["entry", "boxes"]))
    if which == "entry":
        content, expected, what = mutate_entry(data.draw, cxr_seeds.entry)
    else:
        content, expected, what = mutate_boxes(data.draw, cxr_seeds.boxes[0], cxr_seeds.boxes[1:] + [cxr_seeds.absent_box])
    name = "Data_Entry_2017_v2020.csv" if which == "entry" else "BBox_List_2017.csv"
    if isinstance(content, tuple):
        name, content = name + ".gz", content[1]
    blob = content if isinstance(content, bytes) else csv_text(content).encode()
    with tempfile.TemporaryDirectory() as tmp:
        kwargs = {"entry": blob, "entry_name": name} if which == "entry" else {"boxes": blob}
        root = write_cxr(Path(tmp), cxr_seeds, **kwargs)
        try:
            cohort, manifest = _prepared("cxr14", root)
        except DataError as e:
            split = f"{root}: its " in str(e) and "cannot be split as asked" in str(e)
            assert str(root / name) in str(e) or split, f"{what}: the error names neither the file nor the data: {e}"
            assert not isinstance(expected, str) or split, f"{what}: {e}"  # an input expected to read may only fail to split
            return
    assert not (isinstance(expected, tuple) and expected[0] == "error"), f"{what}: prepared, expected {expected}"
    got = cohort.cases.set_index("case_id")[list(LABELS) + ["patient_id", "any_finding"]]
    ref = cxr_prepared_reference["cases"]
    pd.testing.assert_frame_equal(got.sort_index(), ref.loc[got.index].sort_index(), obj=what, check_dtype=False)
    assert cohort.images.shape[1:] == (16, 16) and len(cohort.images) == len(got)
    if cohort.boxes is not None and len(cohort.boxes):
        assert cohort.boxes["case_id"].isin(got.index).all()
        assert ((cohort.boxes[["x", "y"]] >= 0).all().all() and (cohort.boxes["x"] + cohort.boxes["w"] <= 16 + 1e-9).all()), what
    counted = sum(e["count"] for e in manifest["exclusions"])
    assert counted == len(cohort.exclusions), what
