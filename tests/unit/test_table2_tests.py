"""Table 2 on the test split: custom − generic / random / TF-IDF as paired tests of the runs' own test scores."""

import numpy as np
import pytest

from replication import statistics as st
from replication.errors import DataError
from replication.experiments.table2 import BASELINES, table2_tests
from replication.params import StatisticsParams

STATS = StatisticsParams(confidence=0.95, resamples=200)


def runs(signal: dict, splits=("split_0", "split_1", "split_2")):
    rng = np.random.default_rng(5)
    out = []
    for column in splits:
        labels = {p: rng.permutation(np.arange(k) % 2) for p, k in (("val", 40), ("test", 90))}
        for variant, strength in signal.items():
            out.append({"variant": variant, "split": column, "labels": {p: v.tolist() for p, v in labels.items()},
                        "scores": {p: (strength * v + rng.normal(size=len(v))).tolist() for p, v in labels.items()}})
        out.append({"variant": BASELINES[1], "split": column, "majority": 1.0, "counts": {"train": 300, "val": 40, "test": 90}})
    return out


def test_custom_against_each_alternative():
    r = runs({"custom": 2.5, "random": 0.0, BASELINES[0]: 2.5})   # generic not run: its comparison is left out
    tests = table2_tests(r, STATS, seed=0)
    first = tests["splits"][0]
    assert set(first["comparisons"]) == {"custom - random", f"custom - {BASELINES[0]}"}
    custom, random_ = (next(x for x in r if x["variant"] == v and x["split"] == "split_0") for v in ("custom", "random"))
    y = custom["labels"]["test"]
    assert first["comparisons"]["custom - random"]["auroc"] == st.delong_test(y, custom["scores"]["test"], random_["scores"]["test"])
    assert first["test"]["majority class"]["accuracy"] == pytest.approx(0.5)
    across = tests["differences"]
    d = [s["comparisons"]["custom - random"]["auroc"]["estimate"] for s in tests["splits"]]
    assert across["custom - random"]["auroc"] == st.corrected_resampled_t(d, 300, 90, 0.95)
    assert across["custom - random"]["auroc"]["low"] > 0 and across["custom - random"]["significant_splits"] == across["custom - random"]["significant_splits_a_higher"] == 3
    # equal signal: no difference found against TF-IDF
    assert across[f"custom - {BASELINES[0]}"]["auroc"]["p_value"] > 0.05
    flat = st.summary_metrics(tests)   # what metrics.json holds: the numbers, not the per-split detail
    assert flat["differences"]["custom - random"]["auroc"] == {k: across["custom - random"]["auroc"][k] for k in ("mean", "low", "high", "p_value")}
    assert set(flat["models"]["custom"]) == {"test_auroc", "test_accuracy", "test_balanced_accuracy"}
    text = st.tests_markdown(tests, tests["splits"], "Table 2 on the test split", BASELINES)
    assert "| custom - random | +0." in text and "3 of 3" in text and "majority class (baseline)" in text


def test_one_split_shows_that_splits_tests():
    tests = table2_tests(runs({"custom": 2.0, "random": 0.0}, splits=("split_0",)), STATS, seed=0)
    assert tests["differences"] == {}
    assert "| custom - random | +" in st.tests_markdown(tests, tests["splits"], "t")


def test_scores_on_other_cases_are_refused():
    r = runs({"custom": 1.0, "random": 0.0})
    r[1]["labels"] = {**r[1]["labels"], "test": r[1]["labels"]["test"][::-1]}
    with pytest.raises(DataError, match="same ones"):
        table2_tests(r, STATS, seed=0)
