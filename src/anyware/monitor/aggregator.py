"""The aggregator: run state + checks + alerts, ticking in a background thread.

One :class:`Aggregator` per served run. Ingest (from the HTTP handler) and the check ticker share
the state under its lock; the ticker runs every check at ``tick_hz`` so time-based checks (hang,
rank exit) fire even when nothing arrives.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

from anyware.monitor.alerts import AlertManager, AlertSink
from anyware.monitor.checks import instantiate
from anyware.monitor.config import CheckConfig
from anyware.monitor.state import RunState

#: 5 Hz: detection latency is dominated by the shipping interval (0.1 s) and the checks'
#: persistence, not by this; faster ticks only burn the aggregator's CPU.
TICK_HZ = 5.0


class Aggregator:
    def __init__(
        self,
        *,
        events_dir: Path | None = None,
        checks: CheckConfig | None = None,
        only: list[str] | None = None,
        runs_dir: Path | None = None,
    ) -> None:
        self.events_dir = events_dir
        self.runs_dir = (
            runs_dir if runs_dir is not None else (events_dir.parent if events_dir else None)
        )
        self.cfg = checks or CheckConfig()
        self.state = RunState()
        self.checks = instantiate(self.cfg, only)
        self.alerts = AlertManager(AlertSink(events_dir))
        self.errors: dict[str, str] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def ingest(self, payload: Any) -> dict[str, Any]:
        return self.state.ingest(payload)

    def tick(self, now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self.state.lock:
            for check in self.checks:
                try:
                    findings = check.evaluate(self.state, now)
                except Exception as e:  # one broken check must not silence the others
                    self.errors[check.name] = f"{type(e).__name__}: {e}"
                    continue
                self.alerts.update(check, findings, now)

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._loop, name="anyware-monitor-checks", daemon=True
            )
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)

    def _loop(self) -> None:
        while not self._stop.wait(1.0 / TICK_HZ):
            self.tick()

    # --- views -----------------------------------------------------------------------------------
    def snapshot(self) -> dict[str, Any]:
        now = time.time()
        st = self.state
        with st.lock:
            return {
                "t": now,
                "world_size": st.world_size(),
                "ranks": [i.to_json(now) for i in sorted(st.ranks.values(), key=lambda i: i.rank)],
                "steps": max((i.step for i in st.ranks.values()), default=0),
                "straggler": st.tables.get("straggler"),
                "hang": st.tables.get("hang"),
                "ingest": {"accepted": st.accepted, "rejected": dict(st.rejected)},
                "check_errors": dict(self.errors),
                "alerts": self.alerts.alerts(),
                "events_dir": str(self.events_dir) if self.events_dir else None,
            }
