"""Shared fixtures: the failure-corpus generator (benchmarks/logs/corpus.py) and Loghub data."""

from __future__ import annotations

from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
#: CI checks the repo out beside shared/; the data README holds the licence notice.
LOGHUB = REPO.parent / "shared" / "data" / "loghub2k"


@pytest.fixture(scope="session")
def corpus() -> ModuleType:
    from anyware.logs import corpus

    return corpus


@pytest.fixture(scope="session")
def loghub() -> Path:
    assert (LOGHUB / "README.md").is_file(), f"Loghub-2k data missing at {LOGHUB}"
    return LOGHUB
