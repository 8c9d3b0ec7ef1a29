"""The data layer on the real public files in ../shared/data (skipped, with the reason, where absent)."""

import numpy as np
import pytest

from replication.data.chestxray14 import LABELS, read_chestxray14
from replication.data.iu_xray import FRONTAL_VIEWS, read_iu_xray, read_view_positions, select_frontal, normalise_image_id

pytestmark = pytest.mark.realdata


@pytest.fixture(scope="module")
def iu(shared_iu_xray):
    return read_iu_xray(shared_iu_xray, image_size=64)


def test_iu_counts_match_the_archive(iu):
    counts = iu.counts()
    assert counts["cases"] == 3955
    assert counts["label_0"] == 1391 and counts["label_1"] == 2564
    assert len(iu.exclusions.frame().query("stage == 'read_reports'")) == 0


def test_iu_reports_field_by_field(iu):
    cases = iu.cases.set_index("case_id")
    cxr1 = cases.loc["CXR1"]
    assert cxr1["comparison"] == "None." and cxr1["indication"] == "Positive TB test"
    assert cxr1["findings"].startswith("The cardiac silhouette and mediastinum size are within normal limits.")
    assert cxr1["findings"].endswith("There is no evidence of pneumothorax.")
    assert cxr1["impression"] == "Normal chest x-XXXX."
    assert cxr1["mesh_major"] == "normal" and cxr1["label"] == 0
    assert cxr1["images"] == "CXR1_1_IM-0001-3001; CXR1_1_IM-0001-4001"
    assert cxr1["frontal_image"] == "CXR1_1_IM-0001-3001" and cxr1["view_source"] == "metadata"
    cxr1000 = cases.loc["CXR1000"]
    assert cxr1000["label"] == 1
    assert cxr1000["mesh_major"].split("; ") == ["Opacity/lung/upper lobe/right", "Pulmonary Atelectasis/upper lobe/right", "Opacity/lung/lingula"]
    assert cxr1000["findings"].startswith("There is XXXX increased opacity within the right upper lobe")
    assert cxr1000["impression"].startswith("1. Increased opacity in the right upper lobe")
    both_empty = (cases["findings"] == "") & (cases["impression"] == "")
    assert both_empty.sum() == 28  # docs/DATASETS.md: 28 reports have neither section


def test_iu_real_images_are_loaded_for_their_reports(iu):
    with_image = iu.cases[iu.cases.image_index >= 0]
    # the shared folder holds 5 frontal PNGs; for CXR1000 and CXR1001 the metadata names another frontal image
    assert set(with_image.case_id) == {"CXR3", "CXR7", "CXR9", "CXR1900"}
    assert iu.images.shape[1:] == (64, 64) and iu.images.dtype == np.uint8 and iu.images.std() > 10


def test_frontal_heuristic_accuracy_where_views_are_known(shared_iu_xray, iu):
    """How often the fallback picks a frontal image, measured on reports whose views the metadata gives."""
    views = read_view_positions(shared_iu_xray / "nlmcxr_dicom_metadata.csv.gz")
    right = total = 0
    for ids in iu.cases["images"]:
        ids = [i for i in ids.split("; ") if i]
        known = [views.get(normalise_image_id(i), "") for i in ids]
        if not ids or "" in known or not any(v in FRONTAL_VIEWS for v in known):
            continue
        chosen, _ = select_frontal(ids, None)  # as if the metadata file were absent
        right += views[normalise_image_id(chosen)] in FRONTAL_VIEWS
        total += 1
    accuracy = right / total
    print(f"frontal heuristic without metadata: {right}/{total} = {accuracy:.3f}")
    assert total > 2000 and accuracy > 0.85


def test_chestxray14_shared_subset(shared_chestxray14):
    cohort = read_chestxray14(shared_chestxray14, image_size=64)
    counts = cohort.counts()
    assert counts["cases"] == 1127 and counts["images"] == 1127
    assert cohort.boxes["case_id"].nunique() == 661
    excluded = {e["reason"]: e["count"] for e in cohort.exclusions.summary()}
    assert excluded["image file not present in images/"] == 112120 - 1127
    assert excluded["box whose image is not available"] == 880 - 661
    assert (cohort.boxes[["x", "y"]] >= 0).all().all() and ((cohort.boxes.x + cohort.boxes.w) <= 64.5).all()
    first = cohort.cases.set_index("case_id").loc["00000001_000.png"]
    assert first["Cardiomegaly"] == 1 and first[list(LABELS)].sum() == 1 and first["patient_id"] == "1"
