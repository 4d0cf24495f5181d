"""Suite-wide fixtures: every test starts with no ANYWARE_* variables and a fresh registry."""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest


@pytest.fixture(autouse=True)
def _clean_anyware_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    for key in list(os.environ):
        if key.startswith("ANYWARE_"):
            monkeypatch.delenv(key)
    yield
    from anyware import runtime
    from anyware.runtime import registry

    registry._reset_for_tests()
    runtime.set_current(None)
