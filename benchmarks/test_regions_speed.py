"""Region extraction (sight sensitivity -> single linkage -> circles): the library against the authors' baseline.

Run: .venv/bin/python -m pytest benchmarks/test_regions_speed.py --benchmark-only
(the whole suite and the report: see docs/PERFORMANCE.md).

Maps: ``attribution_map(side, signal_fraction, seed)`` below, 224^2, 512^2 and 1024^2, at sight sensitivities
0.5, 0.7 and 0.9. The baseline (``baseline_authors.authors_regions``: per-pixel Python loop, pandas table,
``fclusterdata``) runs only where its condensed distance matrix fits ``MEMORY_BUDGET_BYTES`` (2 GiB); elsewhere
it is skipped with the memory it would need, and the library case records that number. Every library case
is checked inside the run: against the baseline's regions where the baseline ran (same clusters up to label
order, same circles to 1e-9 px), else against an independent O(n log n) reference written here
(``delaunay_regions``: Delaunay edges within the cut + connected components), so a faster wrong answer fails.
"""

from __future__ import annotations

import time
import tracemalloc
from functools import lru_cache

import numpy as np
import pytest
from scipy import ndimage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import Delaunay, QhullError, cKDTree
from scipy.special import ndtr

from baseline_authors import (
    MEMORY_BUDGET_BYTES,
    authors_circles,
    authors_labels,
    authors_point_table,
    authors_regions,
    compare_regions,
    condensed_matrix_bytes,
    fits_budget,
    human_bytes,
    normalised_map,
)
from replication.explain import cluster_regions, sight_sensitivity_mask
from replication.explain.regions import default_cluster_distance, default_margin, single_linkage_labels

SIDES = (224, 512, 1024)
SENSITIVITIES = (0.5, 0.7, 0.9)
SIGNAL_FRACTION = 0.15  # fraction of the map inside the blobs' half-maximum discs
BACKGROUND = 0.52  # peak of the background speckle, relative to a saturated blob
SEED = 2019
SIDE_PARAMS = [pytest.param(side, marks=pytest.mark.benchmark(group=f"regions-{side}px"), id=f"{side}px") for side in SIDES]
MEMORY_FRACTIONS = (0.02, 0.05, 0.10, 0.20, 0.30)  # signal fractions of the 1024^2 maps of the memory case


# --------------------------------------------------------------------------------------------- maps
def attribution_map(side: int, signal_fraction: float = SIGNAL_FRACTION, seed: int = SEED,
                    background: float = BACKGROUND) -> np.ndarray:
    """A realistic (H, W) attribution magnitude map: speckled blobs on a speckled background, seeded.

    IG maps of an image model are spatially correlated speckle (|gradient x input|) concentrated where the
    model looks. So: Gaussian blobs (sigma 4-10 px at 224, scaled with the side, peaks 0.8-1.0, combined as
    a soft union 1 - prod(1 - blob) so overlaps saturate at 1) are added until their half-maximum discs
    cover `signal_fraction` of the map; inside them the value is envelope x (0.55 + 0.45 u), u smoothed
    uniform noise (sigma 1 px at 224), so thresholds keep speckled clumps, not whole discs; outside, a
    background speckle up to `background` (0.52), which only the lowest sight sensitivity (0.5) picks up,
    in scattered false-positive specks. Same (side, signal_fraction, seed): the same map.
    """
    rng = np.random.default_rng(seed)
    scale = side / 224

    def smooth_uniform(sigma: float) -> np.ndarray:
        z = ndimage.gaussian_filter(rng.standard_normal((side, side)), sigma)
        return ndtr(z / z.std())  # uniform on [0, 1], spatially correlated

    u, v = smooth_uniform(1.0 * scale), smooth_uniform(1.5 * scale)
    miss = np.ones((side, side))
    core = np.zeros((side, side), dtype=bool)
    yy, xx = np.ogrid[:side, :side]
    covered, target = 0, signal_fraction * side * side
    while covered < target:
        sigma = rng.uniform(4.0, 10.0) * scale
        r, c = rng.uniform(0, side, 2)
        height = rng.uniform(0.8, 1.0)
        half = sigma * np.sqrt(2 * np.log(2))
        r0, r1 = int(max(0, r - 4 * sigma)), int(min(side, r + 4 * sigma + 1))
        c0, c1 = int(max(0, c - 4 * sigma)), int(min(side, c + 4 * sigma + 1))
        d2 = (yy[r0:r1] - r) ** 2 + (xx[:, c0:c1] - c) ** 2
        miss[r0:r1, c0:c1] *= 1 - height * np.exp(-d2 / (2 * sigma * sigma))
        before = int(core[r0:r1, c0:c1].sum())
        core[r0:r1, c0:c1] |= d2 <= half * half
        covered += int(core[r0:r1, c0:c1].sum()) - before
    envelope = 1 - miss
    return envelope * (0.55 + 0.45 * u) + background * v * (1 - envelope)


@lru_cache(maxsize=None)
def _map(side: int, signal_fraction: float = SIGNAL_FRACTION) -> np.ndarray:
    a = attribution_map(side, signal_fraction, seed=SEED + side)
    a.setflags(write=False)
    return a


def _points(side: int, sight: float) -> np.ndarray:
    return np.argwhere(sight_sensitivity_mask(_map(side), sight))


# --------------------------------------------------------------------------------------------- independent reference
def delaunay_regions(attribution_map_: np.ndarray, sight: float):
    """Where the baseline does not fit: the same regions computed another way, in O(n log n).

    Single-linkage clusters at cut t are the connected components of the Euclidean minimum spanning tree's
    edges <= t, and a chain of links <= t between any two points at distance <= t runs along Delaunay edges
    (a pair with an empty closed diametral disc is an edge of every Delaunay triangulation; otherwise a point
    on that disc splits it into two shorter links). With t >= sqrt(2), 8-connected components are whole
    clusters, and the closest pair of two components lies on their boundary pixels (an interior pixel's
    neighbour towards the other point is nearer). So: 8-connected components, Delaunay triangulation of the
    boundary pixels, edges <= t (compared as sqrt of the squared integer distance, as pdist does), connected
    components of the components, then the baseline's own circle code. Thresholding uses the baseline's
    normalisation. Shares no code with the library's raster sweep.
    """
    mask = normalised_map(attribution_map_) >= sight
    cut, margin = default_cluster_distance(attribution_map_.shape), default_margin(attribution_map_.shape)
    if cut < np.sqrt(2):
        raise ValueError("this reference needs a cut >= sqrt(2) px")
    eight = np.ones((3, 3), dtype=bool)
    components, count = ndimage.label(mask, structure=eight)
    boundary = np.argwhere(mask & ~ndimage.binary_erosion(mask, structure=eight))
    owner = components[boundary[:, 0], boundary[:, 1]] - 1
    try:
        simplices = Delaunay(boundary.astype(np.float64)).simplices
        edges = np.concatenate([simplices[:, [0, 1]], simplices[:, [1, 2]], simplices[:, [0, 2]]])
    except (QhullError, ValueError):  # fewer than 3 points, or all on one line: every pair, there are few
        edges = cKDTree(boundary).query_pairs(cut + 1, output_type="ndarray").reshape(-1, 2)
    d2 = ((boundary[edges[:, 0]] - boundary[edges[:, 1]]) ** 2).sum(axis=1).astype(np.float64)
    edges = edges[np.sqrt(d2) <= cut]
    graph = coo_matrix((np.ones(len(edges), dtype=np.int8), (owner[edges[:, 0]], owner[edges[:, 1]])),
                       shape=(count, count))
    cluster_of_component = connected_components(graph, directed=False)[1]
    points = np.argwhere(mask)
    labels = cluster_of_component[components[points[:, 0], points[:, 1]] - 1]
    return authors_circles(points, labels, margin)


_BASELINE: dict[tuple[int, float], list] = {}


def _info(benchmark, side: int, sight: float, n: int) -> None:
    need = condensed_matrix_bytes(n)
    benchmark.extra_info.update(side=side, sight_sensitivity=sight, signal_points=n, signal_fraction=SIGNAL_FRACTION,
                                cluster_distance=default_cluster_distance((side, side)),
                                baseline_matrix_bytes=need, baseline_fits=fits_budget(n),
                                memory_budget_bytes=MEMORY_BUDGET_BYTES)


# --------------------------------------------------------------------------------------------- speed
def _baseline_phases(side: int, sight: float) -> dict[str, float]:
    """Where the baseline's time goes, from one more (untimed by the benchmark) run split into its three steps."""
    a = _map(side)
    cut, margin = default_cluster_distance(a.shape), default_margin(a.shape)
    t0 = time.perf_counter()
    table = authors_point_table(a, sight)  # the per-pixel Python loop and the DataFrame
    t1 = time.perf_counter()
    points = table[["row", "col"]].to_numpy(dtype=np.int64)
    labels = authors_labels(points, cut)  # fclusterdata: condensed distance matrix + single linkage
    t2 = time.perf_counter()
    authors_circles(points, labels, margin)  # pandas groupby over every cluster, singletons included
    t3 = time.perf_counter()
    return {"point_table_s": round(t1 - t0, 6), "fclusterdata_s": round(t2 - t1, 6), "circles_s": round(t3 - t2, 6),
            "clusters_with_singletons": int(len(np.unique(labels)))}


@pytest.mark.parametrize("side", SIDE_PARAMS)
@pytest.mark.parametrize("sight", SENSITIVITIES)
def test_regions_baseline(benchmark, side: int, sight: float) -> None:
    """The authors' per-pixel loop + fclusterdata, where its n (n - 1) / 2 distance matrix fits 2 GiB."""
    n = len(_points(side, sight))
    _info(benchmark, side, sight, n)
    if not fits_budget(n):
        pytest.skip(f"baseline not run: fclusterdata's condensed distance matrix for n={n} points needs "
                    f"{human_bytes(condensed_matrix_bytes(n))} > the {human_bytes(MEMORY_BUDGET_BYTES)} budget")
    rounds = 3 if n < 4000 and side < 1024 else 1
    regions = benchmark.pedantic(authors_regions, args=(_map(side), sight), rounds=rounds, iterations=1,
                                 warmup_rounds=1 if rounds > 1 else 0)
    _BASELINE[(side, sight)] = regions
    benchmark.extra_info.update(implementation="baseline", regions=len(regions), phases=_baseline_phases(side, sight))


@pytest.mark.parametrize("side", SIDE_PARAMS)
@pytest.mark.parametrize("sight", SENSITIVITIES)
def test_regions_library(benchmark, side: int, sight: float) -> None:
    """cluster_regions on the same map; equivalence checked against the baseline (or the k-d tree reference)."""
    a = _map(side)
    points = _points(side, sight)
    n = len(points)
    _info(benchmark, side, sight, n)
    regions = benchmark(cluster_regions, a, sight)
    if fits_budget(n):
        reference = _BASELINE.get((side, sight))
        if reference is None:  # the baseline case was deselected: run it once, untimed
            reference = authors_regions(a, sight)
        checked = "baseline (fclusterdata)"
    else:
        reference = delaunay_regions(a, sight)
        checked = (f"Delaunay single-linkage reference (the baseline would need "
                   f"{human_bytes(condensed_matrix_bytes(n))})")
    evidence = compare_regions(regions, reference, points, side)
    seconds = benchmark.stats.stats.min
    benchmark.extra_info.update(implementation="library", checked_against=checked,
                                ms_per_map=round(seconds * 1e3, 3), points_per_s=round(n / seconds),
                                **evidence)
    assert evidence["same_partition"] and evidence["same_circles"], evidence


# --------------------------------------------------------------------------------------------- memory
def _peak_bytes(fn, *args) -> int:
    tracemalloc.start()
    try:
        fn(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


@pytest.mark.benchmark(group="regions-memory")
def test_regions_memory_linear_in_points(benchmark) -> None:
    """Peak traced memory of cluster_regions on 1024^2 maps with more and more signal pixels (tracemalloc).

    Fit peak = a + b n: b is bytes per signal pixel, a the map-sized working arrays (a float64 copy of the map,
    its normalised copy, the mask, the raster sweep's prefix counts over the points' bounding box). Also the
    clustering alone (``single_linkage_labels`` on the points), whose peak has no map-sized term.
    """
    side, sight = 1024, 0.7
    maps = [attribution_map(side, f, seed=SEED + 7) for f in MEMORY_FRACTIONS]

    def measure():
        rows = []
        for f, a in zip(MEMORY_FRACTIONS, maps):
            points = np.argwhere(sight_sensitivity_mask(a, sight))
            rows.append({"signal_fraction": f, "n": len(points), "peak_bytes": _peak_bytes(cluster_regions, a, sight),
                         "clustering_peak_bytes": _peak_bytes(single_linkage_labels, points,
                                                              default_cluster_distance(a.shape)),
                         "baseline_matrix_bytes": condensed_matrix_bytes(len(points))})
        return rows

    rows = benchmark.pedantic(measure, rounds=1, iterations=1)
    n = np.array([r["n"] for r in rows], dtype=float)
    fits = {}
    for key in ("peak_bytes", "clustering_peak_bytes"):
        y = np.array([r[key] for r in rows], dtype=float)
        slope, intercept = np.polyfit(n, y, 1)
        residual = y - (slope * n + intercept)
        r2 = 1 - float(residual @ residual) / float(((y - y.mean()) ** 2).sum())
        quad = np.polyfit(n, y, 2)[0]  # the n^2 coefficient a quadratic fit would need
        fits[key] = {"bytes_per_point": round(float(slope), 1), "intercept_bytes": round(float(intercept)),
                     "r2": round(r2, 5), "quadratic_coefficient": float(quad),
                     "max_relative_residual": round(float(np.abs(residual / y).max()), 4)}
    for r in rows:
        r["bytes_per_point"] = round(r["peak_bytes"] / r["n"], 1)
        r["clustering_bytes_per_point"] = round(r["clustering_peak_bytes"] / r["n"], 1)
    benchmark.extra_info.update(side=side, sight_sensitivity=sight, map_bytes=side * side * 8, rows=rows, fits=fits)
    assert all(r["n"] > 0 for r in rows)
