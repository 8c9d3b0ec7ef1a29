"""Fig. 4 on the test split: the paired pretrained-minus-scratch tests read the runs' per-case scores, the threshold
comes from validation, and the baselines score the same test cases."""

import numpy as np
import pandas as pd
import pytest

from replication import statistics as st
from replication.errors import DataError
from replication.experiments.transfer import TransferResult, transfer_tests, transfer_tests_markdown
from replication.params import StatisticsParams

STATS = StatisticsParams(confidence=0.95, resamples=200)


def run(init: str, split: str, rng: np.random.Generator, signal: float, ids: dict, labels: dict) -> dict:
    scores = {p: (labels[p] * signal + rng.normal(size=len(labels[p]))).tolist() for p in ("val", "test")}
    counts = {p: len(v) for p, v in labels.items()}
    return {"init": f"densenet121/{init}", "split": split,
            "metrics": {"scores": scores, "labels": {p: v.tolist() for p, v in labels.items()}, "case_ids": ids, "counts": counts}}


@pytest.fixture
def result():
    rng = np.random.default_rng(0)
    runs = []
    for split in ("split_0", "split_1"):
        n = {"train": 200, "val": 50, "test": 80}
        ids = {p: [f"{split}-{p}-{i}" for i in range(k)] for p, k in n.items()}
        labels = {p: rng.permutation(np.arange(k) % 2) for p, k in n.items()}
        runs += [run("chestxray14", split, rng, 2.0, ids, labels), run("scratch", split, rng, 0.3, ids, labels),
                 {"init": "densenet121/imagenet", "not_run": "not run: weights not available offline"}]
    # the reports carry the label: TF-IDF is strong on these same cases
    tokens = {c: (["opacity"] if lab else ["clear"]) + ["lungs"]
              for r in runs if "metrics" in r for p in ("train", "val", "test")
              for c, lab in zip(r["metrics"]["case_ids"][p], r["metrics"]["labels"][p])}
    return TransferResult(runs, pd.DataFrame()), tokens


def test_paired_tests_on_the_test_split(result):
    res, tokens = result
    tests = transfer_tests(res, tokens, STATS, seed=1)
    split = tests["splits"]["split_0"]
    pre, scratch = (next(r for r in res.runs if r["init"] == f"densenet121/{i}" and r["split"] == "split_0")["metrics"]
                    for i in ("chestxray14", "scratch"))
    y = np.asarray(pre["labels"]["test"])
    c = split["comparisons"]["densenet121/chestxray14 - densenet121/scratch"]
    assert c["auroc"] == st.delong_test(y, pre["scores"]["test"], scratch["scores"]["test"], 0.95)
    assert c["auroc"]["estimate"] > 0.3 and c["auroc"]["p_value"] < 0.01
    # accuracy at each model's own validation threshold
    t = st.choose_threshold(pre["labels"]["val"], pre["scores"]["val"])
    assert split["test"]["densenet121/chestxray14"]["threshold"] == t
    assert split["test"]["densenet121/chestxray14"]["accuracy"] == pytest.approx(np.mean((np.asarray(pre["scores"]["test"]) >= t) == y))
    assert split["test"]["majority class"]["accuracy"] == pytest.approx(0.5) and split["test"]["majority class"]["auroc"] == 0.5
    assert split["test"]["tf-idf (reports of the same cases)"]["auroc"] > 0.95
    # across the two splits: the corrected resampled t of the per-split differences
    d = [tests["splits"][s]["comparisons"]["densenet121/chestxray14 - densenet121/scratch"]["auroc"]["estimate"] for s in ("split_0", "split_1")]
    assert tests["differences"]["densenet121/chestxray14 - densenet121/scratch"]["auroc"] == st.corrected_resampled_t(d, 200, 80, 0.95)
    assert "densenet121/imagenet" not in tests["models"]
    text = transfer_tests_markdown(tests)
    assert "| densenet121/chestxray14 - densenet121/scratch | +0." in text and "corrected resampled t" in text


def test_runs_scored_on_other_cases_are_refused(result):
    res, tokens = result
    res.runs[1]["metrics"]["case_ids"] = {**res.runs[1]["metrics"]["case_ids"], "test": list(reversed(res.runs[1]["metrics"]["case_ids"]["test"]))}
    with pytest.raises(DataError, match="same ones"):
        transfer_tests(res, tokens, STATS, seed=1)
