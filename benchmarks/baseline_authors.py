"""The authors' detection algorithm as their notebook ran it: the reference the library has to beat.

Kept in ``benchmarks/`` only; nothing in ``replication/`` imports it. Two parts:

1. **Integrated gradients** (``authors_integrated_gradients``): the interpolated batch is built in NumPy, all
   ``steps`` scaled copies at once, ``baseline + (k / steps) * (x - baseline)`` for k = 0..steps-1 (left
   Riemann), then **one** gradient call on that whole batch, and attributions = (x - baseline) x the mean
   gradient. The notebook (Keras 2 on TensorFlow 1) took the gradient with ``K.gradients`` through a
   ``K.function``; Keras 3 has neither, and the plain TF2 translation is a ``tf.GradientTape`` run eagerly,
   which is what ``compiled=False`` (the default) does. ``compiled=True`` wraps the same single call in a
   ``tf.function`` (the closest thing to the TF1 graph) so the benchmark can show both.
2. **Regions** (``authors_regions``): |attributions| summed over channels, min-max normalised, then a
   per-pixel Python loop builds the point table (a (row, col, value) tuple appended to a list for every pixel
   whose normalised value is >= the sight sensitivity, then a ``pandas.DataFrame``), then
   ``scipy.cluster.hierarchy.fclusterdata(points, t=cluster_distance, criterion="distance", method="single")``
   on the (row, col) columns, singletons dropped, and a circle per cluster: centre = mean member,
   radius = farthest member from the centre + margin. ``fclusterdata`` builds the condensed distance matrix
   (n (n - 1) / 2 doubles): ``condensed_matrix_bytes`` says how much that is before anything runs.

Cluster distance and margin default to the authors' 10 px and 5 px at 224 px, scaled with the longer side
of the map (the library's defaults), so both sides of every comparison use the same parameters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import numpy as np
import pandas as pd
from scipy.cluster.hierarchy import fclusterdata

MEMORY_BUDGET_BYTES = 2 * 1024 ** 3  # the baseline runs only where its distance matrix fits 2 GiB
CLUSTER_DISTANCE_AT_224 = 10.0
MARGIN_AT_224 = 5.0


# --------------------------------------------------------------------------------------------- integrated gradients
def interpolated_batch(x: np.ndarray, baseline: np.ndarray, steps: int) -> np.ndarray:
    """The notebook's batch: ``baseline + (k / steps) * (x - baseline)`` for k = 0..steps-1, stacked (steps, ...)."""
    return np.stack([baseline + (k / steps) * (x - baseline) for k in range(steps)]).astype(x.dtype, copy=False)


def _gradient_function(model: Any, n_inputs: int, output_index: int, compiled: bool):
    import tensorflow as tf

    def gradient(batch):
        with tf.GradientTape() as tape:
            tape.watch(batch)
            out = model(batch[0] if n_inputs == 1 else list(batch), training=False)
            total = tf.reduce_sum(tf.reshape(out, [tf.shape(out)[0], -1])[:, output_index])
        return tape.gradient(total, batch)

    return tf.function(gradient) if compiled else gradient


_COMPILED: dict[tuple[int, int, int], Any] = {}


def authors_integrated_gradients(model: Any, inputs: np.ndarray | Sequence[np.ndarray], *,
                                 baseline: np.ndarray | Sequence[np.ndarray] | None = None, steps: int = 50,
                                 output_index: int = 0, compiled: bool = False) -> np.ndarray | list[np.ndarray]:
    """Left-Riemann IG of one example, one gradient call on the whole (steps, ...) batch.

    `inputs`: one example without its batch dim, or a list of them for a multi-input model (then a list of
    attributions comes back, one per input). TensorFlow backend only, like the notebook.
    """
    import keras
    import tensorflow as tf

    if keras.backend.backend() != "tensorflow":
        raise RuntimeError("the authors' baseline takes its gradients with tf.GradientTape: KERAS_BACKEND=tensorflow")
    single = not isinstance(inputs, (list, tuple))
    xs = [np.asarray(inputs, dtype="float32")] if single else [np.asarray(a, dtype="float32") for a in inputs]
    if baseline is None:
        bs = [np.zeros_like(x) for x in xs]
    else:
        bs = [np.asarray(baseline, dtype="float32")] if single else [np.asarray(b, dtype="float32") for b in baseline]
    batches = [tf.constant(interpolated_batch(x, b, steps)) for x, b in zip(xs, bs)]
    if compiled:
        key = (id(model), len(xs), output_index)
        if key not in _COMPILED:
            _COMPILED[key] = _gradient_function(model, len(xs), output_index, True)
        gradient = _COMPILED[key]
    else:
        gradient = _gradient_function(model, len(xs), output_index, False)
    grads = gradient(batches)
    attributions = [(x - b) * np.mean(g.numpy(), axis=0) for x, b, g in zip(xs, bs, grads)]
    return attributions[0] if single else attributions


# --------------------------------------------------------------------------------------------- regions
def condensed_matrix_bytes(n: int) -> int:
    """Bytes of the float64 condensed distance matrix that ``fclusterdata`` builds for n points."""
    return n * (n - 1) // 2 * 8


def fits_budget(n: int, budget: int = MEMORY_BUDGET_BYTES) -> bool:
    return condensed_matrix_bytes(n) <= budget


def normalised_map(attribution_map: np.ndarray) -> np.ndarray:
    """|attributions| summed over a trailing channel axis, min-max normalised (as the notebook did)."""
    a = np.abs(np.asarray(attribution_map, dtype=np.float64))
    if a.ndim == 3:
        a = a.sum(axis=2)
    lo, hi = a.min(), a.max()
    if not hi > lo:
        return np.zeros_like(a)  # a constant map holds no signal (the library returns no regions either)
    return (a - lo) / (hi - lo)


def authors_point_table(attribution_map: np.ndarray, sight_sensitivity: float = 0.70) -> pd.DataFrame:
    """The notebook's point table: a Python loop over every pixel, (row, col, value) of those >= the threshold."""
    norm = normalised_map(attribution_map)
    if not norm.any():
        return pd.DataFrame(columns=["row", "col", "value"])
    height, width = norm.shape
    points = []
    for row in range(height):
        for col in range(width):
            value = norm[row, col]
            if value >= sight_sensitivity:
                points.append((row, col, value))
    return pd.DataFrame(points, columns=["row", "col", "value"])


@dataclass(eq=False)
class AuthorsRegion:
    center: tuple[float, float]
    radius: float
    pixels: int
    members: np.ndarray  # (pixels, 2) int (row, col), in the table's (row-major) order


def authors_labels(points: np.ndarray, cluster_distance: float) -> np.ndarray:
    """fclusterdata's single-linkage labels (1..k); 0 or 1 point(s) need no clustering."""
    if len(points) < 2:
        return np.ones(len(points), dtype=np.int64)
    return fclusterdata(np.asarray(points, dtype=np.float64), t=cluster_distance, criterion="distance", method="single")


def authors_circles(points: np.ndarray, labels: np.ndarray, margin: float) -> list[AuthorsRegion]:
    """The notebook's circles: per cluster of >= 2 points, centre = mean member, radius = farthest member + margin."""
    regions = []
    table = pd.DataFrame({"row": points[:, 0], "col": points[:, 1], "label": labels})
    for _, group in table.groupby("label", sort=True):
        if len(group) < 2:
            continue
        members = group[["row", "col"]].to_numpy()
        centre = members.mean(axis=0)
        radius = float(np.sqrt(((members - centre) ** 2).sum(axis=1)).max())
        regions.append(AuthorsRegion((float(centre[0]), float(centre[1])), radius + margin, len(members), members))
    return regions


def authors_regions(attribution_map: np.ndarray, sight_sensitivity: float = 0.70, cluster_distance: float | None = None,
                    margin: float | None = None, *, return_table: bool = False):
    """Threshold, point table, fclusterdata, singletons dropped, circles. Regions in label order.

    With `return_table`, also the point table and the fclusterdata labels (one per table row).
    """
    side = max(np.shape(attribution_map)[:2])
    cut = CLUSTER_DISTANCE_AT_224 * side / 224 if cluster_distance is None else cluster_distance
    pad = MARGIN_AT_224 * side / 224 if margin is None else margin
    table = authors_point_table(attribution_map, sight_sensitivity)
    points = table[["row", "col"]].to_numpy(dtype=np.int64)
    labels = authors_labels(points, cut)
    regions = authors_circles(points, labels, pad)
    return (regions, table, labels) if return_table else regions


# --------------------------------------------------------------------------------------------- comparison
def same_partition(a: Sequence, b: Sequence) -> bool:
    """Equal up to a permutation of labels: the pairs (a_i, b_i) form a bijection."""
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape:
        return False
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def region_labels(regions: Sequence[Any], points: np.ndarray, width: int) -> np.ndarray:
    """One label per point (row-major (n, 2) array): the index of the region holding it, or a unique negative
    label for points in no region (the dropped singletons)."""
    flat = points[:, 0].astype(np.int64) * width + points[:, 1]
    order = np.argsort(flat, kind="stable")
    labels = -1 - np.arange(len(points), dtype=np.int64)
    for k, region in enumerate(regions):
        members = np.asarray(region.members, dtype=np.int64)
        pos = order[np.searchsorted(flat[order], members[:, 0] * width + members[:, 1])]
        labels[pos] = k
    return labels


def compare_regions(fast: Sequence[Any], reference: Sequence[Any], points: np.ndarray, width: int,
                    atol: float = 1e-9) -> dict[str, Any]:
    """Do two region lists hold the same clusters (up to order) with the same circles? Returns the evidence."""
    la, lb = region_labels(fast, points, width), region_labels(reference, points, width)
    partition = same_partition(la, lb)
    circles = partition and len(fast) == len(reference)
    worst = 0.0
    if circles:
        match = {}
        for a_label, b_label in zip(la.tolist(), lb.tolist()):
            if a_label >= 0:
                match[a_label] = b_label
        for k, region in enumerate(fast):
            other = reference[match[k]]
            worst = max(worst, abs(region.radius - other.radius), abs(region.center[0] - other.center[0]),
                        abs(region.center[1] - other.center[1]))
            if region.pixels != other.pixels:
                circles = False
        circles = circles and worst <= atol
    return {"same_partition": bool(partition), "same_circles": bool(circles), "regions": len(fast),
            "reference_regions": len(reference), "max_circle_difference": float(worst)}


def max_relative_difference(a: np.ndarray, b: np.ndarray) -> float:
    """max |a - b| / max |b|: the attribution agreement the benchmarks require (about 1e-5)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    scale = float(np.abs(b).max())
    return float(np.abs(a - b).max() / scale) if scale > 0 else float(np.abs(a - b).max())


def human_bytes(n: float) -> str:
    for unit, size in (("GiB", 1024 ** 3), ("MiB", 1024 ** 2), ("KiB", 1024)):
        if n >= size:
            return f"{n / size:.1f} {unit}"
    return f"{int(n)} B"


__all__ = ["MEMORY_BUDGET_BYTES", "interpolated_batch", "authors_integrated_gradients", "condensed_matrix_bytes",
           "fits_budget", "normalised_map", "authors_point_table", "AuthorsRegion", "authors_labels",
           "authors_circles", "authors_regions", "same_partition", "region_labels", "compare_regions", "max_relative_difference",
           "human_bytes"]
