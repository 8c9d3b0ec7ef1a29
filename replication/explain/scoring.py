"""Scoring the detection against ground truth: the compared methods, registered by a stable key, and the scorers.

Each method turns one map (and a sight sensitivity) into detected pixels and *detections*: the regions it draws.
Its kind says what a detection is:

- ``point`` (the pointing game): the hottest pixel; a point has no area, so no IoU, IoBB or detections;
- ``regions`` (the paper's clusters + circles, connected components + circles): one detection per circle;
- ``pixels`` (threshold only, top-k, Otsu, the whole image): one detection per 8-connected component of the pixels.

One definition per column:

- ``pointing_game``: the map's hottest pixel lies in the ground truth (the point method's rows only);
- ``region_hit``: the centre of the strongest detection (largest mass) lies in it (every method with an area);
- ``iou``, ``pixel_precision``, ``pixel_recall``: all detected pixels together against the ground truth;
- per detection, Wang et al. (2017) style: a detection whose IoU (or IoBB, |detection ∩ truth| / |detection|) with the
  ground truth exceeds T is a true positive, any other a false positive; ``accuracy_iou_T`` / ``accuracy_iobb_T`` is
  the share of cases (boxes, or lesion images) with at least one true positive, ``afp_iou_T`` / ``afp_iobb_T`` the mean
  number of false positives per case, ``precision`` the share of all detections that are true positives at T(IoBB) =
  ``MATCH_IOBB``.

Intervals are percentile bootstraps that resample images (every box of a drawn image comes with it), as
CheXlocalize does. Methods that ignore the sight sensitivity are scored once, the others at every value of the sweep.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Iterator, Sequence

import numpy as np
import pandas as pd

from replication.errors import DataError, ParameterError
from replication.explain.attribution import DEFAULT_RULE, DEFAULT_STEPS, gradients, integrated_gradients
from replication.explain.baselines import smoothgrad
from replication.explain.localisation import (
    bootstrap_ci,
    box_mask,
    circles_mask,
    connected_component_regions,
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

IOU_THRESHOLDS = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7)  # Wang et al. 2017, Table 3
IOBB_THRESHOLDS = (0.1, 0.25, 0.5, 0.75, 0.9)         # Wang et al. 2017, Table 3
MATCH_IOBB = 0.1  # the loosest T(IoBB): what `precision` and the sight-sensitivity trade-off count as a true positive
WHOLE_IMAGE = "none (the whole image)"  # the attribution column of the whole-image detection, which reads no map


# ----------------------------------------------------------------------------------------- attribution maps
@dataclass
class Maps:
    """Attribution maps (n, H, W) of one model output per image, with IG's completeness check; `extra` holds further
    maps scored the same way (SmoothGrad, the baselines of ``replication.explain.baselines``), by display name."""

    integrated_gradients: np.ndarray
    gradients: np.ndarray
    relative_delta: np.ndarray
    prediction: np.ndarray
    extra: dict[str, np.ndarray] = field(default_factory=dict)

    def sources(self) -> Iterator[tuple[str, np.ndarray]]:
        """(display name, (n, H, W) maps) of every map scored: IG, gradients, then `extra` in order."""
        yield "integrated gradients", self.integrated_gradients
        yield "gradients", self.gradients
        for name, stack in self.extra.items():
            if np.shape(stack) != self.integrated_gradients.shape:
                raise DataError(f"maps[{name!r}]", f"shape {np.shape(stack)}, expected {self.integrated_gradients.shape}")
            yield name, stack


def attribution_maps(model: Any, images: np.ndarray, output_index: Sequence[int] | int = 0, *, steps: int = DEFAULT_STEPS,
                     rule: str = DEFAULT_RULE, batch_size: int = 64, smoothgrad_samples: int = 0, smoothgrad_noise: float = 0.15,
                     seed: int = 0) -> Maps:
    """IG (zeros baseline) and plain gradients of `model`'s unit `output_index[i]` for each image (n, H, W, 1), and
    SmoothGrad in `extra` when `smoothgrad_samples` > 0; the images of one unit run as one batch."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim != 4 or len(x) == 0:
        raise DataError("images", f"expected a non-empty (n, H, W, 1) array, got shape {x.shape}")
    units = np.broadcast_to(np.asarray(output_index, dtype=int), (len(x),))
    ig = np.zeros(x.shape[:3])
    grads, smooth, delta, prediction = np.zeros(x.shape[:3]), np.zeros(x.shape[:3]), np.zeros(len(x)), np.zeros(len(x))
    for unit in np.unique(units):
        rows = np.flatnonzero(units == unit)
        result = integrated_gradients(model, x[rows], output_index=int(unit), steps=steps, rule=rule, batch_size=batch_size)
        plain = gradients(model, x[rows], output_index=int(unit), batch_size=batch_size)[0]
        for j, row in enumerate(rows):
            ig[row], grads[row] = reduce_channels(result.attribution[j]), reduce_channels(plain[j])
        if smoothgrad_samples:
            noisy = smoothgrad(lambda batch: gradients(model, batch, output_index=int(unit), batch_size=batch_size)[0], x[rows],
                               samples=smoothgrad_samples, noise=smoothgrad_noise, seed=seed + int(unit))
            for j, row in enumerate(rows):
                smooth[row] = reduce_channels(noisy[j])
        delta[rows], prediction[rows] = result.relative_delta, result.prediction
    return Maps(ig, grads, delta, prediction, {"SmoothGrad": smooth} if smoothgrad_samples else {})


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
    """One compared method: its stable key, its display name in the tables, what its detections are (module
    docstring), whether it depends on the sight sensitivity, and whether it reads the map at all."""

    key: str
    name: str  # "{top_k:.0%}" is filled in from the geometry
    kind: str  # point | regions | pixels
    swept: bool
    detect: Detect
    reads_map: bool = True

    def label(self, geometry: Geometry) -> str:
        return self.name.format(top_k=geometry.top_k)

    def detections(self, m: np.ndarray, s: float, g: Geometry, truth: np.ndarray) -> tuple[np.ndarray, list[Region], np.ndarray, np.ndarray]:
        """(detected pixels, regions strongest first, and per detection its area and its overlap with `truth`) of map `m`.
        A component's counts come from its member pixels; only a circle is drawn."""
        detected, regions = self.detect(m, s, g)
        if self.kind == "point":
            return detected, [], np.zeros(0), np.zeros(0)
        if self.kind == "regions":
            regions = list(regions or [])
            discs = [circles_mask([r], m.shape) for r in regions]
            return (detected, regions, np.array([np.count_nonzero(d) for d in discs], dtype=float),
                    np.array([np.count_nonzero(d & truth) for d in discs], dtype=float))
        regions = connected_component_regions(detected, m, margin=0.0, min_cluster_size=1)
        return (detected, regions, np.array([r.pixels for r in regions], dtype=float),
                np.array([np.count_nonzero(truth[r.members[:, 0], r.members[:, 1]]) for r in regions], dtype=float))


METHODS: dict[str, Method] = {}


def _register(key: str, name: str, kind: str, swept: bool, reads_map: bool = True) -> Callable[[Detect], Detect]:
    def add(detect: Detect) -> Detect:
        METHODS[key] = Method(key, name, kind, swept, detect, reads_map)
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


@_register("whole_image", "whole image (one detection)", "pixels", swept=False, reads_map=False)
def _whole_image(m: np.ndarray, s: float, g: Geometry):
    return np.ones(m.shape, dtype=bool), None


def methods(keys: Sequence[str] | None = None, *, area: bool = False) -> list[Method]:
    """The registered methods of `keys` (None: every method that reads the map, in registry order); `area=True`
    leaves out (and refuses) the point methods, which have no area to score against a box."""
    allowed = [k for k, m in METHODS.items() if not (area and m.kind == "point")]
    keys = [k for k in allowed if METHODS[k].reads_map] if keys is None else list(keys)
    for key in keys:
        if key not in allowed:
            raise ParameterError("methods", key, f"one of {allowed}" + (" (a point has no area: the pointing game of "
                                 "boxes is score_boxes' pointing_game column)" if key in METHODS else ""))
    if len(set(keys)) != len(keys):
        raise ParameterError("methods", keys, "distinct method keys")
    return [METHODS[k] for k in keys]


# ----------------------------------------------------------------------------------------- one case
def score_case(method: Method, m: np.ndarray, s: float, geometry: Geometry, truth: np.ndarray,
               artefacts: np.ndarray | None = None) -> dict[str, float]:
    """Every column of the module docstring for one map, one method, one sight sensitivity and one ground truth."""
    nan = float("nan")
    out: dict[str, float] = {"pointing_game": float(pointing_game(m, truth)) if method.kind == "point" else nan}
    detected, regions, area, inter = method.detections(m, s, geometry, truth)
    if artefacts is not None:
        out["signal_on_artefacts"] = signal_fraction_on(detected, artefacts)
    if method.kind == "point":
        return out
    n_truth, n_detected = int(np.count_nonzero(truth)), int(np.count_nonzero(detected))
    overlap = int(np.count_nonzero(detected & truth))
    out.update(region_hit=float(region_hit(regions, truth)), iou=iou(detected, truth),
               pixel_precision=overlap / n_detected if n_detected else nan, pixel_recall=overlap / n_truth if n_truth else nan,
               detections=float(len(area)))
    union = area + n_truth - inter
    det_iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    det_iobb = np.divide(inter, area, out=np.zeros_like(inter), where=area > 0)
    for name, values, thresholds in (("iou", det_iou, IOU_THRESHOLDS), ("iobb", det_iobb, IOBB_THRESHOLDS)):
        for t in thresholds:
            out[f"accuracy_{name}_{t}"] = float((values > t).any())
            out[f"afp_{name}_{t}"] = float(np.count_nonzero(values <= t))
    out["true_positives"] = float(np.count_nonzero(det_iobb > MATCH_IOBB))
    return out


# ----------------------------------------------------------------------------------------- scorers
BOOTSTRAPPED = ("pointing_game", "region_hit", "iou")  # columns with an interval; the others are means


def check_sweep(sweep: Sequence[float]) -> list[float]:
    """The sight sensitivities as floats: a non-empty list of distinct numbers in [0, 1]."""
    values = [float(s) for s in sweep]
    if not values or any(not 0.0 <= s <= 1.0 for s in values) or len(set(values)) != len(values):
        raise ParameterError("localisation.sight_sensitivities", list(sweep), "a non-empty list of distinct numbers in [0, 1]")
    return values


def _geometry(shape: tuple[int, ...], top_k: float, cluster_distance: float | None, margin: float | None) -> Geometry:
    return Geometry(default_cluster_distance(shape) if cluster_distance is None else cluster_distance,
                    default_margin(shape) if margin is None else margin, float(top_k))


def score_cases(maps: Maps, truths: Sequence[np.ndarray], sweep: Sequence[float], *, top_k: float,
                keys: Sequence[str] | None = None, artefacts: np.ndarray | None = None, images: Sequence[int] | None = None,
                cluster_distance: float | None = None, margin: float | None = None, area: bool = False,
                attributions: Sequence[str] | None = None) -> pd.DataFrame:
    """One row per (case, attribution, method, sight sensitivity) with `score_case`'s columns: the per-image table
    the summaries are computed from. `images`: each case's image (boxes of one image share it; default: one image
    per case). `attributions`: which of `maps.sources()` (None: all, and the whole-image detection, which reads no map,
    scored once under attribution WHOLE_IMAGE)."""
    sweep = check_sweep(sweep)
    chosen = methods(keys, area=area)
    stack = maps.integrated_gradients
    if len(truths) != len(stack):
        raise DataError("ground truth", f"{len(truths)} ground truths for {len(stack)} attribution maps")
    images = np.arange(len(truths)) if images is None else np.asarray(images)
    geometry = _geometry(stack.shape[1:], top_k, cluster_distance, margin)
    plan = [(name, maps_, [m for m in chosen if m.reads_map]) for name, maps_ in maps.sources()
            if attributions is None or name in attributions]
    if attributions is None:
        plan.append((WHOLE_IMAGE, stack, [METHODS["whole_image"]]))
    rows = []
    for source, maps_, ms in plan:
        for m in ms:
            for s in (sweep if m.swept else [None]):
                for i, truth in enumerate(truths):
                    scores = score_case(m, maps_[i], sweep[0] if s is None else s, geometry, truth,
                                        None if artefacts is None else artefacts[i])
                    rows.append({"case": i, "image": int(images[i]), "attribution": source, "method_key": m.key,
                                 "method": m.label(geometry), "sight_sensitivity": s, **scores})
    return pd.DataFrame(rows)


def _bootstrap(values: pd.Series, groups: pd.Series, seed: int) -> tuple[float, float, float]:
    v = values.to_numpy(dtype=np.float64)
    keep = np.isfinite(v)
    if not keep.any():
        return float("nan"), float("nan"), float("nan")
    v, g = v[keep], groups.to_numpy()[keep]
    low, high = bootstrap_ci(v, groups=g, n=1000, seed=seed) if len(np.unique(g)) > 1 else (float(v[0]), float(v[0]))
    return float(v.mean()), low, high


def summarise_cases(cases: pd.DataFrame, by: Sequence[str] = ("attribution", "method_key", "method", "sight_sensitivity"),
                    seed: int = 0) -> pd.DataFrame:
    """One row per group of `score_cases` rows: counts, bootstrap intervals (over images) of BOOTSTRAPPED, means of the
    rest, and `precision` (true-positive detections / detections, pooled)."""
    rows = []
    for key, group in cases.groupby(list(by), sort=False, dropna=False):
        row: dict[str, Any] = dict(zip(by, key if isinstance(key, tuple) else (key,)))
        row.update(cases=len(group), images=int(group["image"].nunique()))
        for col in BOOTSTRAPPED:
            if col in group:
                row[f"{col}_mean"], row[f"{col}_ci_low"], row[f"{col}_ci_high"] = _bootstrap(group[col], group["image"], seed)
        for col in group.columns:
            if col.startswith(("accuracy_", "afp_")) or col in ("pixel_precision", "pixel_recall", "detections", "signal_on_artefacts"):
                row[col if col.startswith(("accuracy_", "afp_")) else f"{col}_mean"] = float(group[col].mean())
        if "detections" in group and group["detections"].notna().any():
            total = float(group["detections"].sum())
            row["precision"] = float(group["true_positives"].sum()) / total if total else float("nan")
        rows.append(row)
    return pd.DataFrame(rows)


def score_masks(maps: Maps, truths: np.ndarray, artefacts: np.ndarray, sweep: Sequence[float], *, top_k: float,
                keys: Sequence[str] | None = None, cluster_distance: float | None = None, margin: float | None = None,
                seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, per image) of every map and method on lesion masks: `truths`/`artefacts` are (n, H, W) bool lesion and
    structured-noise masks, one image each; `keys`: the registry's methods (None: all). Methods that ignore the sight
    sensitivity get one row, with sight_sensitivity empty."""
    truths, artefacts = np.asarray(truths, bool), np.asarray(artefacts, bool)
    if maps.integrated_gradients.shape != truths.shape or artefacts.shape != truths.shape:
        raise DataError("masks", f"maps {maps.integrated_gradients.shape}, lesions {truths.shape} and artefacts "
                                 f"{artefacts.shape} must have one (H, W) mask per image")
    cases = score_cases(maps, truths, sweep, top_k=top_k, keys=keys, artefacts=artefacts, cluster_distance=cluster_distance,
                        margin=margin)
    return summarise_cases(cases, seed=seed), cases


def _box_truths(maps: Maps, boxes: pd.DataFrame) -> list[np.ndarray]:
    if len(boxes) != len(maps.integrated_gradients):
        raise DataError("boxes", f"{len(boxes)} boxes for {len(maps.integrated_gradients)} attribution maps")
    shape = maps.integrated_gradients.shape[1:]
    return [box_mask((b.x, b.y, b.w, b.h), shape) for b in boxes.itertuples(index=False)]


def _box_images(boxes: pd.DataFrame) -> np.ndarray:
    return boxes["image_index"].to_numpy() if "image_index" in boxes else np.arange(len(boxes))


def score_boxes(maps: Maps, boxes: pd.DataFrame, sight_sensitivity: float, *, cluster_distance: float | None = None,
                margin: float | None = None, seed: int = 0) -> pd.DataFrame:
    """The paper's method (circles around IG signal at `sight_sensitivity`) per finding and overall, with the pointing
    game of the same maps. `boxes`: one row per attributed map, in the order of `maps`, with `finding`, `x, y, w, h` in
    the attributed images' pixels (`Cohort.boxes` are) and, where images hold several boxes, `image_index`."""
    truths = _box_truths(maps, boxes)
    cases = score_cases(maps, truths, [sight_sensitivity], top_k=0.0, keys=["pointing_game", "clusters_circles"],
                        images=_box_images(boxes), cluster_distance=cluster_distance, margin=margin,
                        attributions=["integrated gradients"])
    cases["finding"] = boxes["finding"].to_numpy()[cases["case"].to_numpy()]
    point = cases[cases["method_key"] == "pointing_game"][["case", "pointing_game"]]
    paper = cases[cases["method_key"] == "clusters_circles"].drop(columns="pointing_game").merge(point, on="case")
    table = pd.concat([summarise_cases(paper, ["finding"], seed),
                       summarise_cases(paper.assign(finding="all findings"), ["finding"], seed)], ignore_index=True)
    return table.rename(columns={"cases": "boxes"})


def score_box_methods(maps: Maps, boxes: pd.DataFrame, sweep: Sequence[float], *, top_k: float, keys: Sequence[str] | None = None,
                      cluster_distance: float | None = None, margin: float | None = None,
                      seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(summary, per box) of every map and area method (`keys`: which; None: all) on all boxes, plus CheXlocalize's
    practice: the min-max normalised map thresholded at a value tuned for mean IoU — by 2-fold cross-fitting over
    images (each half scored at the threshold the other half chose), so no image scores its own tuning; with fewer
    than 2 images (or without the threshold method) there is no tuned row."""
    sweep = check_sweep(sweep)
    truths = _box_truths(maps, boxes)
    images = _box_images(boxes)
    cases = score_cases(maps, truths, sweep, top_k=top_k, keys=keys, images=images, cluster_distance=cluster_distance,
                        margin=margin, area=True)
    table = summarise_cases(cases, seed=seed).rename(columns={"cases": "boxes"})
    table["note"] = ""
    unique = np.unique(images)
    thresholded = cases[cases["method_key"] == "threshold"]
    if len(unique) < 2 or thresholded.empty:
        return table, cases
    fold_of = dict(zip(unique, np.random.default_rng(seed).permutation(len(unique)) % 2))
    tuned_rows = []
    for source, group in thresholded.groupby("attribution", sort=False):
        fold = group["image"].map(fold_of).to_numpy()
        mean_iou = {k: group[fold != k].groupby("sight_sensitivity")["iou"].mean() for k in (0, 1)}
        picked = [float(mean_iou[k].idxmax()) for k in (0, 1)]
        tuned = pd.concat([group[(fold == k) & np.isclose(group["sight_sensitivity"].astype(float), picked[k])] for k in (0, 1)])
        tuned = tuned.assign(method=f"{METHODS['threshold'].label(_geometry(maps.integrated_gradients.shape[1:], top_k, None, None))}, "
                                    "tuned (2-fold)", method_key="threshold_tuned", sight_sensitivity=None)
        row = summarise_cases(tuned, seed=seed).rename(columns={"cases": "boxes"})
        row["note"] = f"sight sensitivity chosen for mean IoU on the other half of the images: {picked[0]:g} / {picked[1]:g}"
        tuned_rows.append(row)
    return pd.concat([table, *tuned_rows], ignore_index=True), cases


def sight_sensitivity_tradeoff(table: pd.DataFrame, attribution: str = "integrated gradients", method_key: str = "clusters_circles",
                               chance: str | None = "random map (chance)") -> dict[str, Any]:
    """The paper's claim that raising the sight sensitivity trades true-positive signal for fewer false positives, read
    off a summary table's sweep: false positives per case, recall (share of cases with a true positive) and the
    precision of the detections at the lowest and highest sight sensitivity, for `attribution` and, beside it,
    `chance` (where present). Counted at T(IoBB) = MATCH_IOBB."""
    def ends(source: str) -> dict[str, Any] | None:
        rows = table[(table["attribution"] == source) & (table["method_key"] == method_key)].dropna(subset=["sight_sensitivity"])
        if len(rows) < 2:
            return None
        rows = rows.sort_values("sight_sensitivity")
        lo, hi = rows.iloc[0], rows.iloc[-1]
        fp, acc = f"afp_iobb_{MATCH_IOBB}", f"accuracy_iobb_{MATCH_IOBB}"
        return {"sight_sensitivity": [float(lo["sight_sensitivity"]), float(hi["sight_sensitivity"])],
                "false_positives_per_case": [float(lo[fp]), float(hi[fp])], "recall": [float(lo[acc]), float(hi[acc])],
                "precision": [float(lo["precision"]), float(hi["precision"])],
                "fewer_false_positives": bool(hi[fp] < lo[fp]), "lower_recall": bool(hi[acc] < lo[acc]),
                "higher_precision": bool(hi["precision"] > lo["precision"])}

    out: dict[str, Any] = {"attribution": attribution, "method": method_key, "true_positive": f"IoBB > {MATCH_IOBB}"}
    mine = ends(attribution)
    if mine is None:
        return {**out, "measured": False}
    out.update(measured=True, **mine)
    other = ends(chance) if chance else None
    if other is not None:
        out["chance"] = other
    return out


__all__ = ["IOBB_THRESHOLDS", "IOU_THRESHOLDS", "MATCH_IOBB", "METHODS", "WHOLE_IMAGE", "Geometry", "Maps", "Method",
           "attribution_maps", "check_sweep", "methods", "score_box_methods", "score_boxes", "score_case", "score_cases",
           "score_masks", "sight_sensitivity_tradeoff", "summarise_cases"]
