"""Fixtures for the migration tests: a scoped shim on the cpu / fake target."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def cpu_shim() -> Iterator[Any]:
    import torch  # noqa: F401  (the shim patches an imported torch)

    import anyware.migrate as migrate
    from anyware.migrate.shim import STATE

    STATE.ledger.reset()
    STATE.warned.clear()
    STATE.current_index = 0
    with migrate.redirect("cpu") as target:
        yield target
    STATE.ledger.reset()


@pytest.fixture
def fake_shim(monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import torch  # noqa: F401

    import anyware.migrate as migrate
    from anyware.migrate.shim import STATE

    monkeypatch.setenv("ANYWARE_FAKE_DEVICES", '{"count": 2, "dtypes": ["fp32", "fp16", "bf16"]}')
    STATE.ledger.reset()
    STATE.warned.clear()
    with migrate.redirect("fake") as target:
        yield target
    STATE.ledger.reset()


def redirects() -> dict[str, int]:
    from anyware.migrate import report

    return {r["api"]: r["count"] for r in report()["redirects"]}


def unsupported_apis() -> set[str]:
    from anyware.migrate import report

    return {u["api"] for u in report()["unsupported"]}
