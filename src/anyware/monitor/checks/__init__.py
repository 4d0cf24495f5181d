"""The aggregator's health checks: one per file, each with a stable code.

=====  ==================  ====================================================================
code   name                fires when
=====  ==================  ====================================================================
HM001  nonfinite           a loss or gradient norm is NaN/Inf (the same step)
HM002  loss_spike          the loss jumps far above its robust baseline and stays there
HM003  straggler           one rank's compute (or data) time is far above the fastest rank's
HM004  hang                no progress for max(5 × p99 step, 10 s); names the rank behind
HM005  slow_collective     everyone arrives on time but the collective itself is slow
HM006  memory_growth       memory rises steadily (Theil-Sen slope, mostly monotonic)
HM007  dataloader_stall    data loading takes a large share of the step, step after step
HM008  rank_exit           a rank crashed or went silent without saying goodbye
=====  ==================  ====================================================================
"""

from __future__ import annotations

import difflib

from anyware.monitor.checks.base import Check
from anyware.monitor.checks.dataloader_stall import DataloaderStall
from anyware.monitor.checks.hang import Hang
from anyware.monitor.checks.loss_spike import LossSpike
from anyware.monitor.checks.memory_growth import MemoryGrowth
from anyware.monitor.checks.nonfinite import Nonfinite
from anyware.monitor.checks.rank_exit import RankExit
from anyware.monitor.checks.slow_collective import SlowCollective
from anyware.monitor.checks.straggler import Straggler
from anyware.monitor.config import CheckConfig

CHECKS: dict[str, type[Check]] = {}


def register_check(cls: type[Check]) -> type[Check]:
    assert cls.name not in CHECKS, f"check {cls.name!r} registered twice"
    assert all(c.code != cls.code for c in CHECKS.values()), f"code {cls.code} taken"
    CHECKS[cls.name] = cls
    return cls


for _cls in (
    Nonfinite,
    LossSpike,
    Straggler,
    Hang,
    SlowCollective,
    MemoryGrowth,
    DataloaderStall,
    RankExit,
):
    register_check(_cls)


def get_check(name: str) -> type[Check]:
    """The check class called ``name`` (or with code ``name``); a miss suggests the closest."""
    for cls in CHECKS.values():
        if name in (cls.name, cls.code):
            return cls
    close = difflib.get_close_matches(name, sorted(CHECKS), n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise KeyError(f"no health check {name!r} (known: {', '.join(sorted(CHECKS))}){hint}")


def instantiate(cfg: CheckConfig, only: list[str] | None = None) -> list[Check]:
    names = only if only is not None else list(CHECKS)
    return [get_check(n)(cfg) for n in names]


__all__ = ["CHECKS", "Check", "get_check", "instantiate", "register_check"]
