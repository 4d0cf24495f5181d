"""Alert lifecycle: pending → firing → resolved, each firing and resolution written as an
``alert`` event.

A check reports :class:`Finding` s on every tick; a finding is ``pending`` while the check still
wants more evidence (persistence) and ``firing`` once it is sure. A finding that disappears
resolves a firing alert and silently drops a pending one, so a clean run writes no alert
records at all. Records follow the contract: ``kind: "alert"``, ``name`` = the check's code,
``attrs.check`` = its short name, ``attrs.culprit_rank`` (int or null), ``step`` and ``t``; they
land in ``rank<culprit or 0>.jsonl`` of the run's events directory.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

from anyware.events import Event, Kind, rank_file


class AlertState(StrEnum):
    PENDING = "pending"
    FIRING = "firing"
    RESOLVED = "resolved"


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """What a check concluded on one tick about one thing (a rank, the job, a collective)."""

    key: str
    """Identifies the thing, stable across ticks (``rank1``, ``job``)."""
    firing: bool
    """False: suspicious, still pending (persistence not met)."""
    message: str
    """One sentence for the alert list."""
    culprit_rank: int | None = None
    step: int | None = None
    attrs: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True, kw_only=True)
class Alert:
    id: int
    code: str
    check: str
    severity: str
    key: str
    state: AlertState
    message: str
    culprit_rank: int | None
    step: int | None
    attrs: dict[str, Any]
    t_pending: float
    t_firing: float | None = None
    t_resolved: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "code": self.code,
            "check": self.check,
            "severity": self.severity,
            "state": str(self.state),
            "message": self.message,
            "culprit_rank": self.culprit_rank,
            "step": self.step,
            "attrs": self.attrs,
            "t_pending": self.t_pending,
            "t_firing": self.t_firing,
            "t_resolved": self.t_resolved,
        }


class AlertSink:
    """Appends alert records to the run's rank files; one ``os.write`` per record so lines never
    interleave with the rank's own appends (O_APPEND)."""

    def __init__(self, events_dir: Path | None) -> None:
        self.events_dir = events_dir
        self.written: list[Event] = []

    def write(self, ev: Event) -> None:
        self.written.append(ev)
        if self.events_dir is None:
            return
        path = rank_file(self.events_dir, ev.rank)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, (ev.to_json() + "\n").encode())
            finally:
                os.close(fd)
        except OSError:
            pass  # the alert is still in memory, on the dashboard and in /metrics


class AlertManager:
    def __init__(self, sink: AlertSink) -> None:
        self.sink = sink
        self.open: dict[tuple[str, str], Alert] = {}
        self.history: list[Alert] = []
        self.version = 0
        self._ids = itertools.count(1)
        self.lock = threading.Lock()

    def update(self, check: Any, findings: list[Finding], now: float | None = None) -> None:
        now = time.time() if now is None else now
        with self.lock:
            seen = set()
            for f in findings:
                key = (check.name, f.key)
                seen.add(key)
                a = self.open.get(key)
                if a is None:
                    a = Alert(
                        id=next(self._ids),
                        code=check.code,
                        check=check.name,
                        severity=check.severity,
                        key=f.key,
                        state=AlertState.PENDING,
                        message=f.message,
                        culprit_rank=f.culprit_rank,
                        step=f.step,
                        attrs=dict(f.attrs),
                        t_pending=now,
                    )
                    self.open[key] = a
                    self.history.append(a)
                    self.version += 1
                if a.state is AlertState.PENDING:
                    a.message, a.culprit_rank, a.step = f.message, f.culprit_rank, f.step
                    a.attrs = dict(f.attrs)
                    if f.firing:
                        a.state, a.t_firing = AlertState.FIRING, now
                        self._emit(a, now)
                    self.version += 1
                elif f.attrs != a.attrs:
                    a.attrs = {**a.attrs, **f.attrs}  # e.g. stacks arriving after a hang fired
                    self.version += 1
            for key in [k for k in self.open if k[0] == check.name and k not in seen]:
                a = self.open.pop(key)
                if a.state is AlertState.FIRING:
                    a.state, a.t_resolved = AlertState.RESOLVED, now
                    self._emit(a, now)
                else:
                    self.history.remove(a)
                self.version += 1

    def _emit(self, a: Alert, now: float) -> None:
        attrs = {
            "check": a.check,
            "severity": a.severity,
            "culprit_rank": a.culprit_rank,
            "state": str(a.state),
            "alert_id": a.id,
            "message": a.message,
            **{k: v for k, v in a.attrs.items() if k != "stacks"},
        }
        rank = a.culprit_rank if a.culprit_rank is not None else 0
        self.sink.write(
            Event(t=now, rank=rank, step=a.step, kind=Kind.ALERT, name=a.code, attrs=attrs)
        )

    def alerts(self) -> list[dict[str, Any]]:
        with self.lock:
            return [a.to_json() for a in self.history]

    def firing(self) -> list[Alert]:
        with self.lock:
            return [a for a in self.open.values() if a.state is AlertState.FIRING]
