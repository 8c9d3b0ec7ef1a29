"""The benchmarks' reference implementation of the authors' algorithm, their map generator and report.py.

The benchmark suite's verdicts are only as good as its baseline: these tests pin the baseline to the
authors' formulas (left-Riemann IG from one gradient call, per-pixel table, fclusterdata, circles) and to
the library's answers on small inputs, and check that report.py turns benchmark JSON into the tables.
"""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
sys.path.insert(0, str(BENCHMARKS))

import baseline_authors as ba  # noqa: E402
import report  # noqa: E402

from replication.explain import cluster_regions  # noqa: E402
from replication.explain.regions import default_cluster_distance  # noqa: E402


def _load(name: str, path: Path):
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def regions_bench():
    return _load("_bench_regions_speed", BENCHMARKS / "test_regions_speed.py")


# --------------------------------------------------------------------------------------------- IG baseline
def test_interpolated_batch_is_the_left_riemann_path():
    x, b = np.array([2.0, -4.0], "float32"), np.array([1.0, 0.0], "float32")
    batch = ba.interpolated_batch(x, b, 4)
    assert batch.shape == (4, 2) and batch.dtype == np.float32
    assert np.allclose(batch, [[1, 0], [1.25, -1], [1.5, -2], [1.75, -3]])  # k = 0..3: never x itself


@pytest.fixture(scope="module")
def keras():
    keras = pytest.importorskip("keras")
    if keras.backend.backend() != "tensorflow":
        pytest.skip("the authors' baseline takes tf.GradientTape gradients")
    return keras


def test_authors_ig_closed_form_and_library_agreement(keras):
    from replication.explain import integrated_gradients

    w = np.array([1.0, 2.0, -1.5, 0.5], "float32")
    x_in = keras.Input((4,))
    squares = keras.Model(x_in, keras.layers.Lambda(lambda t: keras.ops.sum(w * t * t, axis=-1, keepdims=True))(x_in))
    x = np.array([0.5, -1.0, 2.0, 3.0], "float32")
    for m in (1, 4, 10):  # left Riemann on F = sum w x^2 from 0: w x^2 (m - 1) / m exactly
        ours = ba.authors_integrated_gradients(squares, x, steps=m)
        assert np.allclose(ours, w * x * x * (m - 1) / m, rtol=1e-6, atol=1e-6), m
    keras.utils.set_random_seed(0)
    inp = keras.Input((6,))
    h = keras.layers.Dense(5, activation="tanh")(inp)
    net = keras.Model(inp, keras.layers.Dense(1, activation="sigmoid")(h))
    v = np.random.default_rng(0).normal(size=6).astype("float32")
    base = np.full(6, 0.1, "float32")
    eager = ba.authors_integrated_gradients(net, v, baseline=base, steps=16)
    compiled = ba.authors_integrated_gradients(net, v, baseline=base, steps=16, compiled=True)
    library = integrated_gradients(net, v[None], baseline=base, steps=16, rule="riemann_left", batch_size=5).attribution[0]
    assert ba.max_relative_difference(compiled, eager) <= 1e-6
    assert ba.max_relative_difference(library, eager) <= 1e-5


def test_authors_ig_multi_input(keras):
    from replication.explain import integrated_gradients

    a, b = keras.Input((3,)), keras.Input((2,))
    joined = keras.layers.Concatenate()([a, b])
    model = keras.Model([a, b], keras.layers.Dense(1, activation="sigmoid")(keras.layers.Dense(4, activation="relu")(joined)))
    xa, xb = np.array([0.3, -1.2, 0.8], "float32"), np.array([1.5, -0.4], "float32")
    ours = ba.authors_integrated_gradients(model, [xa, xb], steps=8)
    lib = [a[0] for a in integrated_gradients(model, [xa[None], xb[None]], steps=8, rule="riemann_left").attributions]
    assert len(ours) == 2 and ours[0].shape == (3,) and ours[1].shape == (2,)
    for o, l in zip(ours, lib):
        assert ba.max_relative_difference(l, o) <= 1e-5


# --------------------------------------------------------------------------------------------- regions baseline
def test_point_table_is_row_major_inclusive_and_sums_abs_channels():
    a = np.zeros((4, 5, 3))
    a[0, 3] = [1.0, -1.0, 0.0]  # |.| summed: 2.0 -> 1.0
    a[2, 1] = [-1.4, 0.0, 0.0]  # 1.4 -> 0.7: kept at exactly 0.70
    a[1, 1] = [0.5, 0.0, 0.0]
    table = ba.authors_point_table(a, 0.7)
    assert list(table.columns) == ["row", "col", "value"]
    assert table[["row", "col"]].values.tolist() == [[0, 3], [2, 1]]
    assert np.allclose(table["value"], [1.0, 0.7])
    assert len(ba.authors_point_table(np.full((6, 6), 0.3), 0.0)) == 0  # a constant map holds no signal


def test_authors_regions_equal_the_library_on_small_maps(regions_bench):
    rng = np.random.default_rng(5)
    for trial in range(6):
        side = int(rng.integers(20, 60))
        a = regions_bench.attribution_map(side, 0.15, seed=trial)
        for sight in (0.5, 0.7, 0.9):
            for cut in (None, 1.0, 3.0):
                ours, table, labels = ba.authors_regions(a, sight, cut, return_table=True)
                kwargs = {} if cut is None else {"cluster_distance": cut}
                theirs = cluster_regions(a, sight, **kwargs)
                points = table[["row", "col"]].to_numpy()
                assert np.array_equal(points, np.argwhere(ba.normalised_map(a) >= sight))
                evidence = ba.compare_regions(theirs, ours, points, side)
                assert evidence["same_partition"] and evidence["same_circles"], (trial, sight, cut, evidence)
                assert all(r.pixels >= 2 for r in ours)  # singletons dropped


def test_default_cut_and_margin_scale_like_the_library():
    a = np.zeros((448, 448))
    a[200, 100:102] = 1.0
    a[200, 120:122] = 1.0  # 19 px apart: one region at 448 (cut 20), two with the 224 px cut of 10
    assert len(ba.authors_regions(a)) == 1 and len(ba.authors_regions(a, cluster_distance=10)) == 2
    (r,) = ba.authors_regions(a)
    assert r.radius == pytest.approx(10.5 + 10.0) and r.center == (200.0, 110.5)


def test_compare_regions_notices_a_different_answer():
    a = np.zeros((40, 40))
    a[5, 5:7] = 1.0
    a[5, 10:12] = 1.0  # 4 px gap
    points = np.argwhere(a > 0)
    merged, split = ba.authors_regions(a, 0.7, 5.0, 1.0), ba.authors_regions(a, 0.7, 3.0, 1.0)
    assert not ba.compare_regions(merged, split, points, 40)["same_partition"]
    shifted = ba.authors_regions(a, 0.7, 5.0, 1.5)  # same clusters, other margin: circles differ
    evidence = ba.compare_regions(merged, shifted, points, 40)
    assert evidence["same_partition"] and not evidence["same_circles"]


def test_distance_matrix_size_and_budget():
    assert ba.condensed_matrix_bytes(0) == ba.condensed_matrix_bytes(1) == 0
    assert ba.condensed_matrix_bytes(4) == 6 * 8
    assert ba.fits_budget(23_170) and not ba.fits_budget(23_171)  # 2 GiB of float64 pairs
    assert ba.same_partition([1, 1, 2], [7, 7, 3]) and not ba.same_partition([1, 1, 2], [1, 2, 2])
    assert ba.human_bytes(3 * 1024 ** 3) == "3.0 GiB"


# --------------------------------------------------------------------------------------------- maps and reference
def test_attribution_map_is_seeded_and_has_its_signal(regions_bench):
    a = regions_bench.attribution_map(96, 0.15, seed=1)
    assert np.array_equal(a, regions_bench.attribution_map(96, 0.15, seed=1))
    assert not np.array_equal(a, regions_bench.attribution_map(96, 0.15, seed=2))
    assert a.shape == (96, 96) and a.min() >= 0 and a.max() <= 1.0 + 1e-12
    counts = [int((ba.normalised_map(a) >= s).sum()) for s in (0.5, 0.7, 0.9)]
    assert counts[0] > counts[1] > counts[2] > 0
    more = regions_bench.attribution_map(96, 0.30, seed=1)
    assert (ba.normalised_map(more) >= 0.7).sum() > counts[1]


def test_delaunay_reference_equals_the_library(regions_bench):
    for seed, side in ((0, 80), (3, 150)):
        a = regions_bench.attribution_map(side, 0.15, seed=seed)
        for sight in (0.5, 0.8):
            points = np.argwhere(ba.normalised_map(a) >= sight)
            evidence = ba.compare_regions(cluster_regions(a, sight), regions_bench.delaunay_regions(a, sight), points, side)
            assert evidence["same_partition"] and evidence["same_circles"], evidence
    line = np.zeros((60, 60))  # cut 10 * 60 / 224 = 2.7 px
    line[30, 2:20:2] = 1.0  # collinear points 2 px apart (Qhull refuses them: the fallback pairs them) ...
    line[30, 25:33:2] = 1.0  # ... and 5 px further on, another run
    assert 2 < default_cluster_distance(line.shape) < 5
    ref = regions_bench.delaunay_regions(line, 0.5)
    assert sorted(r.pixels for r in ref) == [4, 9]
    assert ba.compare_regions(cluster_regions(line, 0.5), ref, np.argwhere(line > 0), 60)["same_circles"]


# --------------------------------------------------------------------------------------------- report.py
def _bench(name, group, seconds, **info):
    return {"name": name, "group": group, "stats": {"min": seconds, "mean": seconds * 1.1, "rounds": 2}, "extra_info": info}


def _run(benchmarks, gpus=()):
    return {"datetime": "2026-11-29T12:00:00", "commit_info": {"id": "abc123", "dirty": True},
            "machine_info": {"cpu": {"brand_raw": "Test CPU"},
                             "replication": {"cpu_model": "Test CPU", "cpu_cores": 2, "cpu_cores_usable": 2,
                                             "gpus": list(gpus), "libraries": {"numpy": "2"}, "load_1m_at_start": 2.5,
                                             "load_1m_at_end": 3.0, "other_processes_cores_avg": 1.0, "loaded": True,
                                             "python": "3.11", "keras_backend": "tensorflow", "memory_gib": 16}},
            "benchmarks": benchmarks}


def _synthetic_results():
    floors = {"64": {"floor_s_x2": 0.2, "floor_s_x3": 0.3}}
    search = {"evaluations": {"gauss_legendre": 4, "trapezoid": 65, "riemann_left": 96},
              "table": [{"rule": "riemann_left", "steps": 64, "model_evaluations": 64, "relative_delta": 0.015}],
              "search_seconds": 3.0}
    return [
        _bench("test_ig_baseline[64px]", "ig-64px", 2.0, implementation="baseline", size=64, steps=50, batch_size=50, compiled=False),
        _bench("test_ig_baseline_compiled[64px]", "ig-64px", 0.45, implementation="baseline_compiled", size=64, steps=50,
               batch_size=50, compiled=True),
        _bench("test_ig_library[64px]", "ig-64px", 0.5, implementation="library", size=64, steps=50, batch_size=32, compiled=True,
               default=True, max_relative_difference=3e-7, interleaved={"speedup_vs_baseline": 3.9, "speedup_vs_baseline_compiled": 0.9, "rounds": 3}),
        _bench("test_ig_baseline[224px]", "ig-224px", 10.0, implementation="baseline", size=224, steps=50, batch_size=50, compiled=False),
        _bench("test_ig_baseline_compiled[224px]", "ig-224px", 5.0, implementation="baseline_compiled", size=224, steps=50,
               batch_size=50, compiled=True),
        _bench("test_ig_library[224px]", "ig-224px", 6.0, implementation="library", size=224, steps=50, batch_size=32, compiled=True,
               default=True, max_relative_difference=2e-7, interleaved={"speedup_vs_baseline": 1.6, "rounds": 1}),
        _bench("test_flop_floor_cpu", "ig-flop-floor", 1.0, device="CPU", forward_flops={"64": 4.7e8, "224": 5.7e9},
               floors={**floors, "224": {"floor_s_x2": 5.0, "floor_s_x3": 7.5}}, peak_flops_per_s=1e11),
        _bench("rule gl", "ig-equal-accuracy-default", 0.05, implementation="library", variant="default", size=64,
               rule="gauss_legendre", steps=4, model_evaluations=4, relative_delta=1e-4, search=search),
        _bench("rule rl", "ig-equal-accuracy-default", 1.0, implementation="library", variant="default", size=64,
               rule="riemann_left", steps=96, model_evaluations=96, relative_delta=9e-3, search=search),
        _bench("base eq", "ig-equal-accuracy-default", 3.0, implementation="baseline", variant="default", size=64,
               rule="riemann_left", steps=96),
        _bench("test_regions_baseline[0.7-224px]", "regions-224px", 0.03, implementation="baseline", side=224,
               sight_sensitivity=0.7, signal_points=2000,
               phases={"point_table_s": 0.007, "fclusterdata_s": 0.01, "circles_s": 0.013, "clusters_with_singletons": 300}),
        _bench("test_regions_library[0.7-224px]", "regions-224px", 0.002, implementation="library", side=224,
               sight_sensitivity=0.7, signal_points=2000, regions=5, baseline_matrix_bytes=15992000, baseline_fits=True,
               memory_budget_bytes=2 ** 31, same_partition=True, same_circles=True, checked_against="baseline (fclusterdata)"),
        _bench("test_regions_library[0.5-224px]", "regions-224px", 0.01, implementation="library", side=224,
               sight_sensitivity=0.5, signal_points=13000, regions=3, baseline_matrix_bytes=675948000, baseline_fits=True,
               memory_budget_bytes=2 ** 31, same_partition=True, same_circles=True, checked_against="baseline (fclusterdata)"),
        _bench("test_regions_baseline[0.5-224px]", "regions-224px", 2.0, implementation="baseline", side=224,
               sight_sensitivity=0.5, signal_points=13000),
        _bench("test_regions_library[0.7-1024px]", "regions-1024px", 0.07, implementation="library", side=1024,
               sight_sensitivity=0.7, signal_points=50000, regions=17, baseline_matrix_bytes=9999800000, baseline_fits=False,
               memory_budget_bytes=2 ** 31, same_partition=True, same_circles=True, checked_against="Delaunay single-linkage reference"),
        _bench("test_regions_memory_linear_in_points", "regions-memory", 1.0, side=1024, sight_sensitivity=0.7,
               map_bytes=8 * 2 ** 20,
               rows=[{"n": n, "peak_bytes": 2e7 + 260 * n, "bytes_per_point": (2e7 + 260 * n) / n,
                      "clustering_peak_bytes": 6e6 + 250 * n, "clustering_bytes_per_point": (6e6 + 250 * n) / n,
                      "baseline_matrix_bytes": n * (n - 1) * 4} for n in (1000, 5000, 20000)],
               fits={"peak_bytes": {"bytes_per_point": 260, "intercept_bytes": 2e7, "r2": 1.0, "max_relative_residual": 0.0},
                     "clustering_peak_bytes": {"bytes_per_point": 250, "intercept_bytes": 6e6, "r2": 0.999, "max_relative_residual": 0.0}}),
        _bench("test_word2vec_training_time", None, 4.0, reports=2750, tokens=70000),
    ]


def test_report_tables_targets_and_verdicts(tmp_path):
    path = tmp_path / "cpu.json"
    path.write_text(json.dumps(_run(_synthetic_results())))
    out = tmp_path / "PERFORMANCE.md"
    assert report.main([str(path), "-o", str(out)]) == 0
    text = out.read_text()
    for needle in ("## Machine", "Test CPU, 2 cores", "**the machine was loaded**", "## Targets",
                   "pytest benchmarks --benchmark-only", "report.py benchmarks/results/cpu-$(date +%F).json",
                   "No GPU run in these files", "test_word2vec_training_time"):
        assert needle in text, needle
    rows = {r[0]: r for r in report.targets(report.load([path])["benchmarks"])}
    regions_row = rows["region extraction ≥ 100× the baseline at 224², identical partitions"]
    assert "15.0×" in regions_row[1] and "200×" in regions_row[1] and "**missed** at 1 of 2" in regions_row[2]
    assert "per-pixel loop over all 224² = 50,176 pixels 7.0 ms" in regions_row[2]
    assert rows["a 1024² map with ~50,000 signal pixels in < 1 s on this CPU"][2] == "**met**"
    ig = rows["integrated gradients ≥ 1.0× the authors' loop in a tf.function at 50 steps (CPU, default path)"]
    assert "64 px: 0.90× vs the compiled baseline interleaved (0.90× from the minima), 3.90× vs eager" in ig[1]
    assert "224 px: 0.83× vs the compiled baseline (minima)" in ig[1] and ig[2].startswith("**missed** at 64 px, 224 px")
    floor = rows["≥ 60% of the ×2 FLOP floor at 224 px (CPU)"]
    assert floor[1].startswith("default path 83% (6.00 s per image)") and floor[2] == "**met**"  # 5.0 s floor / 6.0 s
    evals = rows["≥ 2× fewer model evaluations at equal completeness delta (< 1%) with the better rule"]
    assert "gauss_legendre 4 vs left Riemann 96 evaluations = 24.0×" in evals[1] and evals[2] == "**met**"
    assert rows["peak memory of region extraction linear in the signal pixels"][2].startswith("**met**")
    assert rows["every fast path checked against the baseline inside the run"][2] == "**met**"
    assert "| 224² | 0.7 | 2,000 | 5 | 2.0 ms |" in text
    assert "not run: needs 9.3 GiB > 2.0 GiB" in text


def test_report_gpu_rows_are_labelled_with_the_device(tmp_path, capsys):
    cpu, gpu = tmp_path / "cpu.json", tmp_path / "gpu.json"
    cpu.write_text(json.dumps(_run(_synthetic_results()[:2])))
    gpu.write_text(json.dumps(_run([
        _bench("test_ig_gpu_baseline[224px]", "ig-gpu", 0.5, implementation="baseline", device="NVIDIA H200", size=224,
               precision="float32"),
        _bench("test_ig_gpu[224px-mixed_float16]", "ig-gpu", 0.1, implementation="library", device="NVIDIA H200", size=224,
               precision="mixed_float16", floor_fraction_x2=0.4, floor_fraction_x3=0.6, max_relative_difference=3e-3,
               relative_l2=0.02, correlation=0.999, passed=True),
    ], gpus=["NVIDIA H200"])))
    assert report.main([str(cpu), str(gpu)]) == 0
    text = capsys.readouterr().out
    assert "GPU rows below come from NVIDIA H200" in text
    # the completeness-delta column stays empty for a case that did not record one
    assert "| NVIDIA H200 | 224 px | library | mixed_float16 | 100.0 ms | 10.00 | 5.00× | 40% / 60% | 3.0e-03 | — | ok (L2 2.0e-02, r 0.9990) |" in text
