"""Scoring the detection against ground truth: the compared methods, registered by a stable key, and the scorers.

Each method turns one attribution map (and a sight sensitivity) into detected pixels, with regions where it draws
any. Its kind says how a hit is counted:

- ``point`` (the pointing game): the hottest pixel lies in the ground truth; a point has no area, so no IoU or IoBB;
- ``regions`` (the paper's clusters + circles, connected components + circles): the strongest region's centre
  lies in it (region hit);
- ``pixels`` (threshold only, top-k, Otsu): the hottest pixel lies in it and the method detects something (a
  threshold cannot move the hottest pixel).

Methods that ignore the sight sensitivity (the pointing game, top-k, Otsu) are scored once, the others at every
value of the sweep. Intervals are percentile bootstraps over images.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd

from replication.errors import DataError, ParameterError
from replication.explain.attribution import DEFAULT_RULE, DEFAULT_STEPS, gradients, integrated_gradients
from replication.explain.localisation import (
    bootstrap_ci,
    box_mask,
    circles_mask,
    connected_component_regions,
    iobb,
    iou,
    otsu_mask,
    pointing_game,
    region_hit,
    signal_fraction_on,
    top_k_mask,
)
from replication.explain.regions import (
    Region,
    cluster_regions,
    default_cluster_distance,
    default_margin,
    reduce_channels,
    sight_sensitivity_mask,
)

IOBB_THRESHOLDS = (0.1, 0.25, 0.5)  # Wang et al. 2017's T(IoBB)
ATTRIBUTIONS = (("integrated gradients", "integrated_gradients"), ("gradients", "gradients"))  # (display name, Maps field)


# ----------------------------------------------------------------------------------------- attribution maps
@dataclass
class Maps:
    """Attribution maps (n, H, W) of one model output per image, with IG's completeness check."""

    integrated_gradients: np.ndarray
    gradients: np.ndarray
    relative_delta: np.ndarray
    prediction: np.ndarray


def attribution_maps(model: Any, images: np.ndarray, output_index: Sequence[int] | int = 0, *, steps: int = DEFAULT_STEPS,
                     rule: str = DEFAULT_RULE, batch_size: int = 64) -> Maps:
    """IG (zeros baseline) and plain gradients of `model`'s unit `output_index[i]` for each image (n, H, W, 1);
    the images of one unit run as one batch."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4 or len(x) == 0:
        raise DataError("images", f"expected a non-empty (n, H, W, 1) array, got shape {x.shape}")
    units = np.broadcast_to(np.asarray(output_index, dtype=int), (len(x),))
    ig = np.zeros(x.shape[:3])
    grads, delta, prediction = np.zeros(x.shape[:3]), np.zeros(len(x)), np.zeros(len(x))
    for unit in np.unique(units):
        rows = np.flatnonzero(units == unit)
        result = integrated_gradients(model, x[rows], output_index=int(unit), steps=steps, rule=rule, batch_size=batch_size)
        plain = gradients(model, x[rows], output_index=int(unit), batch_size=batch_size)[0]
        for j, row in enumerate(rows):
            ig[row], grads[row] = reduce_channels(result.attribution[j]), reduce_channels(plain[j])
        delta[rows], prediction[rows] = result.relative_delta, result.prediction
    return Maps(ig, grads, delta, prediction)


# ----------------------------------------------------------------------------------------- the registry
@dataclass(frozen=True)
class Geometry:
    """What the methods need besides the map and the sight sensitivity, in the map's pixels."""

    cluster_distance: float
    margin: float
    top_k: float


Detect = Callable[[np.ndarray, float, Geometry], tuple[np.ndarray, "list[Region] | None"]]


@dataclass(frozen=True)
class Method:
    """One compared method: its stable key, its display name in the tables, how its hits count, and whether it
    depends on the sight sensitivity."""

    key: str
    name: str  # "{top_k:.0%}" is filled in from the geometry
    kind: str  # point | regions | pixels (module docstring)
    swept: bool
    detect: Detect

    def label(self, geometry: Geometry) -> str:
        return self.name.format(top_k=geometry.top_k)

    def hit(self, detected: np.ndarray, regions: list[Region] | None, truth: np.ndarray, pointing: bool) -> bool:
        if self.kind == "point":
            return bool(pointing)
        if self.kind == "regions":
            return region_hit(regions, truth)
        return bool(pointing) and bool(detected.any())


METHODS: dict[str, Method] = {}


def _register(key: str, name: str, kind: str, swept: bool) -> Callable[[Detect], Detect]:
    def add(detect: Detect) -> Detect:
        METHODS[key] = Method(key, name, kind, swept, detect)
        return detect
    return add


@_register("pointing_game", "pointing game (hottest pixel)", "point", swept=False)
def _hottest_pixel(m: np.ndarray, s: float, g: Geometry):
    out = np.zeros(m.shape, dtype=bool)
    out[np.unravel_index(np.argmax(m), m.shape)] = True
    return out, None


@_register("clusters_circles", "clusters + circles (paper)", "regions", swept=True)
def _paper(m: np.ndarray, s: float, g: Geometry):
    regions = cluster_regions(m, s, g.cluster_distance, g.margin)
    return circles_mask(regions, m.shape), regions


@_register("threshold", "threshold only", "pixels", swept=True)
def _threshold(m: np.ndarray, s: float, g: Geometry):
    return sight_sensitivity_mask(m, s), None


@_register("components_circles", "connected components + circles", "regions", swept=True)
def _components(m: np.ndarray, s: float, g: Geometry):
    regions = connected_component_regions(sight_sensitivity_mask(m, s), m, margin=g.margin)
    return circles_mask(regions, m.shape), regions


@_register("top_k", "top {top_k:.0%} pixels", "pixels", swept=False)
def _top_k(m: np.ndarray, s: float, g: Geometry):
    return top_k_mask(m, g.top_k), None


@_register("otsu", "Otsu threshold", "pixels", swept=False)
def _otsu(m: np.ndarray, s: float, g: Geometry):
    return otsu_mask(m), None


def methods(keys: Sequence[str] | None = None, *, area: bool = False) -> list[Method]:
    """The registered methods of `keys` (None: all, in registry order); `area=True` leaves out (and refuses) the
    point methods, which have no area to score against a box."""
    allowed = [k for k, m in METHODS.items() if not (area and m.kind == "point")]
    keys = allowed if keys is None else list(keys)
    for key in keys:
        if key not in allowed:
            raise ParameterError("methods", key, f"one of {allowed}" + (" (a point has no area: the pointing game of "
                                 "boxes is score_boxes' pointing_game column)" if key in METHODS else ""))
    if len(set(keys)) != len(keys):
        raise ParameterError("methods", keys, "distinct method keys")
    return [METHODS[k] for k in keys]


# ----------------------------------------------------------------------------------------- scorers
def _summary(values: Sequence[float], seed: int) -> dict[str, float]:
    v = np.asarray(values, dtype=np.float64)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return {"mean": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"), "n": 0}
    low, high = bootstrap_ci(v, n=1000, seed=seed) if v.size > 1 else (float(v[0]), float(v[0]))
    return {"mean": float(v.mean()), "ci_low": float(low), "ci_high": float(high), "n": int(v.size)}


def _prefixed(prefix: str, values: Mapping[str, float]) -> dict[str, float]:
    return {f"{prefix}_{k}": v for k, v in values.items()}


def check_sweep(sweep: Sequence[float]) -> list[float]:
    """The sight sensitivities as floats: a non-empty list of distinct numbers in [0, 1]."""
    values = [float(s) for s in sweep]
    if not values or any(not 0.0 <= s <= 1.0 for s in values) or len(set(values)) != len(values):
        raise ParameterError("localisation.sight_sensitivities", list(sweep), "a non-empty list of distinct numbers in [0, 1]")
    return values


def _geometry(shape: tuple[int, ...], top_k: float, cluster_distance: float | None, margin: float | None) -> Geometry:
    return Geometry(default_cluster_distance(shape) if cluster_distance is None else cluster_distance,
                    default_margin(shape) if margin is None else margin, float(top_k))


def _per_method(stack: np.ndarray, truths: Sequence[np.ndarray], sweep: list[float], geometry: Geometry,
                chosen: Sequence[Method], score: Callable) -> dict[tuple[str, float | None], list]:
    """score(i, detected, regions, hit) for every image i, method and sight sensitivity (None for the methods that
    ignore it, scored once), keyed (method key, sight sensitivity) in registry order."""
    pointing = [pointing_game(stack[i], truth) for i, truth in enumerate(truths)]
    per: dict[tuple[str, float | None], list] = {}
    for s in sweep:
        for i, truth in enumerate(truths):
            for m in chosen:
                if not m.swept and s != sweep[0]:
                    continue
                detected, regions = m.detect(stack[i], s, geometry)
                per.setdefault((m.key, s if m.swept else None), []).append(
                    score(i, detected, regions, m.hit(detected, regions, truth, pointing[i])))
    return per


def score_masks(maps: Maps, truths: np.ndarray, artefacts: np.ndarray, sweep: Sequence[float], *, top_k: float,
                keys: Sequence[str] | None = None, cluster_distance: float | None = None, margin: float | None = None,
                seed: int = 0) -> pd.DataFrame:
    """One row per (attribution, method, sight sensitivity): hit rate, IoU with the lesion, signal on artefacts,
    regions per image. `truths`/`artefacts`: (n, H, W) bool lesion masks and structured-noise masks; `keys`:
    the registry's methods to score (None: all). Methods that ignore the sight sensitivity get one row, with
    sight_sensitivity empty."""
    sweep = check_sweep(sweep)
    chosen = methods(keys)
    truths, artefacts = np.asarray(truths, bool), np.asarray(artefacts, bool)
    if maps.integrated_gradients.shape != truths.shape or artefacts.shape != truths.shape:
        raise DataError("masks", f"maps {maps.integrated_gradients.shape}, lesions {truths.shape} and artefacts "
                                 f"{artefacts.shape} must have one (H, W) mask per image")
    geometry = _geometry(truths.shape[1:], top_k, cluster_distance, margin)
    kinds = {m.key: m for m in chosen}
    rows = []
    for source, field in ATTRIBUTIONS:
        per = _per_method(getattr(maps, field), truths, sweep, geometry, chosen, lambda i, detected, regions, hit: {
            "hit": hit, "iou": iou(detected, truths[i]), "noise": signal_fraction_on(detected, artefacts[i]),
            "regions": len(regions) if regions is not None else float("nan")})
        for (key, s), scores in per.items():
            m, acc = kinds[key], pd.DataFrame(scores)
            if m.kind == "point":  # a point has no area (no IoU); one point per image
                acc["iou"], acc["regions"] = float("nan"), 1.0
            regions = acc["regions"].to_numpy(dtype=float)
            rows.append({"attribution": source, "method": m.label(geometry), "sight_sensitivity": s,
                         **_prefixed("hit", _summary(acc["hit"], seed)), **_prefixed("iou", _summary(acc["iou"], seed)),
                         **_prefixed("signal_on_artefacts", _summary(acc["noise"], seed)),
                         "regions_per_image": float(np.nanmean(regions)) if np.isfinite(regions).any() else float("nan")})
    return pd.DataFrame(rows)


def _box_truths(maps: Maps, boxes: pd.DataFrame) -> list[np.ndarray]:
    if len(boxes) != len(maps.integrated_gradients):
        raise DataError("boxes", f"{len(boxes)} boxes for {len(maps.integrated_gradients)} attribution maps")
    shape = maps.integrated_gradients.shape[1:]
    return [box_mask((b.x, b.y, b.w, b.h), shape) for b in boxes.itertuples(index=False)]


def score_boxes(maps: Maps, boxes: pd.DataFrame, sight_sensitivity: float, *, thresholds: Sequence[float] = IOBB_THRESHOLDS,
                cluster_distance: float | None = None, margin: float | None = None, seed: int = 0) -> pd.DataFrame:
    """Per finding (and overall): hit rate, IoU and accuracy at T(IoBB) of the paper's circles around IG signal,
    and the pointing game.

    `boxes`: one row per attributed image, in the order of `maps`, with `finding` and `x, y, w, h` in the
    pixels of the attributed images (`Cohort.boxes` are). IoBB = |circles ∩ box| / |circles| (Wang et al.).
    """
    truths = _box_truths(maps, boxes)
    geometry = _geometry(maps.integrated_gradients.shape[1:], 0.0, cluster_distance, margin)
    paper = METHODS["clusters_circles"]
    per_image = []
    for i, (box, truth) in enumerate(zip(boxes.itertuples(index=False), truths)):
        detected, regions = paper.detect(maps.integrated_gradients[i], sight_sensitivity, geometry)
        per_image.append({"finding": box.finding, "hit": float(paper.hit(detected, regions, truth, False)), "iou": iou(detected, truth),
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


def score_box_methods(maps: Maps, boxes: pd.DataFrame, sweep: Sequence[float], *, top_k: float, keys: Sequence[str] | None = None,
                      thresholds: Sequence[float] = IOBB_THRESHOLDS, cluster_distance: float | None = None,
                      margin: float | None = None, seed: int = 0) -> pd.DataFrame:
    """All boxes together, one row per (attribution, method, sight sensitivity): hit rate, IoU and accuracy at
    T(IoBB) of every registered method with an area (`keys`: which; None: all), plus CheXlocalize's practice: the
    min-max normalised map thresholded at a value tuned for mean IoU — here by 2-fold cross-fitting over the
    boxes (each half scored at the threshold the other half chose), so no box scores its own tuning; with
    fewer than 2 boxes (or without the threshold method) there is no tuned row."""
    sweep = check_sweep(sweep)
    chosen = methods(keys, area=True)
    truths = _box_truths(maps, boxes)
    geometry = _geometry(maps.integrated_gradients.shape[1:], top_k, cluster_distance, margin)
    fold = np.random.default_rng(seed).permutation(len(truths)) % 2
    rows = []

    def row(source: str, method: str, s: float | None, scores: pd.DataFrame, note: str = "") -> dict[str, Any]:
        out = {"attribution": source, "method": method, "sight_sensitivity": s, "boxes": len(scores),
               **_prefixed("hit", _summary(scores["hit"], seed)), **_prefixed("iou", _summary(scores["iou"], seed))}
        out.update({f"accuracy_iobb_{t}": float(np.mean(scores["iobb"].to_numpy() > t)) for t in thresholds})
        return {**out, "note": note}

    for source, field in ATTRIBUTIONS:
        per = _per_method(getattr(maps, field), truths, sweep, geometry, chosen, lambda i, detected, regions, hit: {
            "hit": float(hit), "iou": iou(detected, truths[i]), "iobb": iobb(detected, truths[i])})
        for (key, s), scores in per.items():
            rows.append(row(source, METHODS[key].label(geometry), s, pd.DataFrame(scores)))
        if len(truths) < 2 or ("threshold", sweep[0]) not in per:  # no other half to tune on, or nothing to tune
            continue
        by_s = {s: pd.DataFrame(per[("threshold", s)]) for s in sweep}
        picked = [max(sweep, key=lambda s: by_s[s]["iou"][fold != k].mean()) for k in (0, 1)]
        tuned = pd.concat([by_s[picked[k]][fold == k] for k in (0, 1)])
        rows.append(row(source, f"{METHODS['threshold'].label(geometry)}, tuned (2-fold)", None, tuned,
                        f"sight sensitivity chosen for mean IoU on the other half: {picked[0]:g} / {picked[1]:g}"))
    return pd.DataFrame(rows)


__all__ = ["IOBB_THRESHOLDS", "METHODS", "Geometry", "Maps", "Method", "attribution_maps", "check_sweep", "methods",
           "score_box_methods", "score_boxes", "score_masks"]
