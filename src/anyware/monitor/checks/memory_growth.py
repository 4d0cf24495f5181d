"""HM006 memory_growth: a rank's memory keeps rising (a leak), long before it runs out.

Why: an out-of-memory crash hours into a run loses everything since the last checkpoint; the
usual causes (a list that keeps tensors with their graphs, a growing cache) show as a steady
climb from the first minutes.
Rule: over the last ``memory_window`` samples after ``memory_warmup_steps``, the Theil-Sen slope
(median of pairwise slopes, robust to one-off jumps) times the window's span in steps must
exceed ``memory_min_growth_bytes``, and at least ``memory_monotonic`` of the sample-to-sample
changes must be increases (a sawtooth from a caching allocator is not a leak).
Example: rank 1 keeps each step's loss tensor with its graph: +4 MiB per step, 40 steps → fires.
Fix: ``loss.item()`` or ``.detach()`` before storing values, clear caches, check hooks that keep
references.
"""

from __future__ import annotations

import itertools
from typing import TYPE_CHECKING

from anyware.monitor.alerts import Finding
from anyware.monitor.checks.base import Check, median

if TYPE_CHECKING:
    from anyware.monitor.config import CheckConfig
    from anyware.monitor.state import RunState


def theil_sen(points: list[tuple[float, float]]) -> float:
    slopes = [
        (y2 - y1) / (x2 - x1)
        for i, (x1, y1) in enumerate(points)
        for x2, y2 in points[i + 1 :]
        if x2 != x1
    ]
    return median(slopes)


class MemoryGrowth(Check):
    code = "HM006"
    name = "memory_growth"
    severity = "warning"

    def __init__(self, cfg: CheckConfig) -> None:
        super().__init__(cfg)
        self.calm: dict[int, int] = {}
        self.findings: dict[int, Finding] = {}
        self.seen: dict[int, int] = {}

    def evaluate(self, state: RunState, now: float) -> list[Finding]:
        cfg = self.cfg
        for rank, samples in state.memory.items():
            if len(samples) == self.seen.get(rank) or not samples:
                continue
            self.seen[rank] = len(samples)
            pts = [(float(s), b) for s, _, b in samples if s >= cfg.memory_warmup_steps][
                -cfg.memory_window :
            ]
            if len(pts) < max(cfg.memory_window // 2, 4):
                continue
            slope = theil_sen(pts)
            span = pts[-1][0] - pts[0][0]
            growth = slope * span
            diffs = [b - a for (_, a), (_, b) in itertools.pairwise(pts)]
            rising = sum(d > 0 for d in diffs) / len(diffs)
            if growth >= cfg.memory_min_growth_bytes and rising >= cfg.memory_monotonic:
                self.calm[rank] = 0
                self.findings[rank] = Finding(
                    key=f"rank{rank}",
                    firing=True,
                    culprit_rank=rank,
                    step=int(pts[-1][0]),
                    message=f"rank {rank} memory grows {slope / 2**20:.2f} MiB/step "
                    f"(+{growth / 2**20:.0f} MiB over {span:.0f} steps, {rising:.0%} of samples rising)",
                    attrs={"slope_bytes_per_step": slope, "growth_bytes": growth, "rising": rising},
                )
            elif rank in self.findings:
                self.calm[rank] = self.calm.get(rank, 0) + 1
                if self.calm[rank] >= cfg.resolve_after:
                    del self.findings[rank]
        return list(self.findings.values())
