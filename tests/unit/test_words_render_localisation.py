"""Word scores, the rendered figures, and the localisation metrics on hand-made masks and boxes."""

from __future__ import annotations

import re

import numpy as np
import pytest
from PIL import Image

from replication.errors import ParameterError
from replication.explain import (
    Region,
    cluster_regions,
    overlay_regions,
    sight_sensitivity_panel,
    word_heatmap_html,
    word_heatmap_png,
    word_scores,
)
from replication.explain.localisation import (
    accuracy_at,
    bootstrap_ci,
    box_mask,
    circles_mask,
    connected_component_regions,
    iobb,
    iou,
    otsu_mask,
    otsu_threshold,
    pointing_game,
    region_hit,
    scale_box,
    signal_fraction_on,
    top_k_mask,
)

VOCAB = {2: "heart", 3: "size", 4: "normal", 5: "effusion", 1: "<oov>"}


# --------------------------------------------------------------------------------------------- words
def test_word_scores_square_sum_normalise_and_skip_padding():
    ids = np.array([2, 3, 5, 0, 0])
    g = np.array([[1.0, 0.0, 0.0], [0.0, 2.0, 0.0], [1.0, 1.0, 1.0], [9.0, 9.0, 9.0], [5.0, 0.0, 0.0]])
    out = word_scores(g, ids, VOCAB)
    assert out.words == ["heart", "size", "effusion"]
    assert np.allclose(out.scores, np.array([1.0, 4.0, 3.0]) / 8.0) and abs(out.scores.sum() - 1) < 1e-12
    assert out.positions.tolist() == [0, 1, 2] and out.note == ""
    assert out.top(1) == [("size", 0.5)]
    signed = word_scores(-g, ids, VOCAB)  # squared: the sign does not matter
    assert np.allclose(signed.scores, out.scores)


def test_word_scores_oov_and_other_vocabularies():
    ids = np.array([[4, 99, 1, 0]])  # a batch dim of 1 is accepted
    g = np.ones((1, 4, 2))
    out = word_scores(g, ids, VOCAB)
    assert out.words == ["normal", "<oov>", "<oov>"] and np.allclose(out.scores, 1 / 3)
    as_list = word_scores(g, ids, ["", "<oov>", "heart", "size", "normal"], oov_token="[unk]")
    assert as_list.words == ["normal", "[unk]", "<oov>"]

    class Vocabulary:  # the project's replication.data.text.Vocabulary: .word(i), IndexError past the end
        words = ["heart", "size", "normal"]

        def word(self, i):
            return "" if i == 0 else "<oov>" if i == 1 else self.words[i - 2]

    assert word_scores(g, ids, Vocabulary()).words == ["normal", "<oov>", "<oov>"]


def test_word_scores_all_padding_and_bad_shapes():
    out = word_scores(np.ones((4, 3)), np.zeros(4, dtype=int), VOCAB)
    assert out.words == [] and out.scores.shape == (0,) and "padding" in out.note
    zero = word_scores(np.zeros((3, 2)), np.array([2, 3, 0]), VOCAB)
    assert np.allclose(zero.scores, 0.5) and "zero" in zero.note
    with pytest.raises(ParameterError) as err:
        word_scores(np.ones((3, 2)), np.array([2, 3, 4, 5]), VOCAB)
    assert err.value.name == "embedding_scores"
    with pytest.raises(ParameterError) as err:
        word_scores(np.full((2, 2), np.nan), np.array([2, 3]), VOCAB)
    assert err.value.name == "embedding_scores"


def test_top_word_hits_against_chance_and_the_finding_keywords():
    from replication.data.synthetic_reports import FINDING_KEYWORDS
    from replication.explain.words import WordScores, top_word_hits

    words = WordScores(["heart", "enlarged", "cardiomegaly", "lungs", "clear"], np.array([0.1, 0.4, 0.3, 0.15, 0.05]))
    cardiac = re.compile(FINDING_KEYWORDS["cardiomegaly"])
    hits = top_word_hits(words, lambda w: bool(cardiac.search(w)), k=3)
    # top 3: enlarged, cardiomegaly, lungs -> 2 of 3 finding words; chance 2 of the 5 words; the best word is one
    assert hits == {"words": 5, "targets": 2, "top_k_share": pytest.approx(2 / 3), "chance_share": 0.4, "top_1": 1.0}
    assert top_word_hits(words, lambda w: bool(cardiac.search(w)), k=50)["top_k_share"] == pytest.approx(0.4)  # k past the end
    reversed_scores = WordScores(words.words, 1 - words.scores)
    assert top_word_hits(reversed_scores, lambda w: bool(cardiac.search(w)), k=2)["top_k_share"] == 0.0
    empty = top_word_hits(WordScores([], np.zeros(0)), lambda w: True)
    assert empty["words"] == 0 and np.isnan(empty["top_k_share"])
    with pytest.raises(ParameterError):
        top_word_hits(words, lambda w: True, k=0)
    # the keywords find the stated words of each finding and nothing in a normal report's words
    assert re.search(FINDING_KEYWORDS["mass"], "mass") and not re.search(FINDING_KEYWORDS["mass"], "massive")
    normal = ["heart", "normal", "size", "mediastinum", "unremarkable", "lungs", "clear", "acute", "bony", "abnormality"]
    assert not any(re.search(p, w) for p in FINDING_KEYWORDS.values() for w in normal)


def test_word_summary_pairs_share_and_chance_per_report():
    import pandas as pd

    from replication.experiments.localisation import word_summary

    rows = pd.DataFrame({"model": ["text CNN"] * 6 + ["multimodal"] * 6,
                         "top_k_share": [0.6, 0.8, 0.4, 0.6, 1.0, 0.8] + [0.2] * 6,
                         "chance_share": [0.2, 0.3, 0.2, 0.25, 0.3, 0.2] + [0.2] * 6,
                         "top_1": [1, 1, 0, 1, 1, 1] + [0] * 6})
    out = word_summary(rows, seed=0)
    text = out["text CNN"]
    assert text["reports"] == 6 and text["top_k_share"] == pytest.approx(0.7) and text["chance_share"] == pytest.approx(0.2417, abs=1e-4)
    assert text["difference"] == pytest.approx(0.7 - 0.241667, abs=1e-5) and text["top_1"] == pytest.approx(5 / 6)
    assert text["wilcoxon_p"] == pytest.approx(0.03125)  # 6 positive differences: the exact two-sided p is 2 / 2**6
    assert text["ci_low"] <= text["top_k_share"] <= text["ci_high"]
    assert np.isnan(out["multimodal"]["wilcoxon_p"]) and out["multimodal"]["difference"] == 0  # no difference: no test


# --------------------------------------------------------------------------------------------- render
def xray_and_map(side=64):
    yy, xx = np.mgrid[:side, :side]
    image = 0.5 + 0.3 * np.sin(xx / 7.0) * np.cos(yy / 9.0)
    attribution = np.exp(-((yy - 20) ** 2 + (xx - 40) ** 2) / 30.0) + 0.8 * np.exp(-((yy - 45) ** 2 + (xx - 15) ** 2) / 20.0)
    return image, np.stack([attribution, -0.5 * attribution, 0 * attribution], axis=-1)


def test_overlay_and_panel_are_readable_pngs(tmp_path):
    image, attribution = xray_and_map()
    regions = cluster_regions(attribution)
    assert len(regions) == 2
    overlay_regions(image, regions, tmp_path / "out" / "overlay.png", title="case 1")
    sight_sensitivity_panel(image, attribution, tmp_path / "panel.png")
    sight_sensitivity_panel(image[..., None], np.zeros((64, 64)), tmp_path / "empty_panel.png", thresholds=(0.7,))
    for name in ("out/overlay.png", "panel.png", "empty_panel.png"):
        with Image.open(tmp_path / name) as im:
            im.load()
            assert im.size[0] > 100 and im.size[1] > 100
    with Image.open(tmp_path / "panel.png") as wide:
        assert wide.size[0] > 3 * wide.size[1]  # five panels side by side
    assert not list(tmp_path.rglob("*.tmp"))  # atomic writes leave no temporaries
    with pytest.raises(ParameterError):
        sight_sensitivity_panel(image, np.zeros((10, 10)), tmp_path / "bad.png")


def test_word_heatmaps_html_self_contained_and_png(tmp_path):
    words, scores = ["heart", "size", "normal", "<oov>", "effusion"], [0.1, 0.2, 0.05, 0.05, 0.6]
    word_heatmap_html(words, scores, tmp_path / "report.html", title="report 7 <abnormal>")
    text = (tmp_path / "report.html").read_text(encoding="utf-8")
    for w in ("heart", "size", "normal", "effusion"):
        assert f'"{w}"' in text
    assert not re.search(r"<script[^>]*\bsrc\s*=", text)  # no external script: works offline
    assert "plotly" in text.lower() and len(text) > 1_000_000  # plotly.js itself is embedded
    word_heatmap_png(words, scores, tmp_path / "report.png", title="report 7")
    word_heatmap_png([], [], tmp_path / "empty.png")
    word_heatmap_html([], [], tmp_path / "empty.html")
    for name in ("report.png", "empty.png"):
        with Image.open(tmp_path / name) as im:
            im.load()
            assert im.format == "PNG"
    with pytest.raises(ParameterError):
        word_heatmap_png(words, scores[:2], tmp_path / "bad.png")


# --------------------------------------------------------------------------------------------- localisation
def test_iou_iobb_and_boxes():
    a = np.zeros((10, 10), bool)
    a[2:6, 2:6] = True  # 16
    b = np.zeros((10, 10), bool)
    b[4:8, 4:8] = True  # 16, overlap 4
    assert iou(a, b) == pytest.approx(4 / 28) and iou(a, a) == 1.0 and iou(~a & a, ~a & a) == 0.0
    box = (4, 4, 4, 4)  # x, y, w, h -> columns 4..7, rows 4..7
    assert np.array_equal(box_mask(box, (10, 10)), b)
    assert np.array_equal(box_mask((2.0, 3.0, 1.0, 2.0), (6, 6)).nonzero(), (np.array([3, 4]), np.array([2, 2])))
    assert iobb(a, box) == pytest.approx(4 / 16)  # over the detected area, not the box's
    small = np.zeros((10, 10), bool)
    small[5, 5] = True
    assert iobb(small, box) == 1.0 and iou(small, b) == pytest.approx(1 / 16)
    assert iobb(np.zeros((10, 10), bool), box) == 0.0
    diagonal = np.zeros((10, 10), bool)
    diagonal[[0, 9], [0, 9]] = True
    assert iobb(diagonal, box, detected_as_box=True) == pytest.approx(16 / 100)
    assert iobb(a, b) == pytest.approx(4 / 16)  # a ground-truth mask works too
    assert accuracy_at([0.1, 0.25, 0.5, 0.8], 0.25) == 0.5  # hits are strictly above T
    assert scale_box((512, 256, 100, 50), (1024, 1024), (224, 224)) == pytest.approx((112, 56, 21.875, 10.9375))
    with pytest.raises(ParameterError) as err:
        box_mask((0, 0, -1, 3), (4, 4))
    assert err.value.name == "box"


def test_pointing_game_and_region_hit():
    m = np.zeros((20, 20))
    m[15, 3] = 5.0
    m[2, 2] = -7.0  # hottest by absolute value
    mask = np.zeros((20, 20), bool)
    mask[0:5, 0:5] = True
    assert pointing_game(m, mask) is True
    assert pointing_game(m, mask, channel_reduce="sum") is False  # by signed value the hottest is (15, 3)
    assert pointing_game(np.ones((20, 20)), mask) is False  # a constant map points nowhere
    regions = [Region((16.0, 4.0), 3.0, 5, 2.0, 1.0, np.zeros((0, 2), int)),
               Region((2.2, 1.8), 2.0, 9, 4.0, 1.0, np.zeros((0, 2), int))]
    assert region_hit(regions, mask) is True  # the larger mass wins whatever the order
    assert region_hit(regions[:1], mask) is False and region_hit([], mask) is False
    disc = circles_mask(regions[1:], (20, 20))
    assert disc[2, 2] and disc[4, 2] and not disc[5, 2] and disc.sum() == 13


def test_signal_fraction_and_bootstrap():
    signal = np.zeros((8, 8), bool)
    signal[0, :4] = True
    artefact = np.zeros((8, 8), bool)
    artefact[0, 3:] = True
    assert signal_fraction_on(signal, artefact) == 0.25
    assert np.isnan(signal_fraction_on(np.zeros((8, 8), bool), artefact))
    values = np.r_[np.ones(70), np.zeros(30)]
    low, high = bootstrap_ci(values, n=2000, seed=1)
    assert low < 0.7 < high and 0.58 < low and high < 0.8
    assert bootstrap_ci(values, n=2000, seed=1) == (low, high)
    assert bootstrap_ci(values, stat=lambda v: float(np.median(v)), n=200) == (1.0, 1.0)
    assert bootstrap_ci([3.0]) == (3.0, 3.0)
    with pytest.raises(ParameterError):
        bootstrap_ci([])


def test_baselines_top_k_otsu_connected_components():
    rng = np.random.default_rng(0)
    bimodal = np.where(rng.random((64, 64)) < 0.3, rng.normal(0.8, 0.05, (64, 64)), rng.normal(0.2, 0.05, (64, 64)))
    bimodal = np.clip(bimodal, 0, 1)
    t = otsu_threshold(bimodal)
    assert 0.35 < t < 0.65
    mask = otsu_mask(bimodal)
    normalised = (bimodal - bimodal.min()) / (bimodal.max() - bimodal.min())
    assert np.array_equal(mask, normalised > otsu_threshold(normalised))
    assert abs(mask.mean() - 0.3) < 0.03
    assert not otsu_mask(np.zeros((5, 5))).any()
    ramp = np.arange(100, dtype=float).reshape(10, 10)
    top = top_k_mask(ramp, 0.05)
    assert top.sum() == 5 and top[9, 5:].all()
    assert not top_k_mask(np.ones((4, 4)), 0.5).any()
    with pytest.raises(ParameterError) as err:
        top_k_mask(ramp, 1.5)
    assert err.value.name == "fraction"
    m = np.zeros((12, 12), bool)
    m[1:3, 1:3] = True  # 4 px
    m[3, 3] = True  # diagonal neighbour: same 8-connected component
    m[8:10, 8:11] = True  # 6 px
    m[6, 10] = True  # singleton: dropped
    regions = connected_component_regions(m)
    assert [r.pixels for r in regions] == [6, 5]
    assert regions[0].center == (8.5, 9.0)
    weights = np.where(m, 0.5, 0.0)
    weights[9, 10] = 1.0
    weighted = connected_component_regions(m, weights, margin=1.0)
    assert weighted[0].mass == pytest.approx(5 * 0.5 + 1.0) and weighted[0].peak == 1.0
    assert weighted[0].radius == pytest.approx(np.hypot(0.5, 1.0) + 1.0)
