import io
import tarfile

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from replication.data.iu_xray import label_from_mesh, normalise_image_id, parse_report, read_iu_xray, select_frontal
from replication.errors import DataError


def report_xml(uid="CXR7", findings="The lungs are clear.", impression="No acute disease.", majors=("normal",), images=("CXR7_IM-2263-1001", "CXR7_IM-2263-2001")):
    texts = "".join(f'<AbstractText Label="{k}">{v}</AbstractText>' for k, v in
                    [("COMPARISON", "None."), ("INDICATION", "XXXX-year-old male, cough"), ("FINDINGS", findings), ("IMPRESSION", impression)] if v is not None)
    mesh = "".join(f"<major>{m}</major>" for m in majors)
    parents = "".join(f'<parentImage id="{i}"><caption>Xray Chest PA and Lateral</caption></parentImage>' for i in images)
    uid_tag = f'<uId id="{uid}"/>' if uid is not None else ""
    return (f'<?xml version="1.0" encoding="utf-8"?><eCitation>{uid_tag}<MedlineCitation><Article><Abstract>{texts}</Abstract>'
            f"</Article></MedlineCitation><MeSH>{mesh}</MeSH>{parents}</eCitation>").encode()


def make_archive(path, files: dict[str, bytes], truncate: int | None = None):
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(f"ecgen-radiology/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    blob = buf.getvalue()
    path.write_bytes(blob[:truncate] if truncate else blob)


def write_png(path, size=(40, 50), mode="L", value=None):
    rng = np.random.default_rng(0)
    if mode == "I;16":
        arr = rng.integers(1000, 4000, size[::-1], dtype=np.uint16)
        Image.fromarray(arr).save(path)
    else:
        arr = rng.integers(0, 255, size[::-1] + ((3,) if mode == "RGB" else ()), dtype=np.uint8)
        Image.fromarray(arr).save(path)


@pytest.fixture
def iu_root(tmp_path):
    """A miniature IU X-ray layout with one of every awkward case."""
    files = {
        "7.xml": report_xml(),
        "8.xml": report_xml("CXR8", findings="Borderline enlarged heart. XXXX opacity right base.", majors=("Cardiomegaly/borderline", "Opacity/lung/base/right"),
                            images=("CXR8_1_IM-0001-3001", "CXR8_1_IM-0001-4001")),
        "9.xml": report_xml("CXR9", findings=None, impression=None, images=("CXR9_IM-2407-1001",)),  # no text
        "10.xml": report_xml("CXR10", images=("CXR10_IM-0002-2001",)),  # lateral only
        "11.xml": report_xml("CXR11", images=()),  # no image at all
        "12.xml": b"<eCitation><uId id='CXR12'/><MeSH>",  # malformed
        "13.xml": report_xml("CXR7"),  # duplicate id
        "14.xml": report_xml(uid=None),  # no id
        "15.xml": report_xml("CXR15", images=("CXR15_IM-0005-1001",)),  # unreadable PNG
    }
    make_archive(tmp_path / "NLMCXR_reports.tgz", files)
    meta = pd.DataFrame({"imageid": ["CXR7_IM-2263-1001", "CXR7_IM-2263-2001", "CXR8_IM-0001-3001", "CXR8_IM-0001-4001", "CXR10_IM-0002-2001"],
                         "View Position": ["PA", "LL", "LATERAL", "AP", "LL"]})
    meta.to_csv(tmp_path / "nlmcxr_dicom_metadata.csv.gz", index=False)
    (tmp_path / "images").mkdir()
    write_png(tmp_path / "images" / "CXR7_IM-2263-1001.png")
    write_png(tmp_path / "images" / "CXR8_1_IM-0001-4001.png", mode="I;16")
    write_png(tmp_path / "images" / "CXR9_IM-2407-1001.png", mode="RGB")
    write_png(tmp_path / "images" / "CXR99_IM-0000-1001.png")  # no report
    (tmp_path / "images" / "CXR15_IM-0005-1001.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    return tmp_path


def test_fields_labels_and_frontal_views(iu_root):
    cohort = read_iu_xray(iu_root, image_size=32)
    cases = cohort.cases.set_index("case_id")
    assert list(cases.index) == ["CXR7", "CXR8", "CXR9", "CXR10", "CXR11", "CXR15"]
    assert cases.loc["CXR7", "findings"] == "The lungs are clear." and cases.loc["CXR7", "indication"] == "XXXX-year-old male, cough"
    assert cases.loc["CXR7", "label"] == 0 and cases.loc["CXR8", "label"] == 1
    assert cases.loc["CXR8", "mesh_major"] == "Cardiomegaly/borderline; Opacity/lung/base/right"
    # metadata says 3001 is lateral and 4001 (AP) frontal: the XML id form is matched to the metadata form
    assert cases.loc["CXR8", "frontal_image"] == "CXR8_1_IM-0001-4001" and cases.loc["CXR8", "view_source"] == "metadata"
    assert cases.loc["CXR9", "view_source"] == "heuristic"  # not in the metadata file
    assert cases.loc["CXR10", "view_source"] == "none" and cases.loc["CXR11", "view_source"] == "none"
    assert cohort.images.shape == (3, 32, 32) and cohort.images.dtype == np.uint8
    assert (cases["image_index"] >= 0).sum() == 3  # CXR7, CXR8 (16-bit), CXR9 (RGB)


def test_every_awkward_record_is_counted_with_its_reason(iu_root):
    cohort = read_iu_xray(iu_root, image_size=32)
    reasons = {(e["stage"], e["reason"]): e["count"] for e in cohort.exclusions.summary()}
    # the parser's detail is kept in the reason (where the XML breaks), not reduced to "malformed XML"
    assert reasons[("read_reports", "malformed XML (no element found: line 1, column 34)")] == 1
    assert reasons[("read_reports", "no report id (<uId id=...> missing or empty)")] == 1
    assert reasons[("read_reports", "duplicate report id (the first file was kept)")] == 1
    assert reasons[("images", "no frontal image among the report's images (text only)")] == 2
    assert reasons[("images", "image file referenced by no report (ignored)")] == 1
    assert reasons[("images", "unreadable image file (text only)")] == 1
    records = cohort.exclusions.frame()
    assert records.loc[records.reason.str.startswith("unreadable"), "record"].str.contains("CXR15.*CXR15_IM-0005-1001.png").all()
    assert set(records.loc[records.reason.str.startswith("malformed XML"), "record"]) == {"ecgen-radiology/12.xml"}


def test_reports_only_without_images(iu_root, tmp_path):
    only = tmp_path / "only"
    only.mkdir()
    (only / "NLMCXR_reports.tgz").write_bytes((iu_root / "NLMCXR_reports.tgz").read_bytes())
    cohort = read_iu_xray(only, image_size=32)
    assert cohort.images is None and (cohort.cases.image_index == -1).all()
    assert any("reports-only" in n for n in cohort.notes) and any("heuristic" in n for n in cohort.notes)


def test_truncated_archive_is_a_clear_error(tmp_path, iu_root):
    blob = (iu_root / "NLMCXR_reports.tgz").read_bytes()
    (tmp_path / "NLMCXR_reports.tgz").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(DataError, match=r"NLMCXR_reports.tgz: truncated or corrupt archive"):
        read_iu_xray(tmp_path, image_size=32)


def test_extracted_folder_reads_like_the_archive(iu_root, tmp_path):
    with tarfile.open(iu_root / "NLMCXR_reports.tgz") as tar:
        tar.extractall(tmp_path / "x", filter="data")
    a = read_iu_xray(iu_root / "NLMCXR_reports.tgz", image_size=32).cases
    b = read_iu_xray(tmp_path / "x" / "ecgen-radiology", image_size=32).cases
    assert a.drop(columns="source_file").equals(b.drop(columns="source_file"))


def test_missing_archive_names_the_fix(tmp_path):
    with pytest.raises(DataError, match="replication fetch iu-xray"):
        read_iu_xray(tmp_path / "nowhere.tgz", image_size=32)


def test_helpers():
    assert label_from_mesh(["normal"]) == 0 and label_from_mesh(["Normal "]) == 0
    assert label_from_mesh(["normal", "Granuloma"]) == 1
    assert label_from_mesh(["normal", "normal"]) == 0  # a repeated <major> is the same term
    with pytest.raises(ValueError, match="no MeSH major terms"):  # no label source: no label, never "abnormal"
        label_from_mesh([])
    assert normalise_image_id("CXR1_1_IM-0001-3001") == "CXR1_IM-0001-3001"
    assert normalise_image_id("CXR1000_IM-0003-1001") == "CXR1000_IM-0003-1001"
    assert select_frontal(["a", "b"], {"a": "LL", "b": "PA"}) == ("b", "metadata")
    assert select_frontal(["a", "b"], {"a": "LL"}) == ("b", "heuristic")
    assert select_frontal(["a"], {"a": "LATERAL"}) == (None, "none")
    with pytest.raises(DataError, match="bad.xml: malformed XML"):
        parse_report(b"<a>", "bad.xml")
