"""The aggregator's picture of a run: per-rank heartbeats, per-step rows, collectives by sequence
number, memory samples and stack dumps, built from what the ranks POST.

Ingest validates every record against the shared schema (:class:`anyware.events.Event`) and a
size limit; a bad record is rejected and counted by reason, never raised. Everything is bounded:
old steps and collectives fall off, so a week-long job does not grow the aggregator.
"""

from __future__ import annotations

import json
import threading
import time
from collections import Counter, OrderedDict, deque
from dataclasses import dataclass, field
from typing import Any

from anyware.events import Event, EventError, Kind

#: Steps and collectives kept in memory (the JSONL on disk keeps everything).
MAX_STEPS = 4000
MAX_COLLECTIVES = 20000
MAX_ROWS = 20000
#: One record's JSON may not exceed this; a stack dump gets more room.
MAX_RECORD_BYTES = 64 * 1024
MAX_STACKS_BYTES = 1024 * 1024

STEP_FIELDS = ("data", "forward", "backward", "optimizer", "comm", "compute")
SCALAR_FIELDS = ("loss", "grad_norm", "update_ratio", "samples_per_s", "tokens_per_s", "mfu")


@dataclass(slots=True, kw_only=True)
class RankInfo:
    rank: int
    pid: int | None = None
    host: str | None = None
    world_size: int = 1
    first_seen: float = 0.0
    last_seen: float = 0.0
    step: int = 0
    last_progress: float = 0.0
    last_seq: int = 0
    inflight: list[Any] | None = None
    dropped: int = 0
    goodbye: dict[str, Any] | None = None
    goodbye_t: float | None = None

    def to_json(self, now: float) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "pid": self.pid,
            "host": self.host,
            "step": self.step,
            "last_seq": self.last_seq,
            "inflight": self.inflight,
            "silent_s": round(now - self.last_seen, 3),
            "dropped": self.dropped,
            "status": ("exited" if self.goodbye and self.goodbye.get("clean") else "crashed")
            if self.goodbye
            else "running",
        }


@dataclass(slots=True, kw_only=True)
class StepRow:
    rank: int
    step: int
    t: float
    dur: float
    values: dict[str, float | None] = field(default_factory=dict)

    def get(self, name: str) -> float | None:
        return self.values.get(name)

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "step": self.step,
            "t": self.t,
            "dur": self.dur,
            **_finite(self.values),
        }


@dataclass(slots=True, kw_only=True)
class Collective:
    op: str
    nbytes: int
    enter: float
    exit: float
    step: int | None


class RunState:
    """Guarded by ``lock``; ingest and the check ticker both take it."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        self.ranks: dict[int, RankInfo] = {}
        self.steps: OrderedDict[int, dict[int, StepRow]] = OrderedDict()
        self._partial: dict[tuple[int, int], dict[str, float | None]] = {}
        self.colls: OrderedDict[int, dict[int, Collective]] = OrderedDict()
        self.memory: dict[int, deque[tuple[int, float, float]]] = {}
        self.stacks: dict[int, dict[str, Any]] = {}
        self.rows: list[dict[str, Any]] = []
        self.rows_base = 0
        self.accepted = 0
        self.rejected: Counter[str] = Counter()
        self.version = 0
        self.stack_requests: set[int] = set()
        self.tables: dict[str, Any] = {}
        self.started = time.time()

    # --- ingest ------------------------------------------------------------------------------
    def ingest(self, payload: Any, now: float | None = None) -> dict[str, Any]:
        """Apply one POSTed batch; returns what the shipper is told (counts, stack request)."""
        now = time.time() if now is None else now
        if not isinstance(payload, dict) or not isinstance(payload.get("events", []), list):
            self.reject("malformed")
            raise EventError("ingest body must be an object with an 'events' list")
        hb = payload.get("state")
        rank = payload.get("rank")
        if not isinstance(rank, int) or isinstance(rank, bool) or rank < 0:
            self.reject("malformed")
            raise EventError("ingest body needs 'rank', an int >= 0")
        accepted = rejected = 0
        with self.lock:
            info = self.ranks.get(rank)
            if info is None:
                info = self.ranks[rank] = RankInfo(rank=rank, first_seen=now, last_progress=now)
            info.last_seen = now
            if isinstance(hb, dict):
                self._heartbeat(info, hb, now)
            for raw in payload["events"]:
                reason = self._apply(raw, now)
                if reason is None:
                    accepted += 1
                else:
                    rejected += 1
                    self.rejected[reason] += 1
            self.accepted += accepted
            self.version += 1
            dump = rank in self.stack_requests
            self.stack_requests.discard(rank)
        return {"accepted": accepted, "rejected": rejected, "dump_stacks": dump}

    def reject(self, reason: str) -> None:
        with self.lock:
            self.rejected[reason] += 1

    def _heartbeat(self, info: RankInfo, hb: dict[str, Any], now: float) -> None:
        for name in ("pid", "world_size", "last_seq", "dropped"):
            v = hb.get(name)
            if isinstance(v, int) and not isinstance(v, bool):
                setattr(info, name, v)
        if isinstance(hb.get("host"), str):
            info.host = hb["host"][:200]
        inflight = hb.get("inflight")
        info.inflight = inflight if isinstance(inflight, list) and len(inflight) == 3 else None
        bye = hb.get("goodbye")
        if isinstance(bye, dict) and info.goodbye is None:
            info.goodbye = {
                "clean": bool(bye.get("clean")),
                "reason": str(bye.get("reason") or "")[:500],
            }
            info.goodbye_t = now

    def _apply(self, raw: Any, now: float) -> str | None:
        try:
            size = len(json.dumps(raw, separators=(",", ":")))
        except (TypeError, ValueError):
            return "malformed"
        limit = (
            MAX_STACKS_BYTES
            if isinstance(raw, dict) and raw.get("name") == "stacks"
            else MAX_RECORD_BYTES
        )
        if size > limit:
            return "oversized"
        try:
            if isinstance(raw, dict) and isinstance(raw.get("value"), str):
                raw = {**raw, "value": float(raw["value"])}  # "nan"/"inf" as the schema writes them
            ev = Event.from_dict(raw)
        except (EventError, TypeError, ValueError):
            return "schema"
        if ev.rank not in self.ranks:
            return "unknown_rank"
        cat = ev.attrs.get("cat")
        if ev.kind is Kind.SPAN and cat == "step" and ev.step is not None:
            self._add_step(ev, now)
        elif ev.kind is Kind.SCALAR and ev.step is not None:
            if ev.name == "memory":
                if ev.value is not None:
                    self.memory.setdefault(ev.rank, deque(maxlen=512)).append(
                        (ev.step, ev.t, ev.value)
                    )
            elif ev.name in SCALAR_FIELDS:
                self._partial.setdefault((ev.rank, ev.step), {})[ev.name] = ev.value
        elif ev.kind is Kind.SPAN and cat == "collective":
            seq = ev.attrs.get("seq")
            if isinstance(seq, int):
                exit_t = ev.attrs.get("exit")
                self.colls.setdefault(seq, {})[ev.rank] = Collective(
                    op=str(ev.attrs.get("op", ev.name)),
                    nbytes=int(ev.attrs.get("bytes") or 0),
                    enter=ev.t,
                    exit=float(exit_t)
                    if isinstance(exit_t, int | float)
                    else ev.t + (ev.dur or 0.0),
                    step=ev.step,
                )
                while len(self.colls) > MAX_COLLECTIVES:
                    self.colls.popitem(last=False)
        elif ev.kind is Kind.INSTANT and ev.name == "stacks":
            self.stacks[ev.rank] = {
                "t": ev.t,
                "step": ev.step,
                "threads": ev.attrs.get("threads", []),
            }
        return None

    def _add_step(self, ev: Event, now: float) -> None:
        assert ev.step is not None
        values: dict[str, float | None] = {}
        for name in STEP_FIELDS:
            v = ev.attrs.get(name)
            values[name] = float(v) if isinstance(v, int | float) else None
        values.update(self._partial.pop((ev.rank, ev.step), {}))
        row = StepRow(rank=ev.rank, step=ev.step, t=ev.t, dur=ev.dur or 0.0, values=values)
        self.steps.setdefault(ev.step, {})[ev.rank] = row
        while len(self.steps) > MAX_STEPS:
            old, _ = self.steps.popitem(last=False)
            for key in [k for k in self._partial if k[1] <= old]:
                del self._partial[key]
        info = self.ranks[ev.rank]
        if ev.step + 1 > info.step:
            info.step = ev.step + 1
            info.last_progress = now
        self.rows.append({**row.to_json(), "received": now})
        if len(self.rows) > MAX_ROWS:
            drop = len(self.rows) - MAX_ROWS
            del self.rows[:drop]
            self.rows_base += drop

    # --- views the checks share ----------------------------------------------------------------
    def world_size(self) -> int:
        return max([i.world_size for i in self.ranks.values()] + [len(self.ranks), 1])

    def live_ranks(self) -> list[int]:
        return sorted(r for r, i in self.ranks.items() if i.goodbye is None)

    def complete_steps(self) -> list[int]:
        """Steps every rank of the world has reported, oldest first."""
        n = self.world_size()
        return [s for s, rows in self.steps.items() if len(rows) >= n]

    def rows_since(self, cursor: int) -> tuple[list[dict[str, Any]], int]:
        start = max(cursor - self.rows_base, 0)
        return self.rows[start:], self.rows_base + len(self.rows)


def _finite(values: dict[str, float | None]) -> dict[str, float | str | None]:
    import math

    out: dict[str, float | str | None] = {}
    for k, v in values.items():
        out[k] = (
            v
            if v is None or math.isfinite(v)
            else ("nan" if math.isnan(v) else ("inf" if v > 0 else "-inf"))
        )
    return out
