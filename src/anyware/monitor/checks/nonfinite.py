"""HM001 nonfinite: a NaN or Inf loss or gradient norm.

Why: a non-finite value poisons the parameters at the next optimizer step and every step after;
found hours later it costs the whole run since the last good checkpoint.
Example: rank 1's loss is ``nan`` at step 20; after the gradient allreduce every rank's gradient
norm is ``nan`` at step 20 too. The alert names step 20 and rank 1 (the rank whose *loss* went
bad first), because the others only inherited it through the collective.
Fix: look at rank 1's batch at step 20 (bad sample, overflow in fp16/bf16 - try loss scaling or
a lower learning rate), then restart from the last checkpoint.
"""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from anyware.monitor.alerts import Finding
from anyware.monitor.checks.base import Check

if TYPE_CHECKING:
    from anyware.monitor.config import CheckConfig
    from anyware.monitor.state import RunState, StepRow


def _bad(v: float | None) -> bool:
    return v is not None and not math.isfinite(v)


class Nonfinite(Check):
    code = "HM001"
    name = "nonfinite"
    severity = "critical"

    def __init__(self, cfg: CheckConfig) -> None:
        super().__init__(cfg)
        self.first: int | None = None
        self.first_seen = 0.0
        self.last_bad = -1
        self.reset_step = -1

    def evaluate(self, state: RunState, now: float) -> list[Finding]:
        if not state.steps:
            return []
        recent = list(state.steps.items())[-200:]
        bad = [
            s
            for s, rows in recent
            if s > self.reset_step and any(_row_bad(r) for r in rows.values())
        ]
        if bad:
            self.last_bad = max(self.last_bad, bad[-1])
        if self.first is None:
            if not bad:
                return []
            self.first, self.first_seen = bad[0], now
        latest = next(reversed(state.steps))
        if latest - self.last_bad >= self.cfg.resolve_after:
            self.first, self.reset_step = None, latest
            return []
        rows = state.steps.get(self.first, {})
        decided = (
            len(rows) >= state.world_size() or now - self.first_seen >= self.cfg.nonfinite_wait_s
        )
        culprit = _culprit(rows)
        what = sorted(
            {name for r in rows.values() for name in ("loss", "grad_norm") if _bad(r.get(name))}
        )
        return [
            Finding(
                key="job",
                firing=decided,
                culprit_rank=culprit,
                step=self.first,
                message=f"non-finite {' and '.join(what) or 'value'} at step {self.first}"
                + (f", first on rank {culprit}" if culprit is not None else ""),
                attrs={"values": what},
            )
        ]


def _row_bad(r: StepRow) -> bool:
    return _bad(r.get("loss")) or _bad(r.get("grad_norm"))


def _culprit(rows: dict[int, StepRow]) -> int | None:
    # A bad loss is where it started; a bad gradient alone may have come in through a collective.
    for name in ("loss", "grad_norm"):
        ranks = sorted(r for r, row in rows.items() if _bad(row.get(name)))
        if len(ranks) == 1:
            return ranks[0]
        if ranks:
            return None
    return None
