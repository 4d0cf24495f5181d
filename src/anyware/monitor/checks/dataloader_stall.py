"""HM007 dataloader_stall: data loading takes a large share of a rank's step, step after step.

Why: the device sits idle while the input pipeline catches up; throughput drops with no error
anywhere. On one rank only it also makes that rank a straggler (see HM003, ``cause:
dataloader``); on every rank it is a job-wide input bottleneck.
Rule: a step stalls when its data time (previous step's end to the first forward) exceeds
``dataloader_fraction`` of the step and ``dataloader_min_s``; ``dataloader_persist`` stalled
steps in a row fire, per rank.
Example: rank 1 reads from a network filesystem; 40 ms of a 60 ms step is waiting for data.
Fix: more loader workers, pinned memory and prefetching, local or cached data, fewer
per-sample Python transforms.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anyware.monitor.alerts import Finding
from anyware.monitor.checks.base import Check

if TYPE_CHECKING:
    from anyware.monitor.config import CheckConfig
    from anyware.monitor.state import RunState


class DataloaderStall(Check):
    code = "HM007"
    name = "dataloader_stall"
    severity = "warning"

    def __init__(self, cfg: CheckConfig) -> None:
        super().__init__(cfg)
        self.cursor: dict[int, int] = {}
        self.run: dict[int, int] = {}
        self.calm: dict[int, int] = {}
        self.findings: dict[int, Finding] = {}

    def evaluate(self, state: RunState, now: float) -> list[Finding]:
        cfg = self.cfg
        for step, rows in state.steps.items():
            for rank, row in rows.items():
                if step <= self.cursor.get(rank, -1):
                    continue
                self.cursor[rank] = step
                data = row.get("data") or 0.0
                if (
                    row.dur > 0
                    and data > cfg.dataloader_fraction * row.dur
                    and data > cfg.dataloader_min_s
                ):
                    self.run[rank] = self.run.get(rank, 0) + 1
                    self.calm[rank] = 0
                    old = self.findings.get(rank)
                    firing = self.run[rank] >= cfg.dataloader_persist or (
                        old is not None and old.firing
                    )
                    self.findings[rank] = Finding(
                        key=f"rank{rank}",
                        firing=firing,
                        culprit_rank=rank,
                        step=old.step if old is not None and old.firing else step,
                        message=f"rank {rank} waits {data * 1e3:.1f} ms for data in a {row.dur * 1e3:.1f} ms step "
                        f"({data / row.dur:.0%})",
                        attrs={"data_s": data, "step_s": row.dur},
                    )
                else:
                    self.run[rank] = 0
                    if rank in self.findings:
                        self.calm[rank] = self.calm.get(rank, 0) + 1
                        if not self.findings[rank].firing or self.calm[rank] >= cfg.resolve_after:
                            del self.findings[rank]
        return list(self.findings.values())
