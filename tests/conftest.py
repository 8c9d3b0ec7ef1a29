"""Shared fixtures. Real-data tests use ../shared/data and skip, saying why, where it is absent."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")  # TensorFlow's start-up chatter hides test output

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("REPLICATION_SHARED_DATA", REPO.parent / "shared" / "data"))


def _shared(sub: str) -> Path:
    path = SHARED_DATA / sub
    if not path.exists():
        pytest.skip(f"real data not available: {path} is absent (set REPLICATION_SHARED_DATA to its folder)")
    return path


@pytest.fixture(scope="session")
def shared_iu_xray() -> Path:
    return _shared("iu_xray")


@pytest.fixture(scope="session")
def shared_chestxray14() -> Path:
    return _shared("chestxray14")
