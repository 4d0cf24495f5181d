"""Shared fixtures: the failure-corpus generator (benchmarks/logs/corpus.py) and Loghub data."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
#: CI checks the repo out beside shared/; the data README holds the licence notice.
LOGHUB = REPO.parent / "shared" / "data" / "loghub2k"


def _load_corpus() -> ModuleType:
    name = "anyware_bench_logs_corpus"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, REPO / "benchmarks" / "logs" / "corpus.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[name] = mod
    spec.loader.exec_module(mod)
    return mod


@pytest.fixture(scope="session")
def corpus() -> ModuleType:
    return _load_corpus()


@pytest.fixture(scope="session")
def loghub() -> Path:
    assert (LOGHUB / "README.md").is_file(), f"Loghub-2k data missing at {LOGHUB}"
    return LOGHUB
