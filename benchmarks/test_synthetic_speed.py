"""Generation speed of the synthetic cohorts (cases/s), recorded in benchmark.extra_info.

Run: .venv/bin/python -m pytest benchmarks/test_synthetic_speed.py --benchmark-only -q
docs/SYNTHETIC.md quotes the numbers.
"""

from __future__ import annotations

import pytest

from replication.data.synthetic import SynthParams, generate


def _run(benchmark, params: SynthParams, kind: str, rounds: int) -> float:
    cohort = benchmark.pedantic(generate, args=(params, kind, 0), rounds=rounds, iterations=1)
    n = len(cohort.cases)
    rate = n / benchmark.stats.stats.min
    benchmark.extra_info.update(kind=kind, cases=n, image_size=params.image_size, cases_per_s=round(rate, 1))
    return rate


@pytest.mark.parametrize("kind,cases", [("iu", 800), ("cxr14", 1500)])
def test_profile_sized_cohorts_at_64px(benchmark, kind: str, cases: int) -> None:
    """The pipeline's default profile asks for about this much; it must take seconds, not minutes."""
    rate = _run(benchmark, SynthParams(cases=cases, image_size=64), kind, rounds=3)
    assert cases / rate < 15


def test_full_size_iu_cohort(benchmark) -> None:
    """The IU-like cohort at full size (3000 cases, 128 px): the spec asks for under 30 s on 2 cores."""
    rate = _run(benchmark, SynthParams(), "iu", rounds=1)
    assert 3000 / rate < 30


def test_full_size_cxr14_cohort(benchmark) -> None:
    rate = _run(benchmark, SynthParams(), "cxr14", rounds=1)
    assert 6000 / rate < 30


@pytest.mark.parametrize("size", [64, 128, 224])
def test_speed_by_image_size(benchmark, size: int) -> None:
    _run(benchmark, SynthParams(cases=400, image_size=size), "iu", rounds=1)


def test_default_profile_pair_under_30s(benchmark) -> None:
    """800 IU-like + 1500 ChestX-ray14-like cases at 64 px, end to end."""
    def both() -> None:
        generate(SynthParams(cases=800, image_size=64), "iu", 2019)
        generate(SynthParams(cases=1500, image_size=64), "cxr14", 2019)

    benchmark.pedantic(both, rounds=1, iterations=1)
    seconds = benchmark.stats.stats.min
    benchmark.extra_info.update(cases=2300, image_size=64, seconds=round(seconds, 2), cases_per_s=round(2300 / seconds, 1))
    assert seconds < 30
