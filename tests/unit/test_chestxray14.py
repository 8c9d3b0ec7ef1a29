import numpy as np
import pytest
from PIL import Image

from replication.data.chestxray14 import LABELS, read_chestxray14, read_data_entry
from replication.errors import DataError

ENTRY = """Image Index,Finding Labels,Follow-up #,Patient ID,Patient Age,Patient Gender,View Position,OriginalImage[Width,Height],OriginalImagePixelSpacing[x,y]
00000001_000.png,Cardiomegaly,0,1,57,M,PA,2682,2749,0.143,0.143
00000001_001.png,Cardiomegaly|Emphysema,1,1,58,M,PA,2894,2729,0.143,0.143
00000002_000.png,No Finding,0,2,80,M,PA,2500,2048,0.171,0.171
00000003_000.png,Infiltration,0,3,81,F,PA,2582,2991,0.143,0.143
"""
BOXES = """Image Index,Finding Label,Bbox [x,y,w,h],,,
00000001_000.png,Cardiomegaly,512,256,256,128
00000002_000.png,Infiltrate,100,100,50,50
00000003_000.png,Mass,0,0,10,10
"""


@pytest.fixture
def cxr_root(tmp_path):
    (tmp_path / "Data_Entry_2017_v2020.csv").write_text(ENTRY)
    (tmp_path / "BBox_List_2017.csv").write_text(BOXES)
    (tmp_path / "images").mkdir()
    for name, side in [("00000001_000.png", 512), ("00000002_000.png", 1024), ("00000001_001.png", 64), ("99999999_000.png", 64)]:
        Image.fromarray(np.full((side, side), 100, np.uint8)).save(tmp_path / "images" / name)
    # 00000001_000.png was downscaled from the 1024 release; 00000003_000.png is absent
    (tmp_path / "images" / "ORIGINAL_SIZES.csv").write_text("image,width,height\n00000001_000.png,1024,1024\n")
    return tmp_path


def test_labels_patients_and_present_images(cxr_root):
    cohort = read_chestxray14(cxr_root, image_size=128)
    cases = cohort.cases.set_index("case_id")
    assert list(cases.index) == ["00000001_000.png", "00000001_001.png", "00000002_000.png"]
    assert cohort.label_names == list(LABELS)
    assert cases.loc["00000001_001.png", ["Cardiomegaly", "Emphysema"]].tolist() == [1, 1]
    assert cases.loc["00000002_000.png", list(LABELS)].sum() == 0
    assert cases.loc["00000001_000.png", "patient_id"] == cases.loc["00000001_001.png", "patient_id"] == "1"
    assert cohort.images.shape == (3, 128, 128)
    reasons = {e["reason"]: e["count"] for e in cohort.exclusions.summary()}
    assert reasons == {"image file not present in images/": 1, "image without a Data_Entry row (ignored)": 1,
                       "box whose image is not available": 1}


def test_boxes_are_rescaled_from_the_release_space(cxr_root):
    boxes = read_chestxray14(cxr_root, image_size=128).boxes.set_index("case_id")
    # downscaled copy: the box space is the 1024 original named in ORIGINAL_SIZES.csv
    assert boxes.loc["00000001_000.png", ["x", "y", "w", "h"]].tolist() == [64.0, 32.0, 32.0, 16.0]
    # a file at release size: its own size is the box space; the alias Infiltrate -> Infiltration
    assert boxes.loc["00000002_000.png", "finding"] == "Infiltration"
    assert boxes.loc["00000002_000.png", ["x", "w"]].tolist() == [12.5, 6.25]


def test_bad_metadata_names_the_file_and_record(tmp_path):
    bad = tmp_path / "Data_Entry_2017.csv"
    bad.write_text("Image Index,Patient ID\n00000001_000.png,1\n")
    with pytest.raises(DataError, match=r"Data_Entry_2017.csv: missing columns \['Finding Labels'\]"):
        read_data_entry(bad)
    bad.write_text("Image Index,Finding Labels,Patient ID\n00000001_000.png,Cardiomegaly|Dragons,1\n")
    with pytest.raises(DataError, match=r"row 2, 00000001_000.png.*'Cardiomegaly\|Dragons'"):
        read_data_entry(bad)


def test_without_images_or_metadata_the_message_says_what_to_do(tmp_path):
    with pytest.raises(DataError, match="Data_Entry_2017_v2020.csv.*docs/DATA.md"):
        read_chestxray14(tmp_path, image_size=64)
    (tmp_path / "Data_Entry_2017_v2020.csv").write_text(ENTRY)
    with pytest.raises(DataError, match="replication fetch chestxray14"):
        read_chestxray14(tmp_path, image_size=64)


def test_official_split_lists_are_used(cxr_root):
    (cxr_root / "train_val_list.txt").write_text("00000001_000.png\n00000001_001.png\n")
    (cxr_root / "test_list.txt").write_text("00000002_000.png\n00000003_000.png\n")
    cases = read_chestxray14(cxr_root, image_size=32).cases
    assert cases.set_index("case_id")["official_split"].to_dict() == {
        "00000001_000.png": "train_val", "00000001_001.png": "train_val", "00000002_000.png": "test"}
