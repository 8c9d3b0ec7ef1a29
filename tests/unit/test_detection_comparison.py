"""The localisation scoring (the method registry, per-detection scoring, the scorers, the baselines and the sanity
check) on hand-made inputs: no trained model needed."""

import numpy as np
import pandas as pd
import pytest

from replication.errors import DataError, ParameterError
from replication.experiments.localisation import boxes_markdown, mask_boxes
from replication.explain.baselines import baseline_maps, cascade, centre_maps, randomise, rank_similarity, smoothgrad
from replication.explain.localisation import bootstrap_ci
from replication.explain.scoring import (
    METHODS,
    WHOLE_IMAGE,
    Geometry,
    Maps,
    score_box_methods,
    score_boxes,
    score_case,
    score_masks,
    sight_sensitivity_tradeoff,
)


def square(n=32, r0=8, r1=16, c0=8, c1=16):
    m = np.zeros((n, n), bool)
    m[r0:r1, c0:c1] = True
    return m


def maps_of(*arrays):
    stack = np.stack(arrays).astype(float)
    return Maps(stack, stack.copy(), np.zeros(len(stack)), np.full(len(stack), 0.9))


def pick(table, attribution, method, s=None):
    rows = table[(table["attribution"] == attribution) & (table["method"] == method)]
    if s is not None:
        rows = rows[np.isclose(rows["sight_sensitivity"].astype(float), s)]
    assert len(rows) == 1, (attribution, method, s)
    return rows.iloc[0]


def test_attributions_on_the_lesion_score_a_hit_a_high_iou_and_no_false_positive():
    lesion = square()
    smooth = lesion * 1.0 + np.random.default_rng(0).uniform(0, 0.01, lesion.shape)  # signal on the lesion, faint noise
    table, cases = score_masks(maps_of(smooth, smooth), np.stack([lesion, lesion]), np.zeros((2, 32, 32), bool), [0.5, 0.9], top_k=0.05)
    for s in (0.5, 0.9):
        paper = pick(table, "integrated gradients", "clusters + circles (paper)", s)
        assert paper["region_hit_mean"] == 1.0 and paper["iou_mean"] > 0.5
        assert paper["accuracy_iobb_0.1"] == 1.0 and paper["afp_iobb_0.1"] == 0.0 and paper["precision"] == 1.0
        assert np.isnan(paper["pointing_game_mean"])  # one definition per column: the pointing game is its own row
    assert pick(table, "integrated gradients", "threshold only", 0.5)["iou_mean"] == pytest.approx(1.0)
    assert pick(table, "integrated gradients", "pointing game (hottest pixel)")["pointing_game_mean"] == 1.0
    assert (table["signal_on_artefacts_mean"].dropna() == 0).all()
    assert set(cases["case"]) == {0, 1} and len(cases) == 2 * len(table)


def test_attributions_on_a_marker_miss_and_are_counted_as_signal_on_artefacts():
    lesion, marker = square(), square(r0=24, r1=30, c0=24, c1=30)
    table, _ = score_masks(maps_of(marker * 1.0), lesion[None], marker[None], [0.7], top_k=0.05)
    row = pick(table, "integrated gradients", "clusters + circles (paper)", 0.7)
    assert row["region_hit_mean"] == 0.0 and row["iou_mean"] == 0.0 and row["signal_on_artefacts_mean"] > 0.5
    assert row["accuracy_iobb_0.1"] == 0.0 and row["afp_iobb_0.1"] == 1.0 and row["precision"] == 0.0
    pointing = pick(table, "integrated gradients", "pointing game (hottest pixel)")
    assert pointing["pointing_game_mean"] == 0.0 and pointing["signal_on_artefacts_mean"] == 1.0


def test_a_constant_map_detects_nothing_without_dividing_by_zero():
    table, _ = score_masks(maps_of(np.zeros((32, 32))), square()[None], np.zeros((1, 32, 32), bool), [0.7], top_k=0.05)
    mapped = table[table["attribution"] != WHOLE_IMAGE]
    assert (mapped["region_hit_mean"].dropna() == 0).all() and (mapped["detections_mean"].dropna() == 0).all()
    assert (mapped["afp_iobb_0.1"].dropna() == 0).all()  # nothing detected: no false positive either
    assert mapped["signal_on_artefacts_mean"].isna().sum() >= 1  # no signal pixel: undefined, not 0
    assert mapped["pixel_precision_mean"].isna().sum() >= 1


def test_bad_sweeps_and_shapes_are_named():
    with pytest.raises(ParameterError, match="sight_sensitivities"):
        score_masks(maps_of(np.ones((32, 32))), square()[None], np.zeros((1, 32, 32), bool), [1.5], top_k=0.05)
    with pytest.raises(DataError, match="one \\(H, W\\) mask per image"):
        score_masks(maps_of(np.ones((32, 32))), np.stack([square(), square()]), np.zeros((2, 32, 32), bool), [0.7], top_k=0.05)
    maps = maps_of(np.ones((32, 32)))
    maps.extra["bad"] = np.ones((1, 16, 16))
    with pytest.raises(DataError, match="bad"):
        score_masks(maps, square()[None], np.zeros((1, 32, 32), bool), [0.7], top_k=0.05)


# ----------------------------------------------------------------------------------------- per detection
def test_each_detection_is_scored_on_its_own_not_the_union():
    """Two blobs, one on the box and one far from it: per detection one true positive and one false positive; on the
    union the IoBB would be about one half."""
    box = square(r0=4, r1=10, c0=4, c1=10)
    m = np.zeros((32, 32))
    m[5:9, 5:9] = 1.0     # 16 px inside the box
    m[22:26, 22:26] = 1.0  # 16 px far away
    scores = score_case(METHODS["threshold"], m, 0.5, Geometry(1.5, 0.0, 0.05), box)
    assert scores["detections"] == 2 and scores["true_positives"] == 1
    assert scores["accuracy_iobb_0.9"] == 1.0 and scores["afp_iobb_0.9"] == 1.0  # the inner blob: IoBB = 1
    assert scores["pixel_precision"] == pytest.approx(0.5) and scores["pixel_recall"] == pytest.approx(16 / 36)
    assert scores["accuracy_iou_0.4"] == 1.0 and scores["accuracy_iou_0.5"] == 0.0  # inner blob: IoU = 16/36
    assert scores["afp_iou_0.5"] == 2.0
    one_pixel = np.zeros((32, 32))
    one_pixel[6, 6] = 1.0  # a one-pixel detection inside the box: IoBB = 1, IoU = 1/36 (T(IoU) guards against it)
    tiny = score_case(METHODS["threshold"], one_pixel, 0.5, Geometry(1.5, 0.0, 0.05), box)
    assert tiny["accuracy_iobb_0.9"] == 1.0 and tiny["accuracy_iou_0.1"] == 0.0 and tiny["region_hit"] == 1.0


def test_box_scores_per_finding_and_overall_with_false_positives():
    lesion = square()
    boxes = pd.DataFrame([{"finding": "Nodule", "x": 8, "y": 8, "w": 8, "h": 8, "image_index": 0},
                          {"finding": "Mass", "x": 20, "y": 20, "w": 6, "h": 6, "image_index": 0}])
    table = score_boxes(maps_of(lesion * 1.0, lesion * 1.0), boxes, 0.7)
    by = table.set_index("finding")
    assert by.loc["Nodule", "region_hit_mean"] == 1.0 and by.loc["Mass", "region_hit_mean"] == 0.0
    assert by.loc["Nodule", "afp_iobb_0.1"] == 0.0 and by.loc["Mass", "afp_iobb_0.1"] == 1.0  # its circle misses the Mass box
    overall = by.loc["all findings"]
    assert overall["boxes"] == 2 and overall["images"] == 1 and overall["accuracy_iobb_0.1"] == 0.5
    assert overall["pointing_game_mean"] == 0.5
    with pytest.raises(DataError, match="1 boxes for 2"):
        score_boxes(maps_of(lesion * 1.0, lesion * 1.0), boxes.head(1), 0.7)


def test_every_method_on_boxes_and_a_threshold_tuned_by_cross_fitting_over_images():
    # four boxes, each with a bright core (1.0) inside a dim halo (0.55) that spills over the box: a threshold of
    # 0.5 keeps the halo too (IoU < 1), 0.9 only the core, which is the box (IoU 1)
    n, maps, rows = 32, [], []
    for k in range(4):
        m = np.zeros((n, n))
        r0 = 4 + 6 * k
        m[max(r0 - 2, 0):r0 + 6, 2:14] = 0.55
        m[r0:r0 + 4, 4:12] = 1.0
        maps.append(m)
        rows.append({"finding": "Nodule", "x": 4, "y": r0, "w": 8, "h": 4, "image_index": k})
    boxes = pd.DataFrame(rows)
    table, cases = score_box_methods(maps_of(*maps), boxes, [0.5, 0.9], top_k=0.05)
    area = [m for m in METHODS.values() if m.kind != "point" and m.reads_map]
    per_source = sum(2 if m.swept else 1 for m in area) + 1  # + the tuned row
    assert len(table) == 2 * per_source + 1 and (table["boxes"] == 4).all()  # + the whole image
    assert pick(table, "integrated gradients", "threshold only", 0.9)["iou_mean"] == pytest.approx(1.0)
    assert pick(table, "integrated gradients", "threshold only", 0.5)["iou_mean"] < 0.5
    tuned = pick(table, "integrated gradients", "threshold only, tuned (2-fold)")
    assert tuned["iou_mean"] == pytest.approx(1.0) and tuned["note"].endswith("0.9 / 0.9")
    otsu = pick(table, "integrated gradients", "Otsu threshold")  # Otsu separates the background from both levels
    assert otsu["iou_mean"] == pytest.approx(pick(table, "integrated gradients", "threshold only", 0.5)["iou_mean"])
    assert otsu["accuracy_iobb_0.1"] == 1.0
    whole = pick(table, WHOLE_IMAGE, "whole image (one detection)")
    assert whole["iou_mean"] == pytest.approx(32 / 1024) and whole["accuracy_iobb_0.1"] == 0.0 and whole["afp_iobb_0.1"] == 1.0
    text = boxes_markdown(score_boxes(maps_of(*maps), boxes, 0.7).assign(ground_truth="hand-made"), table.assign(ground_truth="hand-made"),
                          synthetic=False, rule="midpoint", steps=256, models="m", sight_sensitivity=0.9)
    assert "### Every map and method on the same 4 boxes (hand-made)" in text and "0.9 / 0.9" in text
    assert "sight-sensitivity trade-off" in text
    with pytest.raises(DataError, match="1 boxes for 4"):
        score_box_methods(maps_of(*maps), boxes.head(1), [0.5], top_k=0.05)
    one, _ = score_box_methods(maps_of(maps[0]), boxes.head(1), [0.5, 0.9], top_k=0.05)  # no other image to tune on
    assert not one["method"].str.contains("tuned").any()
    same_image, _ = score_box_methods(maps_of(*maps), boxes.assign(image_index=0), [0.5, 0.9], top_k=0.05)
    assert not same_image["method"].str.contains("tuned").any()  # four boxes of one image: no other half of images
    with pytest.raises(ParameterError, match="distinct"):
        score_box_methods(maps_of(*maps), boxes, [0.5, 0.5], top_k=0.05)


def test_the_grouped_bootstrap_resamples_images_and_equals_the_plain_one_with_one_value_per_image():
    v = np.array([1.0, 0.0, 1.0, 1.0, 0.0, 0.0, 1.0])
    assert bootstrap_ci(v, seed=3) == bootstrap_ci(v, seed=3, groups=np.arange(len(v)))
    # two images, (1, 1, 1, 1) and (0): a quarter of the resamples draw only the second (pooled mean 0), so the
    # interval reaches 0; resampling the five boxes one by one almost never draws five zeros
    values, images = np.array([1.0, 1.0, 1.0, 1.0, 0.0]), ["a", "a", "a", "a", "b"]
    assert bootstrap_ci(values, groups=images, n=1000, seed=0) == (0.0, 1.0)
    assert bootstrap_ci(values, n=1000, seed=0)[0] >= 0.4
    with pytest.raises(ParameterError, match="np.mean"):
        bootstrap_ci(v, stat=np.median, groups=np.arange(len(v)))
    with pytest.raises(ParameterError, match="one group label per value"):
        bootstrap_ci(v, groups=[0, 1])


def test_mask_boxes_are_the_bounding_boxes_of_the_lesion_bits():
    masks = np.zeros((2, 32, 32), np.uint16)
    masks[1, 4:10, 6:9] |= 1 << 1
    frame = mask_boxes(masks, ["cardiomegaly", "nodule"], [0, 1, 1], ["nodule", "nodule", "cardiomegaly"])
    assert frame.to_dict("records") == [{"image_index": 1, "finding": "nodule", "x": 6.0, "y": 4.0, "w": 3.0, "h": 6.0}]


# ----------------------------------------------------------------------------------------- the registry
def test_every_registered_method_is_scored_once_per_sight_sensitivity_it_uses():
    """Each key gives one row per map: at every sight sensitivity of the sweep if it uses one, else once; the whole
    image (which reads no map) once overall; the box scorer takes every method with an area and adds the tuned threshold."""
    lesion, sweep = square(), [0.5, 0.7, 0.9]
    rng = np.random.default_rng(1)
    maps = maps_of(*(lesion + rng.uniform(0, 0.5, lesion.shape) for _ in range(3)))
    labels = {m.label(Geometry(2.0, 1.0, 0.05)): key for key, m in METHODS.items()}
    assert len(labels) == len(METHODS) == 7
    reading = {key: m for key, m in METHODS.items() if m.reads_map}
    table, _ = score_masks(maps, np.stack([lesion] * 3), np.zeros((3, 32, 32), bool), sweep, top_k=0.05)
    for source, rows in table.groupby("attribution"):
        counts = rows["method"].map(labels).value_counts().to_dict()
        expected = {"whole_image": 1} if source == WHOLE_IMAGE else {key: len(sweep) if m.swept else 1 for key, m in reading.items()}
        assert counts == expected, source
        assert rows.loc[rows["method"].map(labels).map(lambda k: not METHODS[k].swept), "sight_sensitivity"].isna().all()
    boxes = pd.DataFrame([{"finding": "Nodule", "x": 8, "y": 8, "w": 8, "h": 8, "image_index": i} for i in range(3)])
    methods, _ = score_box_methods(maps, boxes, sweep, top_k=0.05)
    for source, rows in methods[methods["attribution"] != WHOLE_IMAGE].groupby("attribution"):
        keys = rows["method"].map(lambda name: labels.get(name, "tuned")).value_counts().to_dict()
        assert keys == {**{key: len(sweep) if m.swept else 1 for key, m in reading.items() if m.kind != "point"}, "tuned": 1}, source
    only, _ = score_masks(maps, np.stack([lesion] * 3), np.zeros((3, 32, 32), bool), sweep, top_k=0.05, keys=["otsu", "threshold"])
    assert set(only["method"]) == {"Otsu threshold", "threshold only", "whole image (one detection)"}
    assert len(only) == 2 * (1 + len(sweep)) + 1


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


# ----------------------------------------------------------------------------------------- baselines
def test_the_random_maps_pointing_game_is_the_lesion_area_fraction_and_the_centre_prior_points_at_the_centre():
    n = 4000
    lesion = square(r0=0, r1=8, c0=0, c1=16)  # 128 of 1024 pixels: chance 0.125
    images = np.random.default_rng(5).random((n, 32, 32))
    base = baseline_maps(images[..., None], seed=7)
    hits = np.mean([lesion.ravel()[np.argmax(m)] for m in base["random map (chance)"]])
    assert hits == pytest.approx(0.125, abs=0.02)
    centre = centre_maps((1, 31, 31))[0]
    assert np.unravel_index(np.argmax(centre), centre.shape) == (15, 15)
    np.testing.assert_array_equal(base["image intensity"], images)


def test_sight_sensitivity_tradeoff_reads_both_ends_of_the_sweep():
    rows = []
    for source, fp, acc, prec in (("integrated gradients", (3.0, 1.0), (0.8, 0.5), (0.2, 0.4)), ("random map (chance)", (5.0, 2.0), (0.5, 0.2), (0.1, 0.1))):
        for k, s in enumerate((0.1, 0.9)):
            rows.append({"attribution": source, "method_key": "clusters_circles", "sight_sensitivity": s,
                         "afp_iobb_0.1": fp[k], "accuracy_iobb_0.1": acc[k], "precision": prec[k]})
    out = sight_sensitivity_tradeoff(pd.DataFrame(rows))
    assert out["measured"] and out["fewer_false_positives"] and out["lower_recall"] and out["higher_precision"]
    assert out["false_positives_per_case"] == [3.0, 1.0] and out["chance"]["higher_precision"] is False
    assert sight_sensitivity_tradeoff(pd.DataFrame(rows[:1]))["measured"] is False


def test_smoothgrad_averages_the_gradient_over_noisy_copies_in_one_call():
    x = np.random.default_rng(0).random((3, 8, 8, 1)).astype(np.float32)
    calls = []

    def identity(batch):
        calls.append(len(batch))
        return batch

    np.testing.assert_allclose(smoothgrad(identity, x, samples=4, noise=0.0), x, rtol=1e-6)
    assert calls == [12]
    mean = smoothgrad(identity, x, samples=400, noise=0.2, seed=1)  # E[x + noise] = x
    assert np.abs(mean - x).max() < 0.08 and np.abs(mean - x).max() > 0
    with pytest.raises(ParameterError, match="samples"):
        smoothgrad(identity, x, samples=0)


def test_cascading_randomisation_goes_from_the_output_down_and_keeps_each_tensors_values():
    import keras

    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(3, name="conv2_dense"), keras.layers.Dense(2, name="conv5_dense"),
                              keras.layers.Dense(1, name="head")])
    stages = cascade(model, [("head", lambda n: n == "head"), ("block 5", lambda n: n.startswith("conv5")), ("all", lambda n: True)])
    assert [set(s.layers) for s in stages] == [{"head"}, {"conv5_dense", "head"}, {"conv2_dense", "conv5_dense", "head"}]
    before = [w.copy() for w in model.get_weights()]
    randomise(model, ["conv5_dense"], seed=0)
    after = model.get_weights()
    np.testing.assert_array_equal(after[0], before[0])  # conv2_dense untouched
    assert not np.array_equal(after[2], before[2])
    np.testing.assert_array_equal(np.sort(after[2].ravel()), np.sort(before[2].ravel()))  # same values, new places


def test_the_sanity_check_decorrelates_a_learnt_map_and_restores_the_model():
    """A tiny conv model named like DenseNet's blocks: randomising it changes IG, and its weights come back."""
    import keras

    from replication.experiments.localisation import sanity_study
    from replication.params import profile_params
    from conftest import REPO

    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8, 8, 1)), keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv3_conv"),
                              keras.layers.Conv2D(4, 3, padding="same", activation="relu", name="conv5_conv"),
                              keras.layers.GlobalAveragePooling2D(name="pool"), keras.layers.Dense(1, activation="sigmoid", name="abnormal")])
    images = np.random.default_rng(0).random((3, 8, 8, 1)).astype(np.float32)
    lesions = np.zeros((3, 8, 8), bool)
    lesions[:, 2:5, 2:5] = True
    before = [w.copy() for w in model.get_weights()]
    params = profile_params("default", REPO).localisation
    table = sanity_study(model, images, lesions, params, seed=0)
    assert list(table["model"])[0] == "trained" and table["spearman_mean"].iloc[0] == pytest.approx(1.0)
    assert list(table["layers_randomised"]) == [0, 1, 2, 2, 3, 3]  # head, block 4, (no block 3), block 2, the rest
    assert table["spearman_mean"].iloc[-1] < 0.9
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)


def test_rank_similarity_is_one_for_the_same_map_and_undefined_for_a_constant_one():
    a = np.random.default_rng(0).normal(size=(2, 6, 6))
    rho = rank_similarity(a, -a)  # |a| and |-a| rank alike
    np.testing.assert_allclose(rho, 1.0)
    out = rank_similarity(a, np.stack([a[0], np.ones((6, 6))]))
    assert out[0] == pytest.approx(1.0) and np.isnan(out[1])
