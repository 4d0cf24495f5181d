"""HM005 slow_collective: every rank arrives on time, yet the collective itself takes far longer
than its own baseline. No rank is blamed.

Why: a degraded link, a congested switch or a misconfigured transport slows every rank equally;
blaming a rank (as a naive "longest collective" rule would) sends people to the wrong machine.
Rule: per sequence number that all ranks reported, ``transfer = min(exit) - max(enter)`` (time
after the last arrival) and ``spread = max(enter) - min(enter)``. Baseline: median transfer of
the first ``slow_collective_baseline`` collectives with the same (op, bytes). Slow when
transfer > ratio × baseline, > ``slow_collective_min_s``, and spread < transfer (arrivals were
not the problem). ``slow_collective_persist`` consecutive slow ones fire.
Example: all_reduce of 4 MiB takes 3 ms for 40 steps, then 250 ms with arrivals within 1 ms.
Fix: check the interconnect (link errors, NCCL_/HCCL_ transport settings, topology), not a rank.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anyware.monitor.alerts import Finding
from anyware.monitor.checks.base import Check, median

if TYPE_CHECKING:
    from anyware.monitor.config import CheckConfig
    from anyware.monitor.state import Collective, RunState


class SlowCollective(Check):
    code = "HM005"
    name = "slow_collective"
    severity = "warning"

    def __init__(self, cfg: CheckConfig) -> None:
        super().__init__(cfg)
        self.cursor = 0
        self.baseline: dict[tuple[str, int], list[float]] = {}
        self.run = 0
        self.calm = 0
        self.finding: Finding | None = None

    def evaluate(self, state: RunState, now: float) -> list[Finding]:
        n = state.world_size()
        for seq, entry in state.colls.items():
            if seq <= self.cursor:
                continue
            if len(entry) < n:
                if now - max(c.exit for c in entry.values()) < 5.0:
                    break  # wait for the other ranks' records of this one
                self.cursor = seq
                continue
            self.cursor = seq
            self._observe(seq, entry)
        return [self.finding] if self.finding is not None else []

    def _observe(self, seq: int, entry: dict[int, Collective]) -> None:
        colls = list(entry.values())
        first = colls[0]
        key = (first.op, first.nbytes)
        transfer = max(min(c.exit for c in colls) - max(c.enter for c in colls), 0.0)
        spread = max(c.enter for c in colls) - min(c.enter for c in colls)
        base = self.baseline.setdefault(key, [])
        if len(base) < self.cfg.slow_collective_baseline:
            base.append(transfer)
            return
        b = median(base)
        slow = (
            transfer > self.cfg.slow_collective_ratio * b
            and transfer > self.cfg.slow_collective_min_s
            and spread < transfer
        )
        if slow:
            self.run += 1
            self.calm = 0
            firing = self.run >= self.cfg.slow_collective_persist or (
                self.finding is not None and self.finding.firing
            )
            self.finding = Finding(
                key=f"{first.op}:{first.nbytes}",
                firing=firing,
                culprit_rank=None,
                step=self.finding.step
                if self.finding is not None and self.finding.firing
                else first.step,
                message=f"{first.op} of {first.nbytes} bytes took {transfer * 1e3:.1f} ms after the last arrival "
                f"(baseline {b * 1e3:.1f} ms); arrivals within {spread * 1e3:.1f} ms, no rank to blame",
                attrs={
                    "op": first.op,
                    "bytes": first.nbytes,
                    "seq": seq,
                    "transfer_s": transfer,
                    "baseline_s": b,
                    "arrival_spread_s": spread,
                },
            )
            return
        self.run = 0
        if self.finding is not None:
            self.calm += 1
            if not self.finding.firing or self.calm >= self.cfg.resolve_after:
                self.finding, self.calm = None, 0
