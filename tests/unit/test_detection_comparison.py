"""The localisation scoring (the method registry and its scorers) on hand-made inputs (no trained model needed)."""

import numpy as np
import pandas as pd
import pytest

from replication.errors import DataError, ParameterError
from replication.experiments.localisation import boxes_markdown, mask_boxes
from replication.explain.scoring import METHODS, Geometry, Maps, score_box_methods, score_boxes, score_masks


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
    table = score_masks(maps_of(smooth, smooth), np.stack([lesion, lesion]), np.zeros((2, 32, 32), bool), [0.5, 0.9], top_k=0.05)
    paper = table[(table["attribution"] == "integrated gradients") & (table["method"] == "clusters + circles (paper)")]
    assert (paper["hit_mean"] == 1.0).all()
    assert (paper["iou_mean"] > 0.5).all()
    threshold_only = table[(table["method"] == "threshold only") & (table["attribution"] == "integrated gradients")]
    assert threshold_only["iou_mean"].max() == pytest.approx(1.0)
    assert (table["signal_on_artefacts_mean"].dropna() == 0).all()


def test_attributions_on_a_marker_miss_and_are_counted_as_signal_on_artefacts():
    lesion, marker = square(), square(r0=24, r1=30, c0=24, c1=30)
    table = score_masks(maps_of(marker * 1.0), lesion[None], marker[None], [0.7], top_k=0.05)
    row = table[(table["attribution"] == "integrated gradients") & (table["method"] == "clusters + circles (paper)")].iloc[0]
    assert row["hit_mean"] == 0.0 and row["iou_mean"] == 0.0 and row["signal_on_artefacts_mean"] > 0.5
    pointing = table[table["method"] == "pointing game (hottest pixel)"].iloc[0]
    assert pointing["hit_mean"] == 0.0 and pointing["signal_on_artefacts_mean"] == 1.0


def test_a_constant_map_detects_nothing_without_dividing_by_zero():
    table = score_masks(maps_of(np.zeros((32, 32))), square()[None], np.zeros((1, 32, 32), bool), [0.7], top_k=0.05)
    assert (table["hit_mean"] == 0).all()
    assert table["signal_on_artefacts_mean"].isna().sum() >= 1  # no signal pixel: undefined, not 0


def test_bad_sweeps_and_shapes_are_named():
    with pytest.raises(ParameterError, match="sight_sensitivities"):
        score_masks(maps_of(np.ones((32, 32))), square()[None], np.zeros((1, 32, 32), bool), [1.5], top_k=0.05)
    with pytest.raises(DataError, match="one \\(H, W\\) mask per image"):
        score_masks(maps_of(np.ones((32, 32))), np.stack([square(), square()]), np.zeros((2, 32, 32), bool), [0.7], top_k=0.05)


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
    text = boxes_markdown(score_boxes(maps_of(*maps), boxes, 0.7).assign(ground_truth="hand-made"), table.assign(ground_truth="hand-made"),
                          synthetic=False, rule="midpoint", steps=256, models="m", sight_sensitivity=0.7)
    assert "### Every method on the same 4 boxes (hand-made)" in text and "0.9 / 0.9" in text
    with pytest.raises(DataError, match="1 boxes for 4"):
        score_box_methods(maps_of(*maps), boxes.head(1), [0.5], top_k=0.05)
    one = score_box_methods(maps_of(maps[0]), boxes.head(1), [0.5, 0.9], top_k=0.05)  # no other half to tune on: no tuned row
    assert len(one) == 2 * (3 * 2 + 2) and not one["method"].str.contains("tuned").any()
    with pytest.raises(ParameterError, match="distinct"):
        score_box_methods(maps_of(*maps), boxes, [0.5, 0.5], top_k=0.05)


def test_mask_boxes_are_the_bounding_boxes_of_the_lesion_bits():
    masks = np.zeros((2, 32, 32), np.uint16)
    masks[1, 4:10, 6:9] |= 1 << 1
    frame = mask_boxes(masks, ["cardiomegaly", "nodule"], [0, 1, 1], ["nodule", "nodule", "cardiomegaly"])
    assert frame.to_dict("records") == [{"image_index": 1, "finding": "nodule", "x": 6.0, "y": 4.0, "w": 3.0, "h": 6.0}]


# ----------------------------------------------------------------------------------------- the registry
def test_every_registered_method_is_scored_once_per_sight_sensitivity_it_uses():
    """Each key gives one row per attribution: at every sight sensitivity of the sweep if it uses one, else once;
    the box scorer takes every method with an area (not the pointing game) and adds the tuned threshold."""
    lesion, sweep = square(), [0.5, 0.7, 0.9]
    rng = np.random.default_rng(1)
    maps = maps_of(*(lesion + rng.uniform(0, 0.5, lesion.shape) for _ in range(3)))
    labels = {m.label(Geometry(2.0, 1.0, 0.05)): key for key, m in METHODS.items()}
    assert len(labels) == len(METHODS) == 6
    table = score_masks(maps, np.stack([lesion] * 3), np.zeros((3, 32, 32), bool), sweep, top_k=0.05)
    for source, rows in table.groupby("attribution"):
        counts = rows["method"].map(labels).value_counts().to_dict()
        assert counts == {key: len(sweep) if m.swept else 1 for key, m in METHODS.items()}, source
        assert rows.loc[rows["method"].map(labels).map(lambda k: not METHODS[k].swept), "sight_sensitivity"].isna().all()
    boxes = pd.DataFrame([{"finding": "Nodule", "x": 8, "y": 8, "w": 8, "h": 8}] * 3)
    methods = score_box_methods(maps, boxes, sweep, top_k=0.05)
    for source, rows in methods.groupby("attribution"):
        keys = rows["method"].map(lambda name: labels.get(name, "tuned")).value_counts().to_dict()
        assert keys == {**{key: len(sweep) if m.swept else 1 for key, m in METHODS.items() if m.kind != "point"}, "tuned": 1}, source
    only = score_masks(maps, np.stack([lesion] * 3), np.zeros((3, 32, 32), bool), sweep, top_k=0.05, keys=["otsu", "threshold"])
    assert set(only["method"]) == {"Otsu threshold", "threshold only"} and len(only) == 2 * (1 + len(sweep))


def test_an_unknown_or_unfit_method_key_is_refused():
    maps, truth = maps_of(square() * 1.0), square()[None]
    with pytest.raises(ParameterError) as err:
        score_masks(maps, truth, np.zeros_like(truth), [0.7], top_k=0.05, keys=["clusters + circles (paper)"])  # a display name
    assert err.value.name == "methods" and "clusters_circles" in str(err.value)
    boxes = pd.DataFrame([{"finding": "Nodule", "x": 8, "y": 8, "w": 8, "h": 8}])
    with pytest.raises(ParameterError, match="no area"):
        score_box_methods(maps, boxes, [0.7], top_k=0.05, keys=["pointing_game"])
    with pytest.raises(ParameterError, match="distinct"):
        score_masks(maps, truth, np.zeros_like(truth), [0.7], top_k=0.05, keys=["otsu", "otsu"])
