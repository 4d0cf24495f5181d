"""Build an aggregator state by hand: what ranks would POST, without processes."""

from __future__ import annotations

from typing import Any

from anyware.monitor.state import RunState


def hello(state: RunState, rank: int, now: float, world: int, **hb: Any) -> None:
    state.ingest({"rank": rank, "state": {"world_size": world, **hb}, "events": []}, now=now)


def step(state: RunState, rank: int, step: int, *, t: float, compute: float, data: float = 0.0,
         comm: float = 0.0, loss: float | None = 1.0, grad_norm: float | None = 1.0,
         world: int = 2, **hb: Any) -> None:  # fmt: skip
    dur = compute + data + comm
    events: list[dict[str, Any]] = []
    for name, v in (("loss", loss), ("grad_norm", grad_norm)):
        if v is not None:
            events.append({"t": t, "rank": rank, "step": step, "kind": "scalar", "name": name,
                           "value": v if v == v and abs(v) != float("inf") else str(v)})  # fmt: skip
    events.append({"t": t - dur, "rank": rank, "step": step, "kind": "span", "name": "step", "dur": dur,
                   "attrs": {"cat": "step", "compute": compute, "data": data, "comm": comm}})  # fmt: skip
    state.ingest(
        {"rank": rank, "state": {"world_size": world, "step": step + 1, **hb}, "events": events},
        now=t,
    )


def collective(state: RunState, rank: int, seq: int, *, enter: float, exit: float, step: int,
               op: str = "all_reduce", nbytes: int = 4096) -> None:  # fmt: skip
    ev = {"t": enter, "rank": rank, "step": step, "kind": "span", "name": op, "dur": exit - enter,
          "attrs": {"cat": "collective", "op": op, "seq": seq, "bytes": nbytes, "exit": exit}}  # fmt: skip
    state.ingest({"rank": rank, "events": [ev]}, now=exit)
