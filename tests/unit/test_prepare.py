import numpy as np
import pandas as pd
import pytest
from PIL import Image

from replication.data.images import load_image, ImageReadError
from replication.data.iu_xray import read_view_positions
from replication.data.prepare import compose_text, load_source, prepare
from replication.data.store import Cohort
from replication.errors import DataError, ParameterError


def sectioned(n=40, size=32) -> Cohort:
    rng = np.random.default_rng(0)
    cases = pd.DataFrame({
        "case_id": [f"S{i}" for i in range(n)], "patient_id": [f"P{i}" for i in range(n)], "image_index": np.arange(n),
        "comparison": "None.", "indication": "XXXX cough",
        "findings": ["The lungs are clear." if i % 2 else "Small nodule right upper lobe." for i in range(n)],
        "impression": ["" if i in (3, 5) else "No acute disease." for i in range(n)],
        "label": [i % 2 == 0 for i in range(n)],
    })
    cases["label"] = cases["label"].astype(int)
    cases.loc[[3, 5], "findings"] = ""
    return Cohort(name="synthetic-iu", source="synthetic", synthetic=True, cases=cases,
                  images=rng.integers(0, 255, (n, size, size), dtype=np.uint8))


def test_text_is_composed_from_the_chosen_sections_and_empty_text_is_counted():
    cohort = compose_text(sectioned(), ["findings", "impression"])
    assert cohort.cases.set_index("case_id").loc["S0", "text"] == "Small nodule right upper lobe. No acute disease."
    assert len(cohort.cases) == 38
    assert cohort.exclusions.summary() == [{"stage": "prepare", "reason": "no text in the sections findings+impression", "count": 2}]
    with pytest.raises(ParameterError, match="data.iu.text_sections"):
        compose_text(sectioned(), ["discussion"])


def test_prepare_adds_splits_to_a_synthetic_source(tmp_path):
    sectioned().write(tmp_path / "syn")
    from replication.params import IuData, SplitsParams, build

    data = build(IuData, {"source": "synthetic", "path": str(tmp_path / "syn"), "text_sections": ["findings", "impression"]})
    splits = build(SplitsParams, {"count": 2, "fractions": {"train": 0.6, "val": 0.2, "test": 0.2}})
    cohort = prepare("iu", data, splits, 32, 1)
    assert cohort.split_columns == ["split_0", "split_1"] and len(cohort.cases) == 38
    assert cohort.parameters["splits"]["count"] == 2 and cohort.synthetic
    with pytest.raises(DataError, match="synthetic images are 32 px but image_size is 64"):
        prepare("iu", data, splits, 64, 1)


def test_unknown_sources_name_the_parameter():
    with pytest.raises(ParameterError, match="data.iu.source"):
        load_source("iu", "chestxray14", "x", 64)
    with pytest.raises(ParameterError, match="data"):
        load_source("mimic", "synthetic", "x", 64)


def test_truncated_and_odd_pngs(tmp_path):
    good = tmp_path / "good.png"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (80, 60), dtype=np.uint8)).save(good)
    blob = good.read_bytes()
    (tmp_path / "cut.png").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(ImageReadError, match="cut.png: unreadable image"):
        load_image(tmp_path / "cut.png", 32)
    arr, original = load_image(good, 32)
    assert arr.shape == (32, 32) and arr.dtype == np.uint8 and original == (60, 80)
    flat16 = tmp_path / "flat16.png"
    Image.fromarray(np.full((40, 40), 3000, np.uint16)).save(flat16)
    assert load_image(flat16, 32)[0].max() == 0  # a constant 16-bit image does not divide by zero


def test_view_metadata_with_missing_columns_is_named(tmp_path):
    bad = tmp_path / "meta.csv"
    bad.write_text("imageid,Rows\nCXR1_IM-0001-3001,2048\n")
    with pytest.raises(DataError, match="meta.csv: expected columns 'imageid' and 'View Position'"):
        read_view_positions(bad)
