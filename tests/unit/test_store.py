import json

import numpy as np
import pandas as pd
import pytest

from replication.data.store import Cohort, Exclusions, read_cohort
from replication.errors import DataError
from replication.io import atomic_path, write_json


def small_cohort(**kw) -> Cohort:
    cases = pd.DataFrame({"case_id": ["a", "b", "c"], "patient_id": ["1", "1", "2"], "image_index": [0, 1, -1],
                          "text": ["x y", "z", ""], "label": [1, 0, 1]})
    images = np.arange(2 * 32 * 32, dtype=np.uint8).reshape(2, 32, 32)
    masks = np.zeros((2, 32, 32), np.uint16)
    masks[0, 3:5, 3:5] = 0b10
    return Cohort(name="t", source="test", synthetic=True, cases=cases, images=images, masks=masks,
                  mask_names=["nodule", "marker"], **kw)


def test_round_trip_keeps_every_part(tmp_path):
    ex = Exclusions()
    ex.add("prepare", "no text", ["z1", "z2"])
    cohort = small_cohort(exclusions=ex, parameters={"seed": 3})
    cohort.write(tmp_path / "c")
    back = read_cohort(tmp_path / "c", verify=True)
    pd.testing.assert_frame_equal(back.cases, cohort.cases, check_dtype=False)
    assert np.array_equal(back.images, cohort.images) and np.array_equal(back.masks, cohort.masks)
    assert back.mask("marker", 0).sum() == 4 and back.mask("nodule", 0).sum() == 0
    manifest = json.loads((tmp_path / "c" / "manifest.json").read_text())
    assert manifest["exclusions"] == [{"stage": "prepare", "reason": "no text", "count": 2}]
    assert manifest["counts"]["cases_with_image"] == 2 and manifest["counts"]["label_1"] == 2
    assert "SYNTHETIC" in manifest["synthetic_notice"]
    assert set(manifest["files"]) == {"cases.csv", "exclusions.csv", "images.npy", "masks.npy"}


def test_verify_detects_a_modified_file(tmp_path):
    small_cohort().write(tmp_path / "c")
    with open(tmp_path / "c" / "images.npy", "r+b") as f:
        f.seek(-1, 2)
        f.write(b"\x07")
    with pytest.raises(DataError, match="images.npy.*SHA-256"):
        read_cohort(tmp_path / "c", verify=True)


def test_a_crash_while_writing_leaves_the_previous_output(tmp_path):
    target = tmp_path / "out.json"
    write_json(target, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_text('{"v": 2, "half')
            raise RuntimeError("killed")
    assert json.loads(target.read_text()) == {"v": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["out.json"]


def test_invariants_are_checked_with_the_record_named():
    with pytest.raises(DataError, match="duplicate case ids"):
        Cohort(name="t", source="s", synthetic=False,
               cases=pd.DataFrame({"case_id": ["a", "a"], "patient_id": ["1", "2"], "image_index": [-1, -1]}))
    with pytest.raises(DataError, match=r"record b.*image_index out of range"):
        Cohort(name="t", source="s", synthetic=False, images=np.zeros((1, 32, 32), np.uint8),
               cases=pd.DataFrame({"case_id": ["a", "b"], "patient_id": ["1", "2"], "image_index": [0, 1]}))
    with pytest.raises(DataError, match="lacks columns"):
        Cohort(name="t", source="s", synthetic=False, cases=pd.DataFrame({"case_id": ["a"]}))


def test_reading_something_that_is_not_a_cohort_says_so(tmp_path):
    with pytest.raises(DataError, match="not a cohort directory"):
        read_cohort(tmp_path)
