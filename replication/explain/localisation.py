"""Measured localisation: do the explanations point at the lesion? Backend-free numpy.

Metrics: the pointing game (hottest pixel inside the ground truth), region hit (strongest region's centre
inside it), IoU, IoBB as Wang et al. (2017, ChestX-ray8) define it: intersection over the *detected* region's
area, a hit at threshold T when IoBB > T; the fraction of signal on structured noise (markers, borders), and a
percentile bootstrap CI. Baselines to compare the paper's threshold + clustering against: top-k pixels, Otsu's
threshold, and 8-connected components.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import numpy as np
from scipy import ndimage

from replication.errors import ParameterError
from replication.explain.regions import Region, normalise, reduce_channels, regions_from_labels

Box = tuple[float, float, float, float]  # (x, y, w, h): x = column, y = row of the top-left corner, in pixels


def _mask(name: str, mask: np.ndarray, shape: tuple[int, ...] | None = None) -> np.ndarray:
    m = np.asarray(mask)
    if m.ndim != 2:
        raise ParameterError(name, m.shape, "a 2-D (H, W) mask")
    if shape is not None and m.shape != tuple(shape[:2]):
        raise ParameterError(name, m.shape, f"the map's shape {tuple(shape[:2])}")
    return m.astype(bool, copy=False)


def pointing_game(attribution_map: np.ndarray, mask: np.ndarray, *, channel_reduce: str = "sum_abs") -> bool:
    """Hit when the hottest pixel (first in row-major order on ties) lies in `mask`; a constant map never hits."""
    values = reduce_channels(attribution_map, channel_reduce)
    m = _mask("mask", mask, values.shape)
    if normalise(values) is None:
        return False
    row, col = np.unravel_index(int(np.argmax(values)), values.shape)
    return bool(m[row, col])


def region_hit(regions: Sequence[Region], mask: np.ndarray) -> bool:
    """Hit when the centre (rounded) of the region with the largest mass lies in `mask`; no regions: a miss."""
    m = _mask("mask", mask)
    if not regions:
        return False
    best = max(regions, key=lambda r: r.mass)
    row, col = int(round(best.center[0])), int(round(best.center[1]))
    return bool(0 <= row < m.shape[0] and 0 <= col < m.shape[1] and m[row, col])


def circles_mask(regions: Sequence[Region], shape: tuple[int, ...]) -> np.ndarray:
    """Union of the regions' discs (pixel centres within the radius) on an (H, W) grid."""
    height, width = int(shape[0]), int(shape[1])
    out = np.zeros((height, width), dtype=bool)
    for r in regions:
        cy, cx, rad = r.center[0], r.center[1], r.radius
        r0, r1 = max(int(np.floor(cy - rad)), 0), min(int(np.ceil(cy + rad)) + 1, height)
        c0, c1 = max(int(np.floor(cx - rad)), 0), min(int(np.ceil(cx + rad)) + 1, width)
        if r0 >= r1 or c0 >= c1:
            continue
        yy, xx = np.ogrid[r0:r1, c0:c1]
        out[r0:r1, c0:c1] |= (yy - cy) ** 2 + (xx - cx) ** 2 <= rad ** 2
    return out


def iou(a: np.ndarray, b: np.ndarray) -> float:
    """Intersection over union of two masks; 0.0 when both are empty (nothing found, scored as a miss)."""
    a, b = _mask("a", a), _mask("b", b, np.shape(a))
    union = int(np.count_nonzero(a | b))
    return float(np.count_nonzero(a & b) / union) if union else 0.0


def box_mask(box: Box, shape: tuple[int, ...]) -> np.ndarray:
    """(H, W) mask of a box (x, y, w, h) in pixels: the pixels whose centre (col + .5, row + .5) lies inside it."""
    x, y, w, h = (float(v) for v in box)
    if w < 0 or h < 0 or not all(np.isfinite([x, y, w, h])):
        raise ParameterError("box", box, "(x, y, w, h) with finite values and w, h >= 0")
    height, width = int(shape[0]), int(shape[1])
    cols = np.arange(width) + 0.5
    rows = np.arange(height) + 0.5
    return ((rows >= y) & (rows <= y + h))[:, None] & ((cols >= x) & (cols <= x + w))[None, :]


def scale_box(box: Box, from_shape: tuple[int, ...], to_shape: tuple[int, ...]) -> Box:
    """A box given on one image size (ChestX-ray14: 1024 x 1024) on another (e.g. 224 x 224)."""
    sy, sx = to_shape[0] / from_shape[0], to_shape[1] / from_shape[1]
    x, y, w, h = box
    return (x * sx, y * sy, w * sx, h * sy)


def iobb(pred_mask: np.ndarray, box: Box | np.ndarray, *, detected_as_box: bool = False) -> float:
    """Wang et al.'s IoBB: |detected ∩ ground truth| / |detected|; 0.0 when nothing is detected.

    `box`: the ground-truth (x, y, w, h) or a ground-truth mask. `detected_as_box=True` replaces the detection
    by its bounding box first (Wang et al. scored bounding boxes drawn around the heatmap's blobs).
    """
    pred = _mask("pred_mask", pred_mask)
    truth = _mask("box", box, pred.shape) if isinstance(box, np.ndarray) and np.ndim(box) == 2 else box_mask(box, pred.shape)
    if detected_as_box and pred.any():
        rows, cols = np.flatnonzero(pred.any(axis=1)), np.flatnonzero(pred.any(axis=0))
        pred = np.zeros_like(pred)
        pred[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
    area = int(np.count_nonzero(pred))
    return float(np.count_nonzero(pred & truth) / area) if area else 0.0


def accuracy_at(values: Sequence[float] | np.ndarray, threshold: float) -> float:
    """Share of cases counted as hits at T(IoBB) or T(IoU): value > threshold (Wang et al.'s convention)."""
    v = np.asarray(values, dtype=np.float64)
    if v.size == 0:
        raise ParameterError("values", "[]", "at least one value")
    return float(np.mean(v > threshold))


def signal_fraction_on(mask_signal: np.ndarray, artefact_mask: np.ndarray) -> float:
    """Fraction of the signal pixels lying on structured noise (markers, borders); NaN when there is no signal."""
    signal = _mask("mask_signal", mask_signal)
    artefact = _mask("artefact_mask", artefact_mask, signal.shape)
    n = int(np.count_nonzero(signal))
    return float(np.count_nonzero(signal & artefact) / n) if n else float("nan")


def bootstrap_ci(values: Sequence[float] | np.ndarray, stat: Callable = np.mean, n: int = 1000, seed: int = 0,
                 level: float = 0.95, groups: Sequence[Any] | np.ndarray | None = None) -> tuple[float, float]:
    """Percentile bootstrap interval of `stat` over cases (resampled with replacement, `n` times, fixed seed).

    `groups` (one label per value, e.g. the image of each box): resample the groups instead, every value of a drawn
    group coming with it, and take the pooled mean (`stat` must then be np.mean). scipy.stats.bootstrap resamples
    single observations only, which treats several boxes of one image as independent (CheXlocalize resamples images).
    """
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 1 or v.size == 0:
        raise ParameterError("values", v.shape, "a non-empty 1-D sequence")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ParameterError("n", n, "an integer >= 1")
    if not 0 < level < 1:
        raise ParameterError("level", level, "a number in (0, 1)")
    rng = np.random.default_rng(seed)
    if groups is not None:
        g = np.asarray(groups)
        if g.shape != v.shape:
            raise ParameterError("groups", g.shape, f"one group label per value {v.shape}")
        if stat is not np.mean:
            raise ParameterError("stat", stat, "np.mean (a grouped bootstrap pools the drawn groups' values)")
        _, inverse = np.unique(g, return_inverse=True)
        sums, counts = np.bincount(inverse, weights=v), np.bincount(inverse).astype(np.float64)
        draw = rng.integers(0, len(sums), size=(n, len(sums)))
        stats = sums[draw].sum(axis=1) / counts[draw].sum(axis=1)
    else:
        samples = v[rng.integers(0, v.size, size=(n, v.size))]
        try:
            stats = np.asarray(stat(samples, axis=1), dtype=np.float64)
            if stats.shape != (n,):
                raise TypeError
        except TypeError:
            stats = np.array([stat(s) for s in samples], dtype=np.float64)
    low, high = np.quantile(stats, [(1 - level) / 2, 1 - (1 - level) / 2])
    return float(low), float(high)


# --------------------------------------------------------------------------------------------- baselines
def top_k_mask(attribution_map: np.ndarray, fraction: float, *, channel_reduce: str = "sum_abs") -> np.ndarray:
    """The round(fraction * pixels) highest-valued pixels (ties: row-major order); empty for a constant map."""
    if not 0.0 <= float(fraction) <= 1.0:
        raise ParameterError("fraction", fraction, "a number in [0, 1]")
    values = reduce_channels(attribution_map, channel_reduce)
    out = np.zeros(values.shape, dtype=bool)
    k = int(round(float(fraction) * values.size))
    if k == 0 or normalise(values) is None:
        return out
    order = np.argsort(-values.ravel(), kind="stable")[:k]
    out.ravel()[order] = True
    return out


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of values in [0, 1]: the histogram cut maximising the between-class variance.

    Written here rather than taken from scikit-image's `threshold_otsu` (the same 256-bin computation): that one
    function would add scikit-image and its dependencies to the package; the unit tests pin it on hand cases."""
    v = np.asarray(values, dtype=np.float64).ravel()
    hist, edges = np.histogram(v, bins=bins, range=(0.0, 1.0))
    p = hist / max(hist.sum(), 1)
    centres = (edges[:-1] + edges[1:]) / 2
    w0 = np.cumsum(p)
    m0 = np.cumsum(p * centres)
    total = m0[-1]
    w1 = 1.0 - w0
    with np.errstate(divide="ignore", invalid="ignore"):
        between = (total * w0 - m0) ** 2 / (w0 * w1)
    between[~np.isfinite(between)] = -1.0
    return float(edges[int(np.argmax(between)) + 1])


def otsu_mask(attribution_map: np.ndarray, *, bins: int = 256, channel_reduce: str = "sum_abs") -> np.ndarray:
    """Pixels above Otsu's threshold of the min-max normalised map; empty for a constant map."""
    values = reduce_channels(attribution_map, channel_reduce)
    norm = normalise(values)
    if norm is None:
        return np.zeros(values.shape, dtype=bool)
    return norm > otsu_threshold(norm, bins)


def connected_component_regions(mask: np.ndarray, attribution_map: np.ndarray | None = None, *, margin: float = 0.0,
                                min_cluster_size: int = 2, channel_reduce: str = "sum_abs") -> list[Region]:
    """8-connected components of a mask as Regions (mass from the normalised map, else 1 per pixel)."""
    m = _mask("mask", mask)
    labels, count = ndimage.label(m, structure=np.ones((3, 3), dtype=bool))
    if count == 0:
        return []
    points = np.argwhere(labels > 0)
    if attribution_map is None:
        values = np.ones(len(points))
    else:
        reduced = reduce_channels(attribution_map, channel_reduce)
        if reduced.shape != m.shape:
            raise ParameterError("attribution_map", reduced.shape, f"the mask's shape {m.shape}")
        norm = normalise(reduced)
        values = np.zeros(len(points)) if norm is None else norm[points[:, 0], points[:, 1]]
    return regions_from_labels(points, labels[points[:, 0], points[:, 1]] - 1, values, margin, min_cluster_size)


__all__ = ["Box", "pointing_game", "region_hit", "circles_mask", "iou", "box_mask", "scale_box", "iobb",
           "accuracy_at", "signal_fraction_on", "bootstrap_ci", "top_k_mask", "otsu_threshold", "otsu_mask",
           "connected_component_regions"]
