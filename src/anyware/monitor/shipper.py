"""The background thread that turns the hot path's raw records into events and ships them.

Every 1/ship_hz seconds it drains the ring buffer, waits (without blocking) for each step's last
device event to complete, converts the records into :class:`~anyware.events.Event` s, appends
them to this rank's JSONL and POSTs them to the aggregator together with a heartbeat (step, last
collective sequence number, the collective in flight). The POST's answer may ask for a dump of
every thread's Python stack, which is how a hung rank's stacks reach the hang panel: the thread
runs while the main thread is stuck in a sleep or a collective that released the GIL.

When the aggregator is unreachable the serialized events wait in a bounded backlog (oldest
dropped and counted beyond ``spool_bytes``); the JSONL on disk keeps everything up to
``disk_bytes``. Training never waits on any of it.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import socket
import sys
import threading
import time
import traceback
from collections import deque
from typing import IO, TYPE_CHECKING, Any

from anyware.events import Event, Kind, rank_file
from anyware.monitor.config import parse_addr

if TYPE_CHECKING:
    from anyware.monitor.collector import Monitor

#: A step whose device events have not completed after this long is shipped with host times.
FORCE_AFTER_S = 10.0
#: Events per POST: keeps one request well under the aggregator's body limit.
MAX_BATCH = 2000
#: Same output as ``Event.to_json``; one encoder instead of one per call (json.dumps with
#: options builds a new encoder each time: ~30% of the shipper's time per step).
_ENCODER = json.JSONEncoder(separators=(",", ":"), allow_nan=False)


class Shipper:
    def __init__(self, monitor: Monitor) -> None:
        self.mon = monitor
        cfg = monitor.config
        self.interval = 1.0 / cfg.ship_hz
        self.addr = parse_addr(cfg.addr) if cfg.addr else None
        self.token = cfg.token
        self.pending: list[tuple[Any, ...]] = []
        self.backlog: deque[str] = deque()
        self.backlog_bytes = 0
        self.dropped = 0
        self.drained = 0
        self.shipped = 0
        self.writer: IO[str] | None = None
        self.disk_bytes = 0
        self.disk_off = cfg.events_dir is None
        self.warned: set[str] = set()
        self.conn: http.client.HTTPConnection | None = None
        self.retry_at = 0.0
        self.failures = 0
        self.want_stacks = False
        self.last_mem_step = -1
        self.host = socket.gethostname()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="anyware-monitor", daemon=True)
        self._flush_lock = threading.Lock()

    def start(self) -> None:
        self._thread.start()

    def stop(self, *, timeout: float) -> None:
        self._stop.set()
        if self._thread.is_alive() and threading.current_thread() is not self._thread:
            self._thread.join(timeout)
        with contextlib.suppress(Exception):  # exiting: host times are good enough
            self.mon.backend.synchronize()
        self.flush(force=True, goodbye=True)
        if self.writer is not None:
            self.writer.close()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self.flush()
            except Exception as e:  # never take the training down
                self._warn("flush", f"monitor: shipping failed ({type(e).__name__}: {e}); retrying")

    # --- one tick --------------------------------------------------------------------------
    def flush(self, *, force: bool = False, goodbye: bool = False) -> None:
        with self._flush_lock:
            ring = self.mon.ring
            while ring:
                self.pending.append(ring.popleft())
                self.drained += 1
            events: list[Event] = []
            keep: list[tuple[Any, ...]] = []
            now = time.time()
            rank = self.mon.rank()
            for item in self.pending:
                stamp = item[3] if item[0] == "step" else item[5]
                out = _resolve(item, rank, self.mon.config, force or now - stamp > FORCE_AFTER_S)
                if out is None:
                    keep.append(item)
                else:
                    events.extend(out)
            self.pending = keep
            step = self.mon.step
            if step > self.last_mem_step and step >= 1:
                self.last_mem_step = step
                events.append(_memory_event(self.mon, rank, step))
            if self.want_stacks:
                self.want_stacks = False
                events.append(stacks_event(rank, step))
            lines = [_ENCODER.encode(e.to_dict()) for e in events]
            self._write_disk(rank, events, lines)
            if self.addr is not None:
                self._enqueue(lines)
                self._post(rank, goodbye=goodbye)

    def _write_disk(self, rank: int, events: list[Event], lines: list[str]) -> None:
        if self.disk_off or not events:
            return
        size = sum(len(s) + 1 for s in lines)
        if self.disk_bytes + size > self.mon.config.disk_bytes:
            self.disk_off = True
            self._warn(
                "disk",
                f"monitor: rank {rank} JSONL reached {self.disk_bytes} bytes; no more events on disk",
            )
            return
        try:
            if self.writer is None:
                assert self.mon.config.events_dir is not None
                path = rank_file(self.mon.config.events_dir, rank)
                path.parent.mkdir(parents=True, exist_ok=True)
                self.writer = open(path, "a", encoding="utf-8")  # noqa: SIM115 (closed in stop())
            # the lines are Event.to_json's, already encoded for the POST: one write per batch,
            # as EventWriter does, so a reader never sees a torn line except at a crash
            self.writer.write("".join(s + "\n" for s in lines))
            self.writer.flush()
            self.disk_bytes += size
        except OSError as e:
            self.disk_off = True
            self._warn(
                "disk", f"monitor: cannot write events to disk ({e.strerror or e}); shipping only"
            )

    def _enqueue(self, lines: list[str]) -> None:
        cap = self.mon.config.spool_bytes
        for s in lines:
            self.backlog.append(s)
            self.backlog_bytes += len(s) + 1
        while self.backlog_bytes > cap and self.backlog:
            self.backlog_bytes -= len(self.backlog.popleft()) + 1
            self.dropped += 1

    def heartbeat(self, rank: int, goodbye: bool) -> dict[str, Any]:
        from anyware.monitor.collector import world_size

        mon = self.mon
        state: dict[str, Any] = {
            "rank": rank,
            "world_size": world_size(),
            "pid": os.getpid(),
            "host": self.host,
            "step": mon.step,
            "last_seq": mon.seq,
            "inflight": list(mon.inflight) if mon.inflight else None,
            # ring overflow (hot path outran the thread) + backlog overflow (aggregator away)
            "dropped": self.dropped + max(mon.appended - len(mon.ring) - self.drained, 0),
            "t": time.time(),
        }
        if goodbye:
            state["goodbye"] = {"clean": mon.crashed is None, "reason": mon.crashed}
        return state

    def _post(self, rank: int, *, goodbye: bool) -> None:
        now = time.monotonic()
        if now < self.retry_at and not goodbye:
            return
        assert self.addr is not None
        n = min(len(self.backlog), MAX_BATCH)
        batch = [self.backlog[i] for i in range(n)]
        body = (
            f'{{"rank":{rank},"state":{json.dumps(self.heartbeat(rank, goodbye))},'
            f'"events":[{",".join(batch)}]}}'
        ).encode()
        headers = {"Content-Type": "application/json"}
        if self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        try:
            if self.conn is None:
                self.conn = http.client.HTTPConnection(*self.addr, timeout=1.0 if goodbye else 2.0)
            self.conn.request("POST", "/api/ingest", body=body, headers=headers)
            resp = self.conn.getresponse()
            payload = resp.read()
        except (OSError, http.client.HTTPException) as e:
            if self.conn is not None:
                self.conn.close()
            self.conn = None
            self.failures += 1
            self.retry_at = now + min(0.1 * 2**self.failures, 2.0)
            self._warn(
                "addr",
                f"monitor: aggregator at {self.addr[0]}:{self.addr[1]} unreachable ({e}); training goes on, events are kept",
            )
            return
        self.failures = 0
        if resp.status >= 400:
            self._warn(
                f"http{resp.status}",
                f"monitor: aggregator answered {resp.status}: {payload[:200]!r}",
            )
            if resp.status in (400, 413, 422):
                self._drop(n)  # it will never accept these; do not resend forever
            return
        self._drop(n)
        self.shipped += n
        try:
            answer = json.loads(payload or b"{}")
        except ValueError:
            answer = {}
        if isinstance(answer, dict) and answer.get("dump_stacks"):
            self.want_stacks = True

    def _drop(self, n: int) -> None:
        for _ in range(n):
            self.backlog_bytes -= len(self.backlog.popleft()) + 1

    def _warn(self, key: str, message: str) -> None:
        if key not in self.warned:
            self.warned.add(key)
            print(message, file=sys.stderr)


def _pairs(marks: list[tuple[str, float, Any]], start: str, end: str) -> tuple[float | None, float]:
    """Summed durations between matching start/end marks (several forwards per step under
    gradient accumulation), device time when the events give it."""
    total = 0.0
    first: float | None = None
    open_: tuple[float, Any] | None = None
    for name, t, ev in marks:
        if name == start:
            open_ = (t, ev)
            first = t if first is None else first
        elif name == end and open_ is not None:
            try:
                total += open_[1].elapsed_time(ev) / 1000.0
            except Exception:
                total += t - open_[0]
            open_ = None
    return first, max(total, 0.0)


def _resolve(item: tuple[Any, ...], rank: int, cfg: Any, force: bool) -> list[Event] | None:
    if item[0] == "coll":
        _, seq, op, nbytes, step, t0, t1, ev0, ev1 = item
        attrs: dict[str, Any] = {
            "cat": "collective",
            "op": op,
            "seq": seq,
            "bytes": nbytes,
            "exit": t1,
        }
        if ev1 is not None:
            if not force and not ev1.query():
                return None
            with contextlib.suppress(Exception):
                attrs["device_dur"] = ev0.elapsed_time(ev1) / 1000.0
        return [
            Event(
                t=t0,
                rank=rank,
                step=step,
                kind=Kind.SPAN,
                name=op,
                dur=max(t1 - t0, 0.0),
                attrs=attrs,
            )
        ]
    _, step, prev_end, t_end, marks, loss, gn, ratio, comm, n_coll, samples, tokens = item
    if not force and marks and not marks[-1][2].query():
        return None
    t_start = prev_end if prev_end is not None else (marks[0][1] if marks else t_end)
    dur = max(t_end - t_start, 0.0)
    f0, forward = _pairs(marks, "fwd0", "fwd1")
    b0, backward = _pairs(marks, "bwd0", "bwd1")
    o0, optimizer = _pairs(marks, "opt0", "opt1")
    data = max(f0 - prev_end, 0.0) if (prev_end is not None and f0 is not None) else 0.0
    compute = max(dur - data - comm, 0.0)
    out: list[Event] = []
    for name, t, d in (
        ("data", prev_end, data),
        ("forward", f0, forward),
        ("backward", b0, backward),
        ("optimizer", o0, optimizer),
    ):
        if t is not None:
            out.append(
                Event(
                    t=t,
                    rank=rank,
                    step=step,
                    kind=Kind.SPAN,
                    name=name,
                    dur=d,
                    attrs={"cat": "phase"},
                )
            )
    scalars: dict[str, float | None] = {
        "loss": _item(loss),
        "grad_norm": _item(gn),
        "update_ratio": _item(ratio),
    }
    if dur > 0:
        if samples:
            scalars["samples_per_s"] = samples / dur
        tok = cfg.tokens_per_step or tokens
        if tok:
            scalars["tokens_per_s"] = tok / dur
        if cfg.flops_per_step and cfg.peak_flops:
            scalars["mfu"] = cfg.flops_per_step / dur / cfg.peak_flops
    for name, v in scalars.items():
        if v is not None:
            out.append(Event(t=t_end, rank=rank, step=step, kind=Kind.SCALAR, name=name, value=v))
    breakdown = {"data": data, "forward": forward, "backward": backward, "optimizer": optimizer,
                 "comm": comm, "compute": compute, "n_coll": n_coll}  # fmt: skip
    out.append(
        Event(
            t=t_start,
            rank=rank,
            step=step,
            kind=Kind.SPAN,
            name="step",
            dur=dur,
            attrs={"cat": "step", **breakdown},
        )
    )
    return out


def _item(t: Any) -> float | None:
    if t is None:
        return None
    try:
        return float(t.item())
    except Exception:
        return None


def _memory_event(mon: Monitor, rank: int, step: int) -> Event:
    try:
        m = mon.backend.memory_stats()
        value = m.allocated
        attrs: dict[str, Any] = {"reserved": m.reserved, "peak": m.peak, "total": m.total}
    except Exception:
        value, attrs = None, {}
    return Event(
        t=time.time(),
        rank=rank,
        step=step,
        kind=Kind.SCALAR,
        name="memory",
        value=None if value is None else float(value),
        attrs=attrs,
    )


def stacks_event(rank: int, step: int) -> Event:
    """Every thread's Python stack, innermost frame last (what a hang panel shows)."""
    names = {t.ident: t.name for t in threading.enumerate()}
    me = threading.get_ident()
    threads = []
    for ident, frame in sys._current_frames().items():
        if ident == me:
            continue  # the shipper itself is not interesting
        threads.append(
            {
                "thread": names.get(ident, str(ident)),
                "stack": "".join(traceback.format_stack(frame)),
            }
        )
    return Event(
        t=time.time(),
        rank=rank,
        step=step,
        kind=Kind.INSTANT,
        name="stacks",
        attrs={"threads": threads},
    )
