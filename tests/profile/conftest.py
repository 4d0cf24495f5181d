"""Fixtures: directories holding the hand-built traces of :mod:`profile_traces`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

# pytest runs in importlib mode (test file names repeat across components), which puts no test
# directory on sys.path; the hand-built traces are shared by this directory's modules.
sys.path.insert(0, str(Path(__file__).parent))

from profile_traces import device_trace, host_trace


@pytest.fixture
def device_dir(tmp_path: Path) -> Path:
    device_trace().write(tmp_path / "device" / "rank0.pt.trace.json")
    return tmp_path / "device"


@pytest.fixture
def host_dir(tmp_path: Path) -> Path:
    host_trace().write(tmp_path / "host" / "rank0.pt.trace.json")
    return tmp_path / "host"
