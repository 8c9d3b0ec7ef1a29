import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings, strategies as st

from replication.data.splits import grouped_stratified_split, make_splits
from replication.errors import DataError, ParameterError

FRACTIONS = {"train": 0.7, "val": 0.1, "test": 0.2}


def cases_frame(n=400, seed=0):
    rng = np.random.default_rng(seed)
    patients = rng.integers(0, n // 2, n)
    return pd.DataFrame({"case_id": [f"c{i}" for i in range(n)], "patient_id": patients.astype(str),
                         "label": (rng.random(n) < 0.6).astype(int)})


def test_groups_never_straddle_and_strata_are_balanced():
    out = make_splits(cases_frame(), count=3, fractions=FRACTIONS, seed=7)
    for k in range(3):
        sides = out.groupby("patient_id")[f"split_{k}"].nunique()
        assert (sides == 1).all()
        share = out.groupby(f"split_{k}").size() / len(out)
        assert abs(share["train"] - 0.7) < 0.05 and abs(share["test"] - 0.2) < 0.05
        rate = out.groupby(f"split_{k}")["label"].mean()
        assert (abs(rate - out["label"].mean()) < 0.08).all()
    assert not out["split_0"].equals(out["split_1"])  # each split is a different draw


def test_same_seed_same_splits():
    a = make_splits(cases_frame(), 2, FRACTIONS, seed=1)
    b = make_splits(cases_frame(), 2, FRACTIONS, seed=1)
    c = make_splits(cases_frame(), 2, FRACTIONS, seed=2)
    assert a.equals(b) and not a["split_0"].equals(c["split_0"])


@settings(max_examples=40, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 30), st.integers(0, 1)), min_size=1, max_size=200), st.integers(0, 10**6))
def test_every_case_gets_one_part_and_groups_stay_whole(rows, seed):
    groups = [g for g, _ in rows]
    labels = [l for _, l in rows]
    parts = grouped_stratified_split(labels, groups, FRACTIONS, seed)
    assert set(parts) <= {"train", "val", "test"} and len(parts) == len(rows)
    for g in set(groups):
        assert len({p for p, gg in zip(parts, groups) if gg == g}) == 1


def test_fixed_test_list_is_respected():
    frame = cases_frame()
    frame["official_split"] = np.where(frame["patient_id"].astype(int) < 40, "test", "train_val")
    out = make_splits(frame, 1, FRACTIONS, seed=3)
    assert (out.loc[out.official_split == "test", "split_0"] == "test").all()
    assert set(out.loc[out.official_split == "train_val", "split_0"]) == {"train", "val"}


def test_a_part_with_one_class_is_an_error():
    frame = pd.DataFrame({"case_id": list("abcd"), "patient_id": list("abcd"), "label": [0, 0, 0, 1]})
    with pytest.raises(DataError, match="split_0: the .* part holds"):
        make_splits(frame, 1, FRACTIONS, seed=0)


@pytest.mark.parametrize("fractions", [{"train": 0.5, "val": 0.1}, {"train": -0.1, "val": 0.6, "test": 0.5}, {"train": 0.8, "dev": 0.2}])
def test_bad_fractions_name_the_parameter(fractions):
    with pytest.raises(ParameterError, match="splits.fractions"):
        make_splits(cases_frame(), 1, fractions, seed=0)
