"""Shared helpers: an aggregator served in this process with thresholds shrunk for quick
scenarios, and a runner for the two-rank gloo scenarios of :mod:`anyware.monitor.scenarios`."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from anyware.events import Kind, read_dir
from anyware.monitor.aggregator import Aggregator
from anyware.monitor.config import CheckConfig
from anyware.monitor.scenarios import run_world
from anyware.monitor.serve import ServerHandle, serve_in_thread

#: Test thresholds: the rules are the production ones, only the waiting times shrink so each
#: scenario ends in seconds (hang after 2 s instead of 10 s, silence after 2 s, ...).
FAST = {
    "hang_min_s": 2.0,
    "heartbeat_timeout_s": 2.0,
    "memory_window": 10,
    "memory_min_growth_bytes": 24 * 2**20,
    "memory_warmup_steps": 5,
    "loss_spike_window": 10,
    "resolve_after": 5,
    # This box runs other jobs beside the tests (load average 10-15 on 2 cores); scheduler
    # jitter reached 3 ms on 14 ms steps there. The straggler scenario's gap is 20 ms.
    "straggler_min_gap_s": 0.01,
}


@dataclass
class World:
    agg: Aggregator
    server: ServerHandle
    events: Path

    def run(self, scenario: str, *, steps: int = 60, onset: int = 20, timeout: float = 80.0,
            until: Callable[[], bool] | None = None, **kw: Any) -> list[int | None]:  # fmt: skip
        codes = run_world(scenario, addr=self.server.addr, events=self.events, steps=steps, onset=onset,
                          timeout=timeout, until=until, linger=10.0, **kw)  # fmt: skip
        time.sleep(0.3)  # let the last batches land
        self.agg.tick()
        return codes

    def firing(self, check: str) -> list[dict[str, Any]]:
        return [
            a for a in self.agg.alerts.alerts() if a["check"] == check and a["t_firing"] is not None
        ]

    def has_firing(self, check: str) -> Callable[[], bool]:
        return lambda: bool(self.firing(check))

    def fault(self) -> dict[str, float]:
        import json

        return json.loads((self.events / "fault-rank1.json").read_text())

    def alert_records(self) -> list[Any]:
        return [e for e in read_dir(self.events) if e.kind is Kind.ALERT]


@pytest.fixture
def world(tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[World]:
    overrides = getattr(request, "param", {})
    agg = Aggregator(events_dir=tmp_path / "run", checks=CheckConfig(**{**FAST, **overrides}))
    server = serve_in_thread(agg)
    try:
        yield World(agg=agg, server=server, events=tmp_path / "run")
    finally:
        server.stop()
