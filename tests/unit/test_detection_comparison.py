"""The localisation scoring and the paper comparison on hand-made inputs (no trained model needed)."""

import json

import numpy as np
import pandas as pd
import pytest

from conftest import REPO
from replication.comparison import compare, comparison_html, comparison_markdown, key_metrics, load_reference
from replication.detection import Maps, boxes_markdown, mask_boxes, score_box_methods, score_boxes, score_masks
from replication.errors import DataError, ParameterError


def square(n=32, r0=8, r1=16, c0=8, c1=16):
    m = np.zeros((n, n), bool)
    m[r0:r1, c0:c1] = True
    return m


def maps_of(*arrays):
    stack = np.stack(arrays).astype(float)
    return Maps(stack, stack.copy(), np.zeros(len(stack)), np.full(len(stack), 0.9))


def test_attributions_on_the_lesion_score_a_hit_and_a_high_iou():
    lesion = square()
    smooth = lesion * 1.0 + np.random.default_rng(0).uniform(0, 0.01, lesion.shape)  # signal on the lesion, faint noise
    table = score_masks(maps_of(smooth, smooth), np.stack([lesion, lesion]), np.zeros((2, 32, 32), bool), [0.5, 0.9])
    paper = table[(table["attribution"] == "integrated gradients") & (table["method"] == "clusters + circles (paper)")]
    assert (paper["hit_mean"] == 1.0).all()
    assert (paper["iou_mean"] > 0.5).all()
    threshold_only = table[(table["method"] == "threshold only") & (table["attribution"] == "integrated gradients")]
    assert threshold_only["iou_mean"].max() == pytest.approx(1.0)
    assert (table["signal_on_artefacts_mean"].dropna() == 0).all()


def test_attributions_on_a_marker_miss_and_are_counted_as_signal_on_artefacts():
    lesion, marker = square(), square(r0=24, r1=30, c0=24, c1=30)
    table = score_masks(maps_of(marker * 1.0), lesion[None], marker[None], [0.7])
    row = table[(table["attribution"] == "integrated gradients") & (table["method"] == "clusters + circles (paper)")].iloc[0]
    assert row["hit_mean"] == 0.0 and row["iou_mean"] == 0.0 and row["signal_on_artefacts_mean"] > 0.5
    pointing = table[table["method"] == "pointing game (hottest pixel)"].iloc[0]
    assert pointing["hit_mean"] == 0.0 and pointing["signal_on_artefacts_mean"] == 1.0


def test_a_constant_map_detects_nothing_without_dividing_by_zero():
    table = score_masks(maps_of(np.zeros((32, 32))), square()[None], np.zeros((1, 32, 32), bool), [0.7])
    assert (table["hit_mean"] == 0).all()
    assert table["signal_on_artefacts_mean"].isna().sum() >= 1  # no signal pixel: undefined, not 0


def test_bad_sweeps_and_shapes_are_named():
    with pytest.raises(ParameterError, match="sight_sensitivities"):
        score_masks(maps_of(np.ones((32, 32))), square()[None], np.zeros((1, 32, 32), bool), [1.5])
    with pytest.raises(DataError, match="one \\(H, W\\) mask per image"):
        score_masks(maps_of(np.ones((32, 32))), np.stack([square(), square()]), np.zeros((2, 32, 32), bool), [0.7])


def test_box_scores_per_finding_and_overall():
    lesion = square()
    boxes = pd.DataFrame([{"finding": "Nodule", "x": 8, "y": 8, "w": 8, "h": 8}, {"finding": "Mass", "x": 20, "y": 20, "w": 6, "h": 6}])
    table = score_boxes(maps_of(lesion * 1.0, lesion * 1.0), boxes, 0.7)
    by = table.set_index("finding")
    assert by.loc["Nodule", "hit_mean"] == 1.0 and by.loc["Mass", "hit_mean"] == 0.0
    assert by.loc["all findings", "boxes"] == 2 and by.loc["all findings", "accuracy_iobb_0.1"] == 0.5
    with pytest.raises(DataError, match="1 boxes for 2"):
        score_boxes(maps_of(lesion * 1.0, lesion * 1.0), boxes.head(1), 0.7)


def test_every_method_on_boxes_and_a_cross_fitted_tuned_threshold():
    # four boxes, each with a bright core (1.0) inside a dim halo (0.55) that spills over the box: a threshold of
    # 0.5 keeps the halo too (IoU < 1), 0.9 only the core, which is the box (IoU 1)
    n, maps, rows = 32, [], []
    for k in range(4):
        m = np.zeros((n, n))
        r0 = 4 + 6 * k
        m[max(r0 - 2, 0):r0 + 6, 2:14] = 0.55
        m[r0:r0 + 4, 4:12] = 1.0
        maps.append(m)
        rows.append({"finding": "Nodule", "x": 4, "y": r0, "w": 8, "h": 4})
    boxes = pd.DataFrame(rows)
    table = score_box_methods(maps_of(*maps), boxes, [0.5, 0.9], top_k=0.05)
    ig = table[table["attribution"] == "integrated gradients"].assign(s=lambda t: t["sight_sensitivity"].fillna(-1)).set_index(["method", "s"])
    assert len(table) == 2 * (3 * 2 + 2 + 1) and (table["boxes"] == 4).all()
    assert ig.loc[("threshold only", 0.9), "iou_mean"] == pytest.approx(1.0)
    assert ig.loc[("threshold only", 0.5), "iou_mean"] < 0.5
    tuned = ig.loc[("threshold only, tuned (2-fold)", -1)]
    assert tuned["iou_mean"] == pytest.approx(1.0) and tuned["note"].endswith("0.9 / 0.9")
    otsu = ig.loc[("Otsu threshold", -1)]  # Otsu separates the background from both levels: core and halo
    assert otsu["iou_mean"] == pytest.approx(ig.loc[("threshold only", 0.5), "iou_mean"]) and otsu["accuracy_iobb_0.1"] == 1.0
    text = boxes_markdown(score_boxes(maps_of(*maps), boxes, 0.7).assign(ground_truth="hand-made"),
                          {"rule": "midpoint", "steps": 256, "models": "m", "sight_sensitivity": 0.7}, table.assign(ground_truth="hand-made"))
    assert "### Every method on the same 4 boxes (hand-made)" in text and "0.9 / 0.9" in text
    with pytest.raises(DataError, match="1 boxes for 4"):
        score_box_methods(maps_of(*maps), boxes.head(1))
    one = score_box_methods(maps_of(maps[0]), boxes.head(1), [0.5, 0.9])  # no other half to tune on: no tuned row
    assert len(one) == 2 * (3 * 2 + 2) and not one["method"].str.contains("tuned").any()
    with pytest.raises(ParameterError, match="distinct"):
        score_box_methods(maps_of(*maps), boxes, [0.5, 0.5])


def test_mask_boxes_are_the_bounding_boxes_of_the_lesion_bits():
    masks = np.zeros((2, 32, 32), np.uint16)
    masks[1, 4:10, 6:9] |= 1 << 1
    frame = mask_boxes(masks, ["cardiomegaly", "nodule"], [0, 1, 1], ["nodule", "nodule", "cardiomegaly"])
    assert frame.to_dict("records") == [{"image_index": 1, "finding": "nodule", "x": 6.0, "y": 4.0, "w": 3.0, "h": 6.0}]


# ----------------------------------------------------------------------------------------- comparison
def write_metrics(root, synthetic, text_acc=0.75, mean_acc=0.80):
    summary2 = {"custom": {f"{p}_accuracy": {"mean": text_acc, "std": 0.01} for p in ("train", "val", "test")}}
    (root / "table2").mkdir(parents=True)
    (root / "table2" / "metrics.json").write_text(json.dumps({"synthetic": synthetic, "summary": summary2, "corpus": {"mean_words": 27.0}}))
    models = {m: {"mean_accuracy": {"mean": mean_acc, "std": 0.02}, "final_auroc": {"mean": 0.8, "std": 0.01}, "splits": 3, "epochs": 10}
              for m in ("multimodal", "text", "image")}
    diffs = {f"multimodal - {o}": {"mean": 0.04, "low": 0.01, "high": 0.07, "splits": 3} for o in ("text", "image")}
    (root / "table3").mkdir()
    (root / "table3" / "metrics.json").write_text(json.dumps({"synthetic": synthetic, "summary": {
        s: {"models": models, "differences": diffs} for s in ("low", "high")}}))


def test_a_synthetic_run_is_never_judged(tmp_path):
    write_metrics(tmp_path / "results", synthetic=True)
    rows, header = compare(load_reference(REPO / "paper" / "reference.yaml"), tmp_path / "results", tmp_path / "none")
    assert {r.verdict for r in rows if r.section in ("Table 2", "Table 3")} <= {"not comparable", "not run"}
    text = comparison_markdown(rows, header, "default")
    assert "SYNTHETIC DATA" in text and "within tolerance" not in text.split("| section")[1]
    assert "<table>" in comparison_html(text, {"Fig. 5": "fig5.png"}) and "fig5.png" in comparison_html(text, {"Fig. 5": "fig5.png"})


def test_a_real_run_is_judged_against_the_tolerance(tmp_path):
    write_metrics(tmp_path / "results", synthetic=False, text_acc=0.75, mean_acc=0.80)
    rows, _ = compare(load_reference(REPO / "paper" / "reference.yaml"), tmp_path / "results", tmp_path / "none")
    verdict = {(r.section, r.quantity): r for r in rows}
    custom_test = verdict[("Table 2", "custom embedding, test accuracy")]
    assert custom_test.verdict == "within tolerance" and custom_test.difference == pytest.approx(0.0)
    assert verdict[("Table 2", "custom embedding, train accuracy")].verdict == "outside tolerance"  # 0.75 vs 0.88
    high_mm = verdict[("Table 3", "multimodal, high learning rate (0.01), accuracy averaged over epochs")]
    assert high_mm.verdict == "within tolerance" and high_mm.reproduced == 0.80
    assert verdict[("Table 2", "generic embedding, test accuracy")].verdict == "not run"
    assert all(r.verdict == "unassigned" for r in rows if r.section == "AUROC")
    assert key_metrics(tmp_path / "results")["table3.high.multimodal.mean_accuracy"] == 0.80
