"""Fabricated aggregator input for tests of checks (ours, or a user's own): what ranks would
POST, applied to a :class:`~anyware.monitor.state.RunState` without processes or HTTP.

>>> st = RunState()
>>> step(st, rank=0, step=0, t=1000.0, compute=0.02)
"""

from __future__ import annotations

import math
from typing import Any

from anyware.monitor.state import RunState


def hello(state: RunState, rank: int, now: float, world: int, **heartbeat: Any) -> None:
    """A heartbeat with no records (``last_seq=...``, ``inflight=[seq, op, t]``, ``goodbye=...``)."""
    state.ingest({"rank": rank, "state": {"world_size": world, **heartbeat}, "events": []}, now=now)


def step(
    state: RunState,
    rank: int,
    step: int,
    *,
    t: float,
    compute: float,
    data: float = 0.0,
    comm: float = 0.0,
    loss: float | None = 1.0,
    grad_norm: float | None = 1.0,
    world: int = 2,
    **heartbeat: Any,
) -> None:
    """One finished step of one rank, ending at ``t``: its scalars and its step span."""
    dur = compute + data + comm
    events: list[dict[str, Any]] = []
    for name, v in (("loss", loss), ("grad_norm", grad_norm)):
        if v is not None:
            value: float | str = v if math.isfinite(v) else str(v)
            events.append(
                {"t": t, "rank": rank, "step": step, "kind": "scalar", "name": name, "value": value}
            )
    attrs = {"cat": "step", "compute": compute, "data": data, "comm": comm}
    events.append(
        {
            "t": t - dur,
            "rank": rank,
            "step": step,
            "kind": "span",
            "name": "step",
            "dur": dur,
            "attrs": attrs,
        }
    )
    hb = {"world_size": world, "step": step + 1, **heartbeat}
    state.ingest({"rank": rank, "state": hb, "events": events}, now=t)


def collective(
    state: RunState,
    rank: int,
    seq: int,
    *,
    enter: float,
    exit: float,
    step: int,
    op: str = "all_reduce",
    nbytes: int = 4096,
) -> None:
    """One rank's record of collective number ``seq``."""
    attrs = {"cat": "collective", "op": op, "seq": seq, "bytes": nbytes, "exit": exit}
    ev = {
        "t": enter,
        "rank": rank,
        "step": step,
        "kind": "span",
        "name": op,
        "dur": exit - enter,
        "attrs": attrs,
    }
    state.ingest({"rank": rank, "events": [ev]}, now=exit)
