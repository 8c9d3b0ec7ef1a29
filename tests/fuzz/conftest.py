"""Hypothesis profiles of the fuzz suite and its seed records (real ones from ../shared where present).

Profiles (docs/DATA.md, "Fuzzing the readers"):
- `fuzz` (default): derandomized, a few examples per mutation kind, no example database: the same run every
  time, about 20 s on 2 cores. `FUZZ_EXAMPLES=200` (or 2000) sets every test's number of examples for a long run.
- `fuzz-explore` (`FUZZ_PROFILE=fuzz-explore`): random seeds and the .hypothesis/ database, to look for new
  failures; a failure it finds is kept as a plain regression test in test_regressions.py.

The profiles are applied per test (fuzzkit.fuzz), never loaded globally, so the rest of the suite's
hypothesis tests keep their own settings.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, settings

import fuzzkit

_QUIET = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture]
settings.register_profile("fuzz", derandomize=True, database=None, deadline=None, print_blob=True, suppress_health_check=_QUIET)
settings.register_profile("fuzz-explore", derandomize=False, deadline=None, print_blob=True, suppress_health_check=_QUIET)


def _seeds(request, fixture: str, real, synthetic):
    """Real records when the root conftest's fixture finds ../shared, else the synthetic stand-ins."""
    try:
        root = request.getfixturevalue(fixture)
    except pytest.skip.Exception:
        return synthetic()
    return real(root)


@pytest.fixture(scope="session")
def iu_seeds(request) -> fuzzkit.IuSeeds:
    return _seeds(request, "shared_iu_xray", fuzzkit.real_iu_seeds, fuzzkit.synthetic_iu_seeds)


@pytest.fixture(scope="session")
def cxr_seeds(request) -> fuzzkit.CxrSeeds:
    return _seeds(request, "shared_chestxray14", fuzzkit.real_cxr_seeds, fuzzkit.synthetic_cxr_seeds)


@pytest.fixture(scope="session")
def radiographs(request) -> list:
    """A few real radiographs (downscaled) as uint8 arrays, or synthetic ones."""
    return _seeds(request, "shared_chestxray14", fuzzkit.real_radiographs, fuzzkit.synthetic_radiographs)
