import numpy as np
import pandas as pd
import pytest
from scipy import stats

from replication.experiments.curves import paired_difference, per_split, table3, table3_markdown, table3_metrics, table3_summary
from replication.errors import DataError


def hand_made() -> pd.DataFrame:
    """Two splits, three epochs, three models, one setting: every number below is checkable by hand."""
    acc = {
        ("multimodal", 0): [0.70, 0.80, 0.90], ("multimodal", 1): [0.60, 0.80, 0.70],
        ("text", 0): [0.60, 0.70, 0.80], ("text", 1): [0.60, 0.60, 0.60],
        ("image", 0): [0.50, 0.50, 0.50], ("image", 1): [0.55, 0.65, 0.60],
    }
    rows = []
    for (model, split), values in acc.items():
        for epoch, a in enumerate(values, start=1):
            rows.append({"setting": "high", "model": model, "split": split, "epoch": epoch, "val_accuracy": a,
                         "val_loss": 1 - a, "val_auroc": a + 0.05})
    return pd.DataFrame(rows).sample(frac=1, random_state=0)  # row order must not matter


def test_per_split_statistics():
    s = per_split(hand_made()).set_index(["model", "split"])
    assert s.loc[("multimodal", 0), "mean_accuracy"] == pytest.approx(0.8)
    assert s.loc[("multimodal", 1), "final_accuracy"] == pytest.approx(0.7)  # last epoch, not the last row
    assert s.loc[("multimodal", 1), "best_accuracy"] == pytest.approx(0.8)
    assert s.loc[("image", 1), "final_auroc"] == pytest.approx(0.65)


def test_table3_against_the_hand_computation():
    reference = {"numbers": {f"table3.high.{m}": {"paper": v} for m, v in {"multimodal": 0.81, "text": 0.77, "image": 0.74}.items()}}
    summary = table3(hand_made(), reference)["high"]
    mm = summary["models"]["multimodal"]
    assert mm["mean_accuracy"]["mean"] == pytest.approx((0.8 + 0.7) / 2)
    assert mm["mean_accuracy"]["std"] == pytest.approx(np.std([0.8, 0.7], ddof=1))
    assert mm["splits"] == 2 and mm["epochs"] == 3 and mm["paper_mean_accuracy"] == 0.81
    d = summary["differences"]["multimodal - text"]
    diffs = np.array([0.8 - 0.7, 0.7 - 0.6])
    half = stats.t.ppf(0.975, 1) * diffs.std(ddof=1) / np.sqrt(2)
    assert d["mean"] == pytest.approx(0.1) and d["low"] == pytest.approx(0.1 - half) and d["high"] == pytest.approx(0.1 + half)
    md = table3_markdown(table3(hand_made()), synthetic=True, baselines={"majority class": {"accuracy": 0.6, "auroc": 0.5}})
    assert "SYNTHETIC" in md and "| multimodal | 0.750 ± 0.071" in md and "majority class (baseline)" in md
    assert "plain t-interval" in md and "anti-conservative" in md   # shown as the paper's protocol, labelled as not evidence


def test_one_split_has_no_interval_and_duplicates_are_refused():
    assert np.isnan(paired_difference([0.8], [0.7])["low"])
    one = hand_made()
    md = table3_markdown(table3(one[one["split"] == 0]), synthetic=True)
    assert "one split: no interval" in md and "nan" not in md
    curves = hand_made()
    with pytest.raises(DataError, match="more than one row"):
        per_split(pd.concat([curves, curves.iloc[:1]]))
    with pytest.raises(DataError, match="missing columns"):
        per_split(curves.drop(columns="val_auroc"))


def test_test_accuracy_and_baselines_join_the_summary_and_the_metrics_stay_small():
    finals = [{"setting": "high", "model": "multimodal", "split": k, "test_accuracy": a} for k, a in enumerate((0.9, 0.7))]
    finals += [{"setting": "high", "model": "majority class", "split": k, "val_accuracy": 0.6, "val_auroc": 0.5} for k in (0, 1)]
    summary, baselines = table3_summary(hand_made(), finals)
    assert summary["high"]["models"]["multimodal"]["test_accuracy"]["mean"] == pytest.approx(0.8)
    assert baselines == {"high": {"majority class": {"accuracy": 0.6, "auroc": 0.5}}}
    metrics = table3_metrics(summary, baselines)["high"]
    assert metrics["multimodal"]["mean_accuracy"] == pytest.approx(0.75) and metrics["multimodal"]["test_accuracy"] == pytest.approx(0.8)
    assert metrics["multimodal_minus_text"]["mean"] == pytest.approx(0.1) and "test_accuracy" not in metrics["text"] or metrics["text"]["test_accuracy"] is None
    assert all(isinstance(v, (int, float)) or v is None for block in metrics.values() for entry in block.values()
               for v in (entry.values() if isinstance(entry, dict) else [entry]))
