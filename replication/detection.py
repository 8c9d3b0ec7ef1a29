"""Measured localisation: the paper's detection (§3) scored against ground truth, over a sight-sensitivity sweep.

The paper shows circles on a few X-rays and describes the threshold's trade-off in words. Here every image
with ground truth is attributed (integrated gradients of the model's output for the finding) and scored:

- synthetic lesion masks (the IU-like target, its fine-tuned image model): pointing game (hottest pixel in the
  lesion), region hit (strongest circle's centre in the lesion), IoU of the circles with the lesion, and the
  fraction of signal pixels on burned-in markers and borders (structured noise the model may have learnt);
- boxes (real ChestX-ray14 `BBox_List_2017`, or the bounding boxes of the synthetic ChestX-ray14-like
  masks), attributing the box's finding unit of the pretraining model: hit rate, IoU and Wang et al.'s
  accuracy at T(IoBB) per finding.

Compared methods: the paper's threshold + single-linkage circles on IG; the same on plain gradients;
the thresholded IG pixels without clustering; connected components of the thresholded map; top-k% pixels;
Otsu's threshold (CheXlocalize's practice). Intervals are percentile bootstraps over images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd

from replication.errors import DataError, ParameterError
from replication.explain import (
    DEFAULT_RULE,
    DEFAULT_STEPS,
    bootstrap_ci,
    box_mask,
    circles_mask,
    cluster_regions,
    connected_component_regions,
    default_cluster_distance,
    default_margin,
    gradients_batch,
    integrated_gradients_batch,
    iobb,
    iou,
    otsu_mask,
    pointing_game,
    region_hit,
    reduce_channels,
    sight_sensitivity_mask,
    signal_fraction_on,
    top_k_mask,
)

SWEEP = (0.5, 0.6, 0.7, 0.8, 0.9)
IOBB_THRESHOLDS = (0.1, 0.25, 0.5)


@dataclass
class Maps:
    """Attribution maps (n, H, W) of one model output per image, with IG's completeness check."""

    integrated_gradients: np.ndarray
    gradients: np.ndarray
    relative_delta: np.ndarray
    prediction: np.ndarray


def attribution_maps(model: Any, images: np.ndarray, output_index: Sequence[int] | int = 0, *, steps: int = DEFAULT_STEPS,
                     rule: str = DEFAULT_RULE, batch_size: int = 64) -> Maps:
    """IG (zeros baseline) and plain gradients of `model`'s unit `output_index[i]` for each image (n, H, W, 1)."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4 or len(x) == 0:
        raise DataError("images", f"expected a non-empty (n, H, W, 1) array, got shape {x.shape}")
    units = np.broadcast_to(np.asarray(output_index, dtype=int), (len(x),))
    ig, grads, delta, pred = [], [], [], []
    for unit in np.unique(units):
        rows = np.flatnonzero(units == unit)
        results = integrated_gradients_batch(model, x[rows], output_index=int(unit), steps=steps, rule=rule, batch_size=batch_size)
        plain = gradients_batch(model, x[rows], output_index=int(unit), batch_size=batch_size)[0]
        for row, r, g in zip(rows, results, plain):
            ig.append((row, reduce_channels(r.attribution)))
            delta.append((row, r.relative_delta))
            pred.append((row, r.prediction))
            grads.append((row, reduce_channels(g)))
    ordered = lambda pairs: np.stack([v for _, v in sorted(pairs, key=lambda p: p[0])])  # noqa: E731
    return Maps(ordered(ig), ordered(grads), ordered(delta), ordered(pred))


def _summary(values: Sequence[float], seed: int) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    low, high = bootstrap_ci(v, n=1000, seed=seed) if v.size > 1 else (float(v[0]), float(v[0]))
    return {"mean": float(v.mean()), "ci_low": float(low), "ci_high": float(high), "n": int(v.size)}


def _check_sweep(sweep: Sequence[float]) -> list[float]:
    values = [float(s) for s in sweep]
    if not values or any(not 0.0 <= s <= 1.0 for s in values) or len(set(values)) != len(values):
        raise ParameterError("localisation.sight_sensitivities", list(sweep), "a non-empty list of distinct numbers in [0, 1]")
    return values


def detections(attribution_map: np.ndarray, sight_sensitivity: float, cluster_distance: float, margin: float,
               top_k: float, threshold_free: bool = True) -> dict[str, tuple[np.ndarray, list | None]]:
    """Each compared method's detected pixels (and its regions, where it has any) on one map; the methods that
    ignore the sight sensitivity (top-k, Otsu) only with `threshold_free`."""
    shape = attribution_map.shape
    signal = sight_sensitivity_mask(attribution_map, sight_sensitivity)
    paper = cluster_regions(attribution_map, sight_sensitivity, cluster_distance, margin)
    components = connected_component_regions(signal, attribution_map, margin=margin)
    out = {
        "clusters + circles (paper)": (circles_mask(paper, shape), paper),
        "threshold only": (signal, None),
        "connected components + circles": (circles_mask(components, shape), components),
    }
    if threshold_free:
        out[f"top {top_k:.0%} pixels"] = (top_k_mask(attribution_map, top_k), None)
        out["Otsu threshold"] = (otsu_mask(attribution_map), None)
    return out


THRESHOLD_FREE = ("top", "Otsu")


def _per_method(stack: np.ndarray, truths: Sequence[np.ndarray], pointing: Sequence[bool], sweep: list[float], cut: float,
                pad: float, top_k: float, score: Any) -> dict[tuple[str, float | None], list]:
    """score(i, detected, regions, hit) for every image i, method and sight sensitivity (None for the threshold-free
    methods, run once). Hits: region hit where the method has regions, else the pointing game (`pointing[i]`, the
    hottest pixel in the truth) — a threshold cannot move the hottest pixel."""
    per: dict[tuple[str, float | None], list] = {}
    for s in sweep:
        for i, truth in enumerate(truths):
            for method, (detected, regions) in detections(stack[i], s, cut, pad, top_k, threshold_free=s == sweep[0]).items():
                hit = region_hit(regions, truth) if regions is not None else bool(pointing[i]) and detected.any()
                per.setdefault((method, None if method.startswith(THRESHOLD_FREE) else s), []).append(score(i, detected, regions, hit))
    return per


def score_masks(maps: Maps, truths: np.ndarray, artefacts: np.ndarray, sweep: Sequence[float] = SWEEP, *,
                cluster_distance: float | None = None, margin: float | None = None, top_k: float = 0.05,
                seed: int = 0) -> pd.DataFrame:
    """One row per (attribution, method, sight sensitivity): hit rate, IoU with the lesion, signal on artefacts.

    `truths`/`artefacts`: (n, H, W) bool lesion masks and structured-noise masks. Threshold-free methods
    (top-k, Otsu) get one row, with sight_sensitivity empty (hits: `_per_method`).
    """
    sweep = _check_sweep(sweep)
    truths, artefacts = np.asarray(truths, bool), np.asarray(artefacts, bool)
    n, shape = len(truths), truths.shape[1:]
    if maps.integrated_gradients.shape != truths.shape or artefacts.shape != truths.shape:
        raise DataError("masks", f"maps {maps.integrated_gradients.shape}, lesions {truths.shape} and artefacts "
                                 f"{artefacts.shape} must have one (H, W) mask per image")
    cut = default_cluster_distance(shape) if cluster_distance is None else cluster_distance
    pad = default_margin(shape) if margin is None else margin
    rows = []
    for source, stack in (("integrated gradients", maps.integrated_gradients), ("gradients", maps.gradients)):
        pointing = [pointing_game(stack[i], truths[i]) for i in range(n)]
        rows.append({"attribution": source, "method": "pointing game (hottest pixel)", "sight_sensitivity": None,
                     **_prefixed("hit", _summary(pointing, seed)), **_prefixed("iou", _summary([], seed)),
                     **_prefixed("signal_on_artefacts", _summary([float(artefacts[i][np.unravel_index(np.argmax(stack[i]), shape)])
                                                                   for i in range(n)], seed)), "regions_per_image": 1.0})
        per = _per_method(stack, truths, pointing, sweep, cut, pad, top_k, lambda i, detected, regions, hit: {
            "hit": hit, "iou": iou(detected, truths[i]), "noise": signal_fraction_on(detected, artefacts[i]),
            "regions": len(regions) if regions is not None else float("nan")})
        for (method, s), scores in per.items():
            acc = pd.DataFrame(scores)
            regions = acc["regions"].to_numpy(dtype=float)
            rows.append({"attribution": source, "method": method, "sight_sensitivity": s, **_prefixed("hit", _summary(acc["hit"], seed)),
                         **_prefixed("iou", _summary(acc["iou"], seed)), **_prefixed("signal_on_artefacts", _summary(acc["noise"], seed)),
                         "regions_per_image": float(np.nanmean(regions)) if np.isfinite(regions).any() else float("nan")})
    return pd.DataFrame(rows)


def _prefixed(prefix: str, values: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}_{k}": v for k, v in values.items()}


def score_boxes(maps: Maps, boxes: pd.DataFrame, sight_sensitivity: float, *, thresholds: Sequence[float] = IOBB_THRESHOLDS,
                cluster_distance: float | None = None, margin: float | None = None, seed: int = 0) -> pd.DataFrame:
    """Per finding (and overall): hit rate, IoU and accuracy at T(IoBB) of the paper's circles around IG signal.

    `boxes`: one row per attributed image, in the order of `maps`, with `finding` and `x, y, w, h` in the
    pixels of the attributed images (`Cohort.boxes` are). IoBB = |circles ∩ box| / |circles| (Wang et al.).
    """
    if len(boxes) != len(maps.integrated_gradients):
        raise DataError("boxes", f"{len(boxes)} boxes for {len(maps.integrated_gradients)} attribution maps")
    shape = maps.integrated_gradients.shape[1:]
    cut = default_cluster_distance(shape) if cluster_distance is None else cluster_distance
    pad = default_margin(shape) if margin is None else margin
    per_image = []
    for i, box in enumerate(boxes.itertuples(index=False)):
        truth = box_mask((box.x, box.y, box.w, box.h), shape)
        regions = cluster_regions(maps.integrated_gradients[i], sight_sensitivity, cut, pad)
        detected = circles_mask(regions, shape)
        per_image.append({"finding": box.finding, "hit": float(region_hit(regions, truth)), "iou": iou(detected, truth),
                          "iobb": iobb(detected, truth), "pointing": float(pointing_game(maps.integrated_gradients[i], truth))})
    frame = pd.DataFrame(per_image)
    rows = []
    for finding, group in [*frame.groupby("finding"), ("all findings", frame)]:
        row = {"finding": finding, "boxes": len(group), **_prefixed("hit", _summary(group["hit"], seed)),
               **_prefixed("iou", _summary(group["iou"], seed)), "pointing_game": float(group["pointing"].mean())}
        for t in thresholds:
            row[f"accuracy_iobb_{t}"] = float(np.mean(group["iobb"].to_numpy() > t))
        rows.append(row)
    return pd.DataFrame(rows)


def score_box_methods(maps: Maps, boxes: pd.DataFrame, sweep: Sequence[float] = SWEEP, *, top_k: float = 0.05,
                      thresholds: Sequence[float] = IOBB_THRESHOLDS, cluster_distance: float | None = None,
                      margin: float | None = None, seed: int = 0) -> pd.DataFrame:
    """All boxes together, one row per (attribution, method, sight sensitivity): hit rate, IoU and accuracy at
    T(IoBB) of every compared method (the masks' comparison, on boxes), plus CheXlocalize's practice: the
    min-max normalised map thresholded at a value tuned for mean IoU — here by 2-fold cross-fitting over the
    boxes (each half scored at the threshold the other half chose), so no box scores its own tuning; with
    fewer than 2 boxes there is no tuned row."""
    sweep = _check_sweep(sweep)
    if len(boxes) != len(maps.integrated_gradients):
        raise DataError("boxes", f"{len(boxes)} boxes for {len(maps.integrated_gradients)} attribution maps")
    shape = maps.integrated_gradients.shape[1:]
    cut = default_cluster_distance(shape) if cluster_distance is None else cluster_distance
    pad = default_margin(shape) if margin is None else margin
    truths = [box_mask((b.x, b.y, b.w, b.h), shape) for b in boxes.itertuples(index=False)]
    fold = np.random.default_rng(seed).permutation(len(truths)) % 2
    rows = []

    def row(source: str, method: str, s: float | None, scores: pd.DataFrame, note: str = "") -> dict[str, Any]:
        out = {"attribution": source, "method": method, "sight_sensitivity": s, "boxes": len(scores),
               **_prefixed("hit", _summary(scores["hit"], seed)), **_prefixed("iou", _summary(scores["iou"], seed))}
        out.update({f"accuracy_iobb_{t}": float(np.mean(scores["iobb"].to_numpy() > t)) for t in thresholds})
        return {**out, "note": note}

    for source, stack in (("integrated gradients", maps.integrated_gradients), ("gradients", maps.gradients)):
        pointing = [pointing_game(stack[i], truths[i]) for i in range(len(truths))]
        per = _per_method(stack, truths, pointing, sweep, cut, pad, top_k, lambda i, detected, regions, hit: {
            "hit": float(hit), "iou": iou(detected, truths[i]), "iobb": iobb(detected, truths[i])})
        for (method, s), scores in per.items():
            rows.append(row(source, method, s, pd.DataFrame(scores)))
        if len(truths) < 2:  # no other half to tune on
            continue
        by_s = {s: pd.DataFrame(per[("threshold only", s)]) for s in sweep}
        chosen = [max(sweep, key=lambda s: by_s[s]["iou"][fold != k].mean()) for k in (0, 1)]
        tuned = pd.concat([by_s[chosen[k]][fold == k] for k in (0, 1)])
        rows.append(row(source, "threshold only, tuned (2-fold)", None, tuned,
                        f"sight sensitivity chosen for mean IoU on the other half: {chosen[0]:g} / {chosen[1]:g}"))
    return pd.DataFrame(rows)


def mask_boxes(masks: np.ndarray, mask_names: Sequence[str], image_indices: Sequence[int], findings: Sequence[str]) -> pd.DataFrame:
    """Bounding boxes (x, y, w, h) of the synthetic lesion masks: the box ground truth a synthetic cohort has."""
    rows = []
    for index, finding in zip(image_indices, findings):
        m = (masks[index] >> mask_names.index(finding)) & 1 == 1
        if not m.any():
            continue
        r, c = np.flatnonzero(m.any(axis=1)), np.flatnonzero(m.any(axis=0))
        rows.append({"image_index": int(index), "finding": finding, "x": float(c[0]), "y": float(r[0]),
                     "w": float(c[-1] - c[0] + 1), "h": float(r[-1] - r[0] + 1)})
    return pd.DataFrame(rows, columns=["image_index", "finding", "x", "y", "w", "h"])


# ----------------------------------------------------------------------------------------- one case
@dataclass
class SavedModels:
    """A curves setting's split-0 models (outputs/models/<setting>): what `replication explain` loads."""

    directory: str
    text: Any
    image: Any
    multimodal: Any
    vocabulary: Any
    config: dict[str, Any]


_LOADED: dict[tuple[str, float], SavedModels] = {}


def load_models(directory: str) -> SavedModels:
    """The three models, the vocabulary and the config the curves stage saved; a DataError names what is missing.

    Loaded once per directory (and modification time) in a process: explaining many cases reuses the models and
    the compiled attribution functions cached on them."""
    import json
    from pathlib import Path

    import keras

    import replication.models.densenet  # noqa: F401  registers the custom layers (GreyToRGB) the saved models use
    from replication.data.text import Vocabulary

    root = Path(directory)
    needed = ["text.keras", "image.keras", "multimodal.keras", "vocabulary.json", "config.json"]
    missing = [n for n in needed if not (root / n).is_file()]
    if missing:
        raise DataError(root, f"missing {', '.join(missing)}: not a models directory of the curves stage "
                              f"(run `dvc repro curves`, or pass --models outputs/models/<setting>)")
    key = (str(root.resolve()), (root / "config.json").stat().st_mtime)
    if key not in _LOADED:
        load = lambda name: keras.saving.load_model(root / name, compile=False)  # noqa: E731
        _LOADED[key] = SavedModels(str(root), load("text.keras"), load("image.keras"), load("multimodal.keras"),
                                   Vocabulary.from_json((root / "vocabulary.json").read_text()), json.loads((root / "config.json").read_text()))
    return _LOADED[key]


def explain_case(models: SavedModels, image: np.ndarray, report: str, *, sight_sensitivity: float = 0.7,
                 steps: int = DEFAULT_STEPS, rule: str = DEFAULT_RULE) -> dict[str, Any]:
    """Predictions of the three models, the image regions (IG + sight sensitivity + single linkage) and the
    report's word scores (gradients at the multimodal's embedding output, squared and summed per word).

    `image`: (H, W) grey pixels 0..255 at the models' size; `report`: the raw report text (cleaned here as in training).
    """
    from replication.data.text import OOV, clean_report
    from replication.explain import attribute_text, integrated_gradients, word_scores
    from replication.explain.words import WordScores

    size = int(models.config["image_size"])
    pixels = np.asarray(image, dtype=np.float32)
    if pixels.shape != (size, size):
        raise DataError("image", f"expected ({size}, {size}) grey pixels (the models' image size), got {pixels.shape}")
    if not np.isfinite(pixels).all():
        raise DataError("image", "pixel values must be finite")
    text_cfg = models.config.get("text", {})
    tokens = clean_report(report, bool(text_cfg.get("keep_negations", False)))
    ids, _ = models.vocabulary.encode([tokens], int(text_cfg.get("sequence_length", 140)))
    x = pixels[None, ..., None]
    predictions = {
        "text": float(models.text.predict(ids, verbose=0)[0, 0]),
        "image": float(models.image.predict(x, verbose=0)[0, 0]),
        "multimodal": float(models.multimodal.predict([ids, x], verbose=0)[0, 0]),
    }
    ig = integrated_gradients(models.image, x[0], steps=steps, rule=rule)
    regions = cluster_regions(ig.attribution, sight_sensitivity)
    known = ids[0][(ids[0] != 0) & (ids[0] != OOV)]
    if len(known) == 0:
        words = WordScores([], np.zeros(0), note="no word of the report is in the model's vocabulary: no text explanation")
    else:
        grads = attribute_text(models.multimodal, ids[0], other_inputs=[x[0]], method="gradients")
        words = word_scores(grads.embedding_scores, ids[0], models.vocabulary)
    return {
        "predictions": predictions,
        "image_attribution": reduce_channels(ig.attribution),
        "completeness": {"relative_delta": ig.relative_delta, "steps": steps, "rule": rule},
        "sight_sensitivity": sight_sensitivity,
        "regions": [{"center_row": r.center[0], "center_col": r.center[1], "radius": r.radius, "pixels": r.pixels,
                     "mass": r.mass, "peak": r.peak} for r in regions],
        "region_objects": regions,
        "words": words,
        "tokens": tokens,
    }


# ----------------------------------------------------------------------------------------- the stage's study
WANG_2017_IOBB_01 = {  # Wang et al. 2017 (ChestX-ray8), Table 4, accuracy at T(IoBB) = 0.1
    "Atelectasis": 0.728, "Cardiomegaly": 0.993, "Effusion": 0.712, "Infiltration": 0.789, "Mass": 0.435,
    "Nodule": 0.165, "Pneumonia": 0.750, "Pneumothorax": 0.459,
}
LOCALISATION_KEYS = {"models", "sight_sensitivities", "sight_sensitivity", "steps", "rule", "images", "top_k",
                     "completeness_steps", "completeness_images"}


@dataclass
class Study:
    """What the localise stage writes: score tables, the completeness table, headline metrics, one worked example."""

    masks: pd.DataFrame
    boxes: pd.DataFrame
    box_methods: pd.DataFrame
    completeness: list[dict[str, Any]]
    metrics: dict[str, Any]
    example: dict[str, Any]

    def draw(self, fig2_png: Any, overlay_png: Any, fig3_png: Any, fig3_html: Any) -> None:
        """Fig. 2 (sight-sensitivity panel), the circles overlay and Fig. 3 (word heatmap, PNG and/or HTML)."""
        from replication.explain import overlay_regions, sight_sensitivity_panel, word_heatmap_html, word_heatmap_png

        e = self.example
        notice = "SYNTHETIC DATA - " if self.metrics.get("synthetic") else ""
        what = f"{e['case_id']}: P(abnormal) image {e['predictions']['image']:.2f}, multimodal {e['predictions']['multimodal']:.2f}"
        if fig2_png is not None:
            sight_sensitivity_panel(e["image"], e["image_attribution"], fig2_png, self.metrics["sight_sensitivities"],
                                    title=f"{notice}Fig. 2 replication: integrated gradients above each sight sensitivity ({what})")
        if overlay_png is not None:
            overlay_regions(e["image"], e["region_objects"], overlay_png, f"{notice}sight sensitivity {e['sight_sensitivity']}")
        words = e["words"]
        title = f"{notice}Fig. 3 replication: word scores of {e['case_id']} (multimodal, gradients at the embedding)"
        if fig3_png is not None and words.words:
            word_heatmap_png(words.words, words.scores, fig3_png, title)
        if fig3_html is not None and words.words:
            word_heatmap_html(words.words, words.scores, fig3_html, title)


def _images(cohort: Any, index: np.ndarray) -> np.ndarray:
    return np.asarray(cohort.images[index], dtype=np.float32)[..., None]


def mask_study(cohort: Any, image_model: Any, cfg: Mapping[str, Any], seed: int) -> tuple[pd.DataFrame, Maps, pd.DataFrame]:
    """The fine-tuned image model's IG on the target's abnormal test images that have lesion masks (split_0)."""
    from replication.data.synthetic import FINDINGS, NOISE

    if cohort.masks is None:
        return pd.DataFrame(), None, pd.DataFrame()
    cases = cohort.cases
    chosen = cases[(cases["split_0"] == "test") & (cases["label"] == 1) & (cases["image_index"] >= 0)]
    index = chosen["image_index"].to_numpy()
    lesions = np.zeros((len(index),) + cohort.images.shape[1:], bool)
    for name in FINDINGS:
        lesions |= cohort.mask(name, index)
    keep = lesions.reshape(len(index), -1).any(axis=1)
    chosen, index, lesions = chosen[keep].head(int(cfg["images"])), index[keep][: int(cfg["images"])], lesions[keep][: int(cfg["images"])]
    if len(index) == 0:
        raise DataError(cohort.name, "no abnormal test image of split_0 has a lesion mask: nothing to score")
    artefacts = np.zeros_like(lesions)
    for name in NOISE:
        artefacts |= cohort.mask(name, index)
    maps = attribution_maps(image_model, _images(cohort, index), 0, steps=int(cfg["steps"]), rule=cfg["rule"])
    table = score_masks(maps, lesions, artefacts, cfg["sight_sensitivities"], top_k=float(cfg["top_k"]), seed=seed)
    return table, maps, chosen


def box_study(cohort: Any, pretrain_dir: str, cfg: Mapping[str, Any], seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The pretraining model's finding unit for each ground-truth box of the test images (split_0): real
    BBox_List_2017 boxes, or the bounding boxes of a synthetic cohort's lesion masks. Returns the paper's
    method per finding (`score_boxes`) and every method on all boxes (`score_box_methods`); empty without boxes."""
    import json
    from pathlib import Path

    from replication.models.densenet import pretraining_model
    from replication.training.checkpoint import load_model_weights

    info = json.loads((Path(pretrain_dir) / "model.json").read_text())
    model = pretraining_model(int(info["image_size"]), info["labels"], info["architecture"])
    load_model_weights(model, Path(pretrain_dir) / "model.weights.h5")
    labels = list(info["labels"])
    test = cohort.cases[cohort.cases["split_0"] == "test"]
    if cohort.boxes is not None and len(cohort.boxes):
        boxes = cohort.boxes.merge(test[["case_id", "image_index"]], on="case_id")
        source = "BBox_List_2017"
    elif cohort.masks is not None:
        pairs = [(int(row.image_index), f) for row in test.itertuples() for f in labels if getattr(row, f"finding_{f}", 0) == 1]
        boxes = mask_boxes(cohort.masks, cohort.mask_names, [p[0] for p in pairs], [p[1] for p in pairs])
        source = "bounding boxes of the synthetic lesion masks"
    else:
        return pd.DataFrame(), pd.DataFrame()
    boxes = boxes[boxes["finding"].isin(labels)].head(int(cfg["images"])).reset_index(drop=True)
    if len(boxes) == 0:
        return pd.DataFrame(), pd.DataFrame()
    maps = attribution_maps(model, _images(cohort, boxes["image_index"].to_numpy()), [labels.index(f) for f in boxes["finding"]],
                            steps=int(cfg["steps"]), rule=cfg["rule"])
    table = score_boxes(maps, boxes, float(cfg["sight_sensitivity"]), seed=seed)
    table["wang_2017_accuracy_iobb_0.1"] = table["finding"].map(WANG_2017_IOBB_01)
    table["ground_truth"] = source
    methods = score_box_methods(maps, boxes, cfg.get("sight_sensitivities", SWEEP), top_k=float(cfg.get("top_k", 0.05)), seed=seed)
    methods["ground_truth"] = source
    return table, methods


def localisation_study(iu: Any, cxr14: Any, models_dir: str, pretrain_dir: str, cfg: Mapping[str, Any], seed: int = 0) -> Study:
    """Everything the localise stage reports (see the module docstring)."""
    from replication.explain import RULES, completeness_table

    unknown = set(cfg) - LOCALISATION_KEYS
    if unknown:
        raise ParameterError(f"localisation.{sorted(unknown)[0]}", cfg[sorted(unknown)[0]], f"one of {sorted(LOCALISATION_KEYS)}")
    sweep = _check_sweep(cfg["sight_sensitivities"])
    models = load_models(models_dir)
    masks, maps, chosen = mask_study(iu, models.image, cfg, seed)
    boxes, box_methods = box_study(cxr14, pretrain_dir, cfg, seed)
    first = chosen.iloc[0] if len(chosen) else iu.cases[iu.cases["image_index"] >= 0].iloc[0]
    image = np.asarray(iu.images[int(first["image_index"])], np.float32)
    some = chosen.head(int(cfg["completeness_images"]))
    rows = completeness_table(models.image, _images(iu, some["image_index"].to_numpy()), cfg["completeness_steps"], RULES,
                              batch_size=128, batched=True) if len(some) else []
    completeness = [{"case_id": some["case_id"].iloc[r.pop("example")], **r} for r in rows]
    example = explain_case(models, image, str(first["text"]), sight_sensitivity=float(cfg["sight_sensitivity"]),
                           steps=int(cfg["steps"]), rule=cfg["rule"])
    example.update({"case_id": str(first["case_id"]), "image": image})
    metrics: dict[str, Any] = {"synthetic": bool(iu.synthetic), "source": {"iu": iu.source, "cxr14": cxr14.source},
                               "models": models_dir, "sight_sensitivities": sweep, "sight_sensitivity": float(cfg["sight_sensitivity"]),
                               "steps": int(cfg["steps"]), "rule": cfg["rule"]}
    if maps is not None:
        s = float(cfg["sight_sensitivity"])
        ig = masks[masks["attribution"] == "integrated gradients"]
        paper = ig[(ig["method"] == "clusters + circles (paper)")]
        at = paper[np.isclose(paper["sight_sensitivity"].astype(float), s)].iloc[0]
        best = paper.loc[paper["iou_mean"].idxmax()]
        pointing = masks[masks["method"] == "pointing game (hottest pixel)"].set_index("attribution")["hit_mean"]
        metrics["masks"] = {
            "images": int(len(maps.relative_delta)),
            "paper_method_at_sight_sensitivity": {"hit_rate": float(at["hit_mean"]), "iou": float(at["iou_mean"]),
                                                  "signal_on_artefacts": float(at["signal_on_artefacts_mean"])},
            "best_sight_sensitivity_by_iou": {"sight_sensitivity": float(best["sight_sensitivity"]), "iou": float(best["iou_mean"])},
            "pointing_game": {k: float(v) for k, v in pointing.items()},
            "ig_relative_delta_median": float(np.median(maps.relative_delta)),
            "ig_relative_delta_p90": float(np.quantile(maps.relative_delta, 0.9)),
            "ig_relative_delta_below_1pct": float(np.mean(maps.relative_delta < 0.01)),
        }
    if len(boxes):
        overall = boxes[boxes["finding"] == "all findings"].iloc[0]
        metrics["boxes"] = {"ground_truth": str(overall["ground_truth"]), "boxes": int(overall["boxes"]),
                            "hit_rate": float(overall["hit_mean"]), "iou": float(overall["iou_mean"]),
                            **{c: float(overall[c]) for c in boxes.columns if c.startswith("accuracy_iobb_")}}
    metrics["example"] = {"case_id": example["case_id"], "predictions": example["predictions"], "regions": example["regions"],
                          "top_words": example["words"].top(5), "words_note": example["words"].note}
    return Study(masks, boxes, box_methods, completeness, metrics, example)


def _fmt(row: Mapping[str, Any], key: str) -> str:
    mean = row.get(f"{key}_mean")
    if mean is None or not np.isfinite(mean):
        return "—"
    return f"{mean:.3f} [{row[f'{key}_ci_low']:.3f}, {row[f'{key}_ci_high']:.3f}]"


def _header(m: Mapping[str, Any]) -> list[str]:
    out = ["> SYNTHETIC DATA: these numbers are not comparable with the paper's or Wang et al.'s.\n"] if m.get("synthetic") else []
    out.append(f"Integrated gradients: {m['rule']}, {m['steps']} steps, zeros baseline; models from `{m['models']}` (split 0). "
               "Intervals: 95% bootstrap over images.\n")
    return out


def _boxes_section(boxes: pd.DataFrame, sight_sensitivity: float) -> list[str]:
    ts = [c for c in boxes.columns if c.startswith("accuracy_iobb_")]
    out = [f"\n### Boxes ({boxes['ground_truth'].iloc[0]}), pretraining model, sight sensitivity {sight_sensitivity}\n\n"
           f"| finding | boxes | hit rate | IoU | pointing game | {' | '.join('acc. T(IoBB)=' + c.rsplit('_', 1)[1] for c in ts)} "
           f"| Wang et al. T(IoBB)=0.1 |\n|---|---|---|---|---|{'---|' * len(ts)}---|"]
    for row in boxes.to_dict("records"):
        wang = row.get("wang_2017_accuracy_iobb_0.1")
        out.append(f"| {row['finding']} | {row['boxes']} | {_fmt(row, 'hit')} | {_fmt(row, 'iou')} | {row['pointing_game']:.3f} | "
                   + " | ".join(f"{row[c]:.3f}" for c in ts) + f" | {'—' if wang is None or not np.isfinite(wang) else f'{wang:.3f}'} |")
    return out


def _box_methods_section(methods: pd.DataFrame) -> list[str]:
    ts = [c for c in methods.columns if c.startswith("accuracy_iobb_")]
    out = [f"\n### Every method on the same {int(methods['boxes'].iloc[0])} boxes ({methods['ground_truth'].iloc[0]})\n\n"
           f"| attribution | method | sight sensitivity | hit rate | IoU | {' | '.join('acc. T(IoBB)=' + c.rsplit('_', 1)[1] for c in ts)} |"
           f"\n|---|---|---|---|---|{'---|' * len(ts)}"]
    for row in methods.to_dict("records"):
        s = row["sight_sensitivity"]
        s = row["note"] if row.get("note") else ("—" if s is None or not np.isfinite(s) else f"{s:.2f}")
        out.append(f"| {row['attribution']} | {row['method']} | {s} | {_fmt(row, 'hit')} | {_fmt(row, 'iou')} | "
                   + " | ".join(f"{row[c]:.3f}" for c in ts) + " |")
    return out


def boxes_markdown(boxes: pd.DataFrame, metrics: Mapping[str, Any], methods: pd.DataFrame | None = None) -> str:
    """`box_study`'s tables on their own (what `replication boxes` writes); `metrics` as the stage's."""
    out = _header(metrics) + _boxes_section(boxes, metrics["sight_sensitivity"])
    return "\n".join(out + (_box_methods_section(methods) if methods is not None and len(methods) else [])) + "\n"


def localisation_markdown(study: Study) -> str:
    """The stage's tables: the sweep on masks, the box scores per finding, the completeness delta."""
    m = study.metrics
    out = _header(m)
    if len(study.masks):
        out.append(f"\n### Lesion masks ({m['masks']['images']} abnormal test images)\n\n"
                   "| attribution | method | sight sensitivity | hit rate | IoU | signal on artefacts | regions/image |\n|---|---|---|---|---|---|---|")
        for row in study.masks.to_dict("records"):
            s = "—" if row["sight_sensitivity"] is None or not np.isfinite(row["sight_sensitivity"]) else f"{row['sight_sensitivity']:.2f}"
            regions = "—" if not np.isfinite(row["regions_per_image"]) else f"{row['regions_per_image']:.1f}"
            out.append(f"| {row['attribution']} | {row['method']} | {s} | {_fmt(row, 'hit')} | {_fmt(row, 'iou')} | "
                       f"{_fmt(row, 'signal_on_artefacts')} | {regions} |")
    if len(study.boxes):
        out += _boxes_section(study.boxes, m["sight_sensitivity"])
    if len(study.box_methods):
        out += _box_methods_section(study.box_methods)
    if study.completeness:
        frame = pd.DataFrame(study.completeness)
        grouped = frame.groupby(["rule", "steps"])["relative_delta"]
        median, below = grouped.median().unstack("rule"), grouped.apply(lambda d: float(np.mean(d < 0.01))).unstack("rule")
        out.append(f"\n### Completeness: relative delta |Σ IG − (F(x) − F(0))| / |F(x) − F(0)|, median over "
                   f"{frame['case_id'].nunique()} images (share of images below 1%)\n\n"
                   "| steps | " + " | ".join(median.columns) + " |\n|---|" + "---|" * len(median.columns))
        for steps, row in median.iterrows():
            out.append(f"| {steps} | " + " | ".join(f"{v:.2e} ({below.loc[steps, rule]:.0%})" for rule, v in row.items()) + " |")
        if "masks" in m:
            out.append(f"\nAt the stage's {m['rule']} rule and {m['steps']} steps, over the {m['masks']['images']} scored images: "
                       f"median {m['masks']['ig_relative_delta_median']:.2e}, 90th percentile {m['masks']['ig_relative_delta_p90']:.2e}, "
                       f"{m['masks']['ig_relative_delta_below_1pct']:.0%} below 1%.")
    return "\n".join(out) + "\n"
