"""The synthetic generator: determinism, pixel-exact masks, report/ground-truth agreement, rates, errors."""

from __future__ import annotations

import hashlib
import os
import re
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from replication.data.store import Cohort, read_cohort
from replication.data.synthetic import (FINDINGS, MASK_NAMES, MIN_IMAGE_SIZE, NOISE, SynthParams, generate,
                                        render_case)
from replication.errors import ParameterError

SMALL = SynthParams(cases=40, image_size=64)

# Written independently of the generator's templates: what a reader would search for.
KEYWORDS = {
    "cardiomegaly": r"cardiomegaly|enlarg",
    "nodule": r"nodul",
    "mass": r"\bmass",
    "opacity": r"opacit|consolidation|airspace disease|pneumonia",
    "effusion": r"effusion",
    "pneumothorax": r"pneumothora",
    "atelectasis": r"atelecta",
    "degenerative_spine": r"degenerative|osteophyte|spondylosis|spurring",
    "granuloma": r"granulom",
}
NEGATION = re.compile(r"\b(no|without|negative for)\b", re.I)
HEDGE = re.compile(r"\b(possible|questionable|borderline|may represent|cannot be excluded|likely|probable)\b", re.I)
LOCATION = re.compile(r"\b(?:right|left|lingula|bilateral|thoracic spine)\b", re.I)


def positive_mentions(text: str) -> dict[str, list[str]]:
    """finding -> the non-negated sentences that mention it."""
    out: dict[str, list[str]] = {}
    for sentence in re.split(r"(?<=[.!?])\s+", text):
        if NEGATION.search(sentence):
            continue
        for name, pattern in KEYWORDS.items():
            if re.search(pattern, sentence, re.I):
                out.setdefault(name, []).append(sentence)
    return out


@pytest.fixture(scope="module")
def iu() -> Cohort:
    return generate(SynthParams(cases=1200, image_size=32), "iu", 11)


@pytest.fixture(scope="module")
def cxr() -> Cohort:
    return generate(SynthParams(cases=600, image_size=32), "cxr14", 11)


# ------------------------------------------------------------------------------------------- determinism

@pytest.mark.parametrize("kind", ["iu", "cxr14"])
def test_same_seed_gives_identical_bytes_and_other_seed_differs(kind: str) -> None:
    a, b, c = generate(SMALL, kind, 5), generate(SMALL, kind, 5), generate(SMALL, kind, 6)
    assert a.images.tobytes() == b.images.tobytes()
    assert a.masks.tobytes() == b.masks.tobytes()
    assert a.cases.to_csv(index=False) == b.cases.to_csv(index=False)
    assert a.parameters == b.parameters
    assert a.images.tobytes() != c.images.tobytes()
    assert a.cases.to_csv(index=False) != c.cases.to_csv(index=False)


@pytest.mark.parametrize("kind", ["iu", "cxr14"])
def test_first_cases_do_not_depend_on_cohort_size_or_global_rng(kind: str) -> None:
    np.random.seed(1)
    small = generate(SynthParams(cases=13, image_size=64), kind, 3)
    np.random.seed(2)
    big = generate(SynthParams(cases=37, image_size=64), kind, 3)
    assert small.images.tobytes() == big.images[:13].tobytes()
    assert small.masks.tobytes() == big.masks[:13].tobytes()
    pd.testing.assert_frame_equal(small.cases, big.cases.iloc[:13])


def test_cohort_does_not_depend_on_hash_seed_or_thread_count() -> None:
    code = ("import hashlib; from replication.data.synthetic import SynthParams, generate; "
            "c = generate(SynthParams(cases=12, image_size=48), 'cxr14', 4); "
            "print(hashlib.sha256(c.images.tobytes() + c.masks.tobytes() + c.cases.to_csv(index=False).encode()).hexdigest())")
    env = {**os.environ, "PYTHONHASHSEED": "123", "OMP_NUM_THREADS": "2", "OPENBLAS_NUM_THREADS": "2"}
    other = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout.strip()
    c = generate(SynthParams(cases=12, image_size=48), "cxr14", 4)
    assert other == hashlib.sha256(c.images.tobytes() + c.masks.tobytes() + c.cases.to_csv(index=False).encode()).hexdigest()


def test_render_case_reproduces_generated_case() -> None:
    cohort = generate(SMALL, "iu", 9)
    for i in (0, 17, 39):
        r = render_case(SMALL, "iu", 9, i)
        assert np.array_equal(r.image, cohort.images[i]) and np.array_equal(r.masks, cohort.masks[i])
        assert r.row == cohort.cases.iloc[i].to_dict()


# ------------------------------------------------------------------------------------------- masks

@pytest.mark.parametrize("kind,size", [("iu", 64), ("cxr14", 96)])
def test_each_mask_is_exactly_where_its_lesion_or_noise_is_drawn(kind: str, size: int) -> None:
    """Leaving one finding (or noise) out changes pixels only inside its mask, and most of the mask."""
    params = SynthParams(cases=40, image_size=size)
    seen: dict[str, list[float]] = {}
    for i in range(params.cases):  # type: ignore[arg-type]
        full = render_case(params, kind, 2, i)
        for bit, name in enumerate(MASK_NAMES):
            mask = (full.masks >> bit) & 1 == 1
            flag = full.row[f"finding_{name}"] if name in FINDINGS else full.row[f"noise_{name}"]
            if not flag:
                assert not mask.any(), (i, name)
                continue
            assert mask.any(), (i, name)
            if name in FINDINGS:
                assert not (mask & ~full.body).any(), f"case {i}: {name} mask leaves the body"
            without = render_case(params, kind, 2, i, without=[name])
            diff = without.image != full.image
            assert not (diff & ~mask).any(), f"case {i}: leaving out {name} changed pixels outside its mask"
            seen.setdefault(name, []).append(diff[mask].mean())
    assert len(seen) >= 8, sorted(seen)
    for name, coverage in seen.items():
        assert np.mean(coverage) > 0.6, (name, np.mean(coverage))


def test_subtle_findings_are_fainter() -> None:
    def contrast(subtle_contrast: float) -> float:
        params = SynthParams(cases=30, image_size=64, subtlety=1.0, subtle_contrast=subtle_contrast)
        total = []
        for i in range(30):
            full = render_case(params, "iu", 4, i, without=NOISE)
            for bit, name in enumerate(FINDINGS):
                mask = (full.masks >> bit) & 1 == 1
                if mask.any():
                    bare = render_case(params, "iu", 4, i, without=(name,) + NOISE)
                    total.append(np.abs(full.image.astype(int) - bare.image)[mask].mean())
        return float(np.mean(total))

    assert contrast(0.05) < 0.25 * contrast(1.0)


# ------------------------------------------------------------------------------------------- labels, reports, rates

def test_label_prevalence_and_finding_columns(iu) -> None:
    cases = iu.cases
    assert abs(cases["label"].mean() - 0.6) < 0.05  # 1200 cases: 3.5 standard errors
    present = cases[[f"finding_{n}" for n in FINDINGS]].to_numpy()
    assert np.array_equal(cases["label"].to_numpy(), present.any(axis=1).astype(int))
    assert present[cases["label"] == 1].sum(axis=1).max() >= 3  # the number of findings varies
    assert present.sum(axis=0).min() > 0  # every finding occurs
    low = generate(SynthParams(cases=600, image_size=32, abnormal_fraction=0.2), "iu", 1).cases
    assert abs(low["label"].mean() - 0.2) < 0.05


def test_reports_mention_exactly_the_findings_they_should(iu) -> None:
    cases = iu.cases
    for _, row in cases.iterrows():
        text = f"{row['findings']} {row['impression']}"
        mentioned = positive_mentions(text)
        expected = {n for n in FINDINGS if row[f"report_{n}"] in ("stated", "hedged", "false_mention")}
        assert set(mentioned) == expected, (row["case_id"], text, expected)
        for name, sentences in mentioned.items():
            hedged = [bool(HEDGE.search(s)) for s in sentences]
            if row[f"report_{name}"] == "stated":
                assert not any(hedged), (row["case_id"], name, sentences)
            else:
                assert all(hedged), (row["case_id"], name, sentences)
        for n in FINDINGS:
            state, present = row[f"report_{n}"], row[f"finding_{n}"]
            assert (state in ("stated", "hedged", "omitted")) == bool(present)
        if not expected:
            assert "acute" in row["impression"] or "chest x-XXXX" in row["impression"]
    abnormal_text = (cases["findings"] + " " + cases["impression"])[cases["label"] == 1]
    assert abnormal_text.str.contains(LOCATION).mean() > 0.6
    for col in ("indication", "comparison"):
        assert cases[col].str.contains("XXXX").mean() > 0.2
    assert cases["findings"].str.contains(r"No pneumothorax|no pneumothorax").mean() > 0.3
    assert cases["findings"].nunique() > 0.5 * len(cases)  # varied phrasing, not one template


def test_omission_hedge_and_false_mention_rates(iu) -> None:
    states = iu.cases[[f"report_{n}" for n in FINDINGS]].to_numpy().ravel()
    present = states[np.isin(states, ["stated", "hedged", "omitted"])]
    assert len(present) > 800
    assert abs((present == "omitted").mean() - 0.10) < 0.03
    assert abs((present == "hedged").mean() - 0.15) < 0.035
    assert abs((states == "false_mention").sum() / len(iu.cases) - 0.03) < 0.02
    subtle = iu.cases[[f"subtle_{n}" for n in FINDINGS]].to_numpy().sum()
    assert abs(subtle / len(present) - 0.25) < 0.04
    custom = generate(SynthParams(cases=500, image_size=32, omission_rate=0.4, hedge_rate=0.3,
                                  false_mention_rate=0.0), "iu", 2).cases
    states = custom[[f"report_{n}" for n in FINDINGS]].to_numpy().ravel()
    present = states[states != "absent"]
    assert abs((present == "omitted").mean() - 0.4) < 0.06
    assert abs((present == "hedged").mean() - 0.3) < 0.06
    assert not (states == "false_mention").any()


def test_structured_noise_rate_and_independence_from_label(iu) -> None:
    cases, masks = iu.cases, iu.masks
    for name, rate in (("marker", 0.5), ("border", 0.3)):
        flag = cases[f"noise_{name}"].to_numpy()
        assert abs(flag.mean() - rate) < 0.05
        has_mask = iu.mask(name).reshape(len(cases), -1).any(axis=1)
        assert np.array_equal(has_mask, flag == 1)
        by_label = cases.groupby("label")[f"noise_{name}"].mean()
        assert abs(by_label[1] - by_label[0]) < 0.08
    assert masks.max() < (1 << len(MASK_NAMES))
    tied = generate(SynthParams(cases=200, image_size=32, noise_label_correlation=1.0), "iu", 3).cases
    assert (tied["noise_marker"] == tied["label"]).all() and (tied["noise_border"] == tied["label"]).all()


# ------------------------------------------------------------------------------------------- cohort format

def test_cohort_metadata_and_round_trip(tmp_path) -> None:
    cohort = generate(SMALL, "iu", 8)
    assert cohort.name == "synthetic-iu" and cohort.source == "synthetic" and cohort.synthetic
    assert cohort.mask_names == list(FINDINGS) + ["marker", "border"] and cohort.label_names == []
    assert cohort.parameters["seed"] == 8 and cohort.parameters["kind"] == "iu" and cohort.parameters["cases"] == 40
    assert "generator_version" in cohort.parameters and any("SYNTHETIC" in n for n in cohort.notes)
    assert list(cohort.cases.columns[:8]) == ["case_id", "patient_id", "image_index", "comparison", "indication",
                                              "findings", "impression", "label"]
    assert cohort.cases["case_id"].iloc[0] == "SYN-IU-000001"
    assert (cohort.cases["image_index"] == np.arange(40)).all() and cohort.cases["patient_id"].is_unique
    back = read_cohort(cohort.write(tmp_path / "iu"), verify=True)
    assert back.images.tobytes() == cohort.images.tobytes() and back.masks.tobytes() == cohort.masks.tobytes()
    pd.testing.assert_frame_equal(back.cases, cohort.cases, check_dtype=False)
    assert back.mask_names == cohort.mask_names and back.parameters == cohort.parameters and back.synthetic


def test_cxr14_cohort_is_multilabel_by_patient_without_text(cxr, tmp_path) -> None:
    cases = cxr.cases
    assert cxr.name == "synthetic-cxr14" and cxr.label_names == list(FINDINGS) and cxr.boxes is None
    assert not {"findings", "impression", "indication", "comparison", "label", "text"} & set(cases.columns)
    assert set(np.unique(cases[list(FINDINGS)])) == {0, 1}
    per_patient = cases.groupby("patient_id").size()
    assert per_patient.max() >= 3 and per_patient.mean() > 2 and (per_patient == 1).any()
    assert 0.2 < cases["no_finding"].mean() < 0.6
    assert (cases["no_finding"] == (cases[list(FINDINGS)].sum(axis=1) == 0)).all()
    for n in FINDINGS:  # labels are mined from the (unwritten) report
        assert (cases[n] == cases[f"report_{n}"].isin(["stated", "hedged", "false_mention"])).all()
    assert (cases[list(FINDINGS)].sum(axis=1) >= 2).any()
    assert cases["case_id"].iloc[0] == "SYN-CXR14-000001"
    back = read_cohort(cxr.write(tmp_path / "cxr"))
    assert back.label_names == list(FINDINGS) and back.counts()["positives"]["cardiomegaly"] == cases["cardiomegaly"].sum()


def test_cxr14_acquisition_differs_from_iu(iu, cxr) -> None:
    corner = lambda c: c.images[:, :3, 28:].mean()  # air at the top right corner
    assert corner(cxr) > corner(iu) + 10
    assert cxr.parameters["acquisition"] == "cxr14" and iu.parameters["acquisition"] == "iu"


# ------------------------------------------------------------------------------------------- parameters

@pytest.mark.parametrize("kwargs,name", [
    ({"cases": -1}, "cases"),
    ({"cases": 0}, "cases"),
    ({"cases": 2.5}, "cases"),
    ({"image_size": MIN_IMAGE_SIZE - 1}, "image_size"),
    ({"image_size": -64}, "image_size"),
    ({"abnormal_fraction": 1.2}, "abnormal_fraction"),
    ({"prevalence": {"nodule": -0.1}}, "prevalence.nodule"),
    ({"prevalence": {"nodule": 1.5}}, "prevalence.nodule"),
    ({"prevalence": {"tumour": 0.5}}, "prevalence"),
    ({"prevalence": {n: 0.0 for n in FINDINGS}}, "prevalence"),
    ({"subtlety": -0.1}, "subtlety"),
    ({"subtle_contrast": 0.0}, "subtle_contrast"),
    ({"omission_rate": 2}, "omission_rate"),
    ({"omission_rate": 0.6, "hedge_rate": 0.6}, "hedge_rate"),
    ({"marker_rate": float("nan")}, "marker_rate"),
    ({"border_rate": -1}, "border_rate"),
    ({"noise_label_correlation": 1.5}, "noise_label_correlation"),
    ({"acquisition": "ct"}, "acquisition"),
    ({"images_per_patient": 0.5}, "images_per_patient"),
    ({"noise_scale": -1}, "noise_scale"),
])
def test_impossible_parameters_are_named(kwargs: dict, name: str) -> None:
    with pytest.raises(ParameterError) as err:
        generate(SynthParams(**kwargs), "iu", 0)
    assert err.value.name == name


def test_bad_kind_seed_and_unknown_keys_are_named() -> None:
    for kind, seed, name in (("mimic", 0, "kind"), ("iu", -1, "seed"), ("iu", 1.5, "seed")):
        with pytest.raises(ParameterError) as err:
            generate(SMALL, kind, seed)
        assert err.value.name == name
    with pytest.raises(ParameterError) as err:
        SynthParams.from_dict({"cases": 10, "n_cases": 5, "colour": 1})
    assert "n_cases" in str(err.value) and "colour" in str(err.value)
    with pytest.raises(ParameterError) as err:
        render_case(SMALL, "iu", 0, 0, without=["tumour"])
    assert err.value.name == "without"
    assert SynthParams.from_dict({"cases": 10, "prevalence": {"nodule": 0.3}}).resolved("iu").prevalence["nodule"] == 0.3


def test_kind_defaults() -> None:
    assert SynthParams().resolved("iu").cases == 3000 and SynthParams().resolved("cxr14").cases == 6000
    assert SynthParams().resolved("cxr14").images_per_patient == 3.0
    assert SynthParams(cases=5).resolved("cxr14").cases == 5


def test_any_valid_knobs_give_a_consistent_cohort() -> None:
    from hypothesis import HealthCheck, given, settings
    from hypothesis import strategies as st

    rate = st.floats(0, 1)

    @settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
    @given(cases=st.integers(1, 6), size=st.integers(MIN_IMAGE_SIZE, 48), abnormal=rate, subtlety=rate,
           omission=st.floats(0, 0.5), hedge=st.floats(0, 0.5), marker=rate, border=rate, corr=rate,
           kind=st.sampled_from(["iu", "cxr14"]), seed=st.integers(0, 2**32))
    def check(cases, size, abnormal, subtlety, omission, hedge, marker, border, corr, kind, seed) -> None:
        params = SynthParams(cases=cases, image_size=size, abnormal_fraction=abnormal, subtlety=subtlety,
                             omission_rate=omission, hedge_rate=hedge, marker_rate=marker, border_rate=border,
                             noise_label_correlation=corr)
        cohort = generate(params, kind, seed)
        assert cohort.images.shape == (cases, size, size) and len(cohort.cases) == cases
        for bit, name in enumerate(MASK_NAMES):
            has = ((cohort.masks >> bit) & 1).reshape(cases, -1).any(axis=1)
            column = f"finding_{name}" if name in FINDINGS else f"noise_{name}"
            assert not (has & (cohort.cases[column] == 0)).any(), name

    check()


@pytest.mark.parametrize("kind", ["iu", "cxr14"])
def test_plot_synthetic_grid_writes_a_png(kind: str, tmp_path) -> None:
    from PIL import Image

    from replication.figures import plot_synthetic_grid

    real = tmp_path / "real.png"
    Image.fromarray(np.full((40, 40), 128, dtype=np.uint8)).save(real)
    out = plot_synthetic_grid(generate(SynthParams(cases=20, image_size=32), kind, 0), tmp_path / "fig" / "grid.png",
                              n=3, real_image=real if kind == "iu" else None)
    with Image.open(out) as im:
        assert im.format == "PNG" and im.width > 500
    assert [p.name for p in out.parent.iterdir()] == ["grid.png"]  # written atomically, nothing left behind
