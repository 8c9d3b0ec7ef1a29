"""Sight sensitivity and single-linkage regions: exact agreement with scipy, defaults, scaling, edge cases."""

from __future__ import annotations

import time
import warnings

import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from scipy import ndimage
from scipy.cluster.hierarchy import fcluster, linkage
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree
from scipy.spatial.distance import pdist

from replication.errors import ParameterError
from replication.explain import cluster_regions, sight_sensitivity_mask
from replication.explain.regions import (
    _grid_labels,
    _tree_labels,
    default_cluster_distance,
    default_margin,
    reduce_channels,
    single_linkage_labels,
)


def same_partition(a, b) -> bool:
    """Equal up to a permutation of labels: the pairs (a_i, b_i) form a bijection."""
    a, b = np.asarray(a), np.asarray(b)
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def scipy_labels(points, t):
    points = np.asarray(points, dtype=float)
    if len(points) == 1:
        return np.array([1])
    return fcluster(linkage(pdist(points), "single"), t, criterion="distance")  # = linkage(points, ...), no 2x2 warning


grid_points = st.lists(st.tuples(st.integers(0, 14), st.integers(0, 14)), min_size=1, max_size=45)
float_points = st.lists(st.tuples(st.floats(-50, 50, allow_nan=False), st.floats(-50, 50, allow_nan=False)), min_size=2, max_size=40)
cuts = st.sampled_from([0.0, 1.0, np.sqrt(2), 2.0, np.sqrt(5), 2.5, 3.0, np.sqrt(8), 4.0, 5.0, 7.3])


# --------------------------------------------------------------------------------------------- single linkage
@settings(max_examples=300, deadline=None)
@given(grid_points, cuts)
def test_integer_points_match_scipy_single_linkage(points, t):
    """Integer grids: duplicates, collinear runs and exact ties (3-4-5, sqrt 2, sqrt 5...) are everywhere."""
    ref = scipy_labels(points, t)
    assert same_partition(single_linkage_labels(np.array(points), t), ref)
    assert same_partition(_grid_labels(np.array(points), t), ref)  # the raster sweep
    assert same_partition(_tree_labels(np.array(points, float), t), ref)  # the k-d tree path


@settings(max_examples=200, deadline=None)
@given(float_points, st.data())
def test_float_points_match_scipy_with_the_cut_at_an_existing_distance(points, data):
    p = np.array(points)
    d = pdist(p)
    t = float(data.draw(st.sampled_from(sorted(set(d.tolist())))))  # a tie at exactly the cut, by construction
    assert same_partition(single_linkage_labels(p, t), scipy_labels(p, t))


@settings(max_examples=100, deadline=None)
@given(st.integers(2, 30), st.integers(1, 4), st.integers(-3, 3), st.integers(0, 6))
def test_collinear_points_on_a_slope(n, step, slope, shift):
    """Points on a line with equal spacing: a cut at exactly that spacing chains them all, a hair below splits all."""
    points = np.array([(k * step, k * step * slope + shift) for k in range(n)])
    spacing = float(np.sqrt(step ** 2 + (step * slope) ** 2))
    assert len(set(single_linkage_labels(points, spacing).tolist())) == 1
    assert len(set(single_linkage_labels(points, np.nextafter(spacing, 0)).tolist())) == n
    assert same_partition(single_linkage_labels(points, spacing), scipy_labels(points, spacing))


def test_ties_at_exactly_the_cut_merge_like_scipy():
    points = np.array([(0, 0), (3, 4), (10, 0), (10, 5), (0, 20), (0, 20)])
    assert same_partition(single_linkage_labels(points, 5.0), [0, 0, 1, 1, 2, 2])
    assert same_partition(single_linkage_labels(points, 4.999999), [0, 1, 2, 3, 4, 4])
    assert same_partition(scipy_labels(points, 5.0), [0, 0, 1, 1, 2, 2])
    assert single_linkage_labels(np.zeros((0, 2)), 3).shape == (0,)
    assert single_linkage_labels(np.array([[4, 4]]), 3).tolist() == [0]


def test_negative_or_nan_distance_is_named():
    for bad in (-1.0, float("nan"), "far"):
        with pytest.raises(ParameterError) as err:
            single_linkage_labels(np.array([[0, 0], [1, 1]]), bad)
        assert err.value.name == "cluster_distance"
        with pytest.raises(ParameterError) as err:
            cluster_regions(np.eye(8), cluster_distance=bad)
        assert err.value.name == "cluster_distance"


# --------------------------------------------------------------------------------------------- thresholds
def test_sight_sensitivity_threshold_and_channels():
    a = np.zeros((4, 4, 3))
    a[0, 0] = [1.0, -1.0, 0.0]  # |.| summed: 2.0  (plain sum: 0.0)
    a[1, 1] = [0.7, 0.0, 0.0]
    a[2, 2] = [-1.4, 0.0, 0.0]  # 1.4 -> 0.7 normalised: kept at exactly 0.70
    mask = sight_sensitivity_mask(a, 0.70)
    assert mask.tolist() == (np.array([[1, 0, 0, 0], [0, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 0]]) == 1).tolist()
    signed = reduce_channels(a, "sum")
    assert signed[0, 0] == 0.0 and signed[2, 2] == -1.4
    assert sight_sensitivity_mask(a, 0.9, channel_reduce="sum")[1, 1]  # the positive one is the maximum then
    assert sight_sensitivity_mask(a, 1.0).sum() == 1  # the maximum normalises to exactly 1.0
    with pytest.raises(ParameterError) as err:
        sight_sensitivity_mask(a, channel_reduce="max")
    assert err.value.name == "channel_reduce"


@pytest.mark.parametrize("bad", [-0.1, 1.01, float("nan")])
def test_threshold_outside_unit_interval_is_named(bad):
    with pytest.raises(ParameterError) as err:
        sight_sensitivity_mask(np.eye(5), bad)
    assert err.value.name == "sight_sensitivity"
    with pytest.raises(ParameterError) as err:
        cluster_regions(np.eye(5), bad)
    assert err.value.name == "sight_sensitivity"


def test_constant_maps_have_no_signal_and_no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for m in (np.zeros((32, 32)), np.full((32, 32, 3), 0.25), -np.ones((10, 12))):
            for t in (0.0, 0.7, 1.0):
                assert not sight_sensitivity_mask(m, t).any()
                assert cluster_regions(m, t) == []


def test_nan_and_bad_maps_are_errors():
    m = np.ones((8, 8))
    m[3, 3] = np.nan
    for fn in (sight_sensitivity_mask, cluster_regions):
        with pytest.raises(ParameterError, match="NaN") as err:
            fn(m)
        assert err.value.name == "attribution_map"
    with pytest.raises(ParameterError) as err:
        cluster_regions(np.ones(5))
    assert err.value.name == "attribution_map"
    for kwargs, name in [({"margin": -1}, "margin"), ({"min_cluster_size": 0}, "min_cluster_size")]:
        with pytest.raises(ParameterError) as err:
            cluster_regions(np.eye(8), **kwargs)
        assert err.value.name == name


# --------------------------------------------------------------------------------------------- regions
def blob_map(side: int, blobs, noise: float = 0.0, seed: int = 0) -> np.ndarray:
    yy, xx = np.mgrid[:side, :side]
    a = np.zeros((side, side))
    for (r, c, s, h) in blobs:
        a += h * np.exp(-((yy - r) ** 2 + (xx - c) ** 2) / (2 * s * s))
    if noise:
        a += noise * ndimage.gaussian_filter(np.random.default_rng(seed).standard_normal((side, side)), 2)
    return a


def test_defaults_at_224_and_scaling_at_448():
    assert default_cluster_distance((224, 224)) == 10.0 and default_margin((224, 224)) == 5.0
    assert default_cluster_distance((448, 448, 3)) == 20.0 and default_margin((448, 448)) == 10.0
    # two pixel pairs 10 px apart merge at 224 (<= 10), 11 px apart do not
    for gap, clusters in ((10, 1), (11, 2)):
        a = np.zeros((224, 224))
        a[100, 50:52] = 1.0
        a[100, 51 + gap: 53 + gap] = 1.0
        regions = cluster_regions(a)
        assert len(regions) == clusters, gap
    a = np.zeros((224, 224))
    a[100, 50:52] = 1.0
    (r,) = cluster_regions(a)
    assert r.center == (100.0, 50.5) and r.radius == pytest.approx(0.5 + 5.0) and r.pixels == 2
    # the same picture at 448: distances and margin double with the image
    big = np.kron(np.where(np.arange(224)[None, :] % 40 < 2, 1.0, 0.0) * (np.arange(224)[:, None] == 100), np.ones((2, 2)))
    small = np.where(np.arange(224)[None, :] % 40 < 2, 1.0, 0.0) * (np.arange(224)[:, None] == 100)
    assert len(cluster_regions(small)) == len(cluster_regions(big)) == 6
    a448 = np.zeros((448, 448))
    a448[200, 100:102] = 1.0
    a448[200, 120:122] = 1.0  # 19 px apart: one cluster at 448 (cut 20), two at 224 scale (cut 10)
    assert len(cluster_regions(a448)) == 1 and len(cluster_regions(a448, cluster_distance=10)) == 2
    (r,) = cluster_regions(a448)
    assert r.radius == pytest.approx(10.5 + 10.0)


def test_threshold_default_is_070_and_regions_sorted_by_mass():
    a = np.zeros((64, 64))
    a[10:14, 10:14] = 1.0  # 16 px at 1.0
    a[40:42, 40:43] = 0.9  # 6 px at 0.9
    a[50, 10:12] = 0.69  # below 0.70: not signal
    a[30, 30] = 1.0  # a singleton: dropped
    regions = cluster_regions(a, cluster_distance=3)
    assert [r.pixels for r in regions] == [16, 6]
    assert regions[0].mass == pytest.approx(16.0) and regions[1].mass == pytest.approx(5.4)
    assert regions[0].center == (11.5, 11.5) and regions[0].peak == 1.0
    assert regions[0].radius == pytest.approx(np.hypot(1.5, 1.5) + 5 * 64 / 224)
    assert len(cluster_regions(a, cluster_distance=3, min_cluster_size=1)) == 3
    assert len(cluster_regions(a, 0.68, cluster_distance=3)) == 3
    assert sorted(map(tuple, regions[1].members.tolist())) == [(r, c) for r in (40, 41) for c in (40, 41, 42)]


def test_cluster_regions_equal_connected_components_at_grid_distances():
    a = blob_map(96, [(20, 20, 4, 1.0), (60, 70, 6, 0.9), (80, 15, 3, 0.8)], noise=0.15)
    mask = sight_sensitivity_mask(a, 0.5)
    for cut, structure in ((1.0, None), (1.5, np.ones((3, 3)))):
        labels, count = ndimage.label(mask, structure=structure)
        sizes = np.bincount(labels.ravel())[1:]
        regions = cluster_regions(a, 0.5, cluster_distance=cut, margin=0)
        assert sorted(r.pixels for r in regions) == sorted(s for s in sizes if s >= 2)


def test_large_map_clusters_correctly():
    """1024^2, ~50,000 signal pixels (smoothed noise + blobs): checked against connected components."""
    side = 1024
    rng = np.random.default_rng(7)
    centres = [(150, 150), (150, 500), (150, 850), (500, 150), (500, 500), (500, 850), (850, 150), (850, 500), (850, 850)]
    a = blob_map(side, [(r, c, rng.uniform(28, 40), 1.0) for r, c in centres])
    noise = ndimage.gaussian_filter(rng.standard_normal((side, side)), 6)
    a += 0.3 * noise / noise.std()
    threshold = 0.35
    mask = sight_sensitivity_mask(a, threshold)
    n = int(mask.sum())
    start = time.perf_counter()
    regions = cluster_regions(a, threshold, min_cluster_size=1, margin=0)
    elapsed = time.perf_counter() - start
    cut = default_cluster_distance(a.shape)
    print(f"\n1024x1024 map, {n} signal pixels, cut {cut:.2f} px: {len(regions)} clusters in {elapsed:.3f} s")
    assert 35_000 <= n <= 70_000
    assert sum(r.pixels for r in regions) == n
    label_of = np.full(a.shape, -1)
    for k, r in enumerate(regions):
        label_of[r.members[:, 0], r.members[:, 1]] = k
    # 8-connected components are never split (they are chains of distance <= sqrt 2 < cut) ...
    cc, count = ndimage.label(mask, structure=np.ones((3, 3)))
    per_component = ndimage.labeled_comprehension(label_of, cc, np.arange(1, count + 1), lambda v: len(np.unique(v)), int, 0)
    assert np.all(per_component == 1)
    # ... and two components share a cluster exactly when chains of components within the cut join them. The
    # closest pair of two components lies on their boundaries, so an independent check needs only boundary pixels.
    edge = mask & ~ndimage.binary_erosion(mask, structure=np.ones((3, 3)))
    boundary = np.argwhere(edge)
    pairs = cKDTree(boundary).query_pairs(cut, output_type="ndarray")
    la, lb = cc[boundary[pairs[:, 0], 0], boundary[pairs[:, 0], 1]], cc[boundary[pairs[:, 1], 0], boundary[pairs[:, 1], 1]]
    graph = coo_matrix((np.ones(len(la)), (la - 1, lb - 1)), shape=(count, count))
    expected_count, component_cluster = connected_components(graph, directed=False)
    points = np.argwhere(mask)
    assert len(regions) == expected_count
    assert same_partition(label_of[points[:, 0], points[:, 1]], component_cluster[cc[points[:, 0], points[:, 1]] - 1])
    # and the raster sweep equals the k-d tree path on the same 50,000 points at a smaller cut
    assert same_partition(single_linkage_labels(points, 4.0), _tree_labels(points.astype(float), 4.0))


def test_224_map_is_fast_and_deterministic():
    a = blob_map(224, [(50, 60, 8, 1.0), (150, 160, 10, 0.95), (180, 40, 5, 0.9)], noise=0.2, seed=3)
    start = time.perf_counter()
    first = cluster_regions(a)
    elapsed = time.perf_counter() - start
    print(f"\n224x224 map: {int(sight_sensitivity_mask(a).sum())} signal pixels, {len(first)} regions in {elapsed * 1e3:.1f} ms")
    second = cluster_regions(a)
    assert [(r.center, r.radius, r.pixels) for r in first] == [(r.center, r.radius, r.pixels) for r in second]
    assert all(a.mass >= b.mass for a, b in zip(first, first[1:]))
