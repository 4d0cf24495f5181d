"""HM003 straggler: one rank's own work (compute + data loading) is far slower than the fastest
rank's, so every synchronous collective waits for it.

Why: in a synchronous job the whole world runs at the slowest rank's pace, and per-host views
look healthy because every rank's *step* time is the same. The slow rank spends the *least* time
in collectives (the others wait for it), so the signal is each rank's time outside collectives,
``busy = step - blocking collective time``, and its arrival lag at each collective.
Rule: over the last ``straggler_window`` steps every rank reported, a rank's NVRx score is the
fastest rank's median busy time ÷ its own; below ``straggler_score`` (0.75: ≥ 1.33× slower) it
is flagged, and with 3+ ranks its robust z-score ((x - median) / 1.4826·MAD) must also exceed
``straggler_z``. An arrival score, 1 - median arrival lag ÷ median step, catches the case where
waiting happens inside backward (DDP), outside the wrapped collectives. Flagged for
``straggler_persist`` consecutive steps: fires, naming the rank and the cause (compute or
dataloader).
Example: rank 1's forward takes 1.6× as long from step 10; score 0.62 → fires at step ~15.
Fix: check that rank's device (thermal throttling, ECC, a noisy neighbour) or its input
pipeline (``cause: dataloader``: more workers, local data, prefetch).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from anyware.monitor.alerts import Finding
from anyware.monitor.checks.base import Check, mad, median

if TYPE_CHECKING:
    from anyware.monitor.config import CheckConfig
    from anyware.monitor.state import RunState


class Straggler(Check):
    code = "HM003"
    name = "straggler"
    severity = "warning"

    def __init__(self, cfg: CheckConfig) -> None:
        super().__init__(cfg)
        self.last = -1
        self.flagged: dict[int, int] = {}
        self.calm: dict[int, int] = {}
        self.findings: dict[int, Finding] = {}

    def evaluate(self, state: RunState, now: float) -> list[Finding]:
        complete = [s for s in state.complete_steps() if s >= self.cfg.straggler_warmup_steps]
        if len(complete) < self.cfg.straggler_window or complete[-1] <= self.last:
            return list(self.findings.values())
        for step in complete:
            if step > self.last:
                self.last = step
                self._evaluate_at(
                    state, [s for s in complete if s <= step][-self.cfg.straggler_window :]
                )
        return list(self.findings.values())

    def _evaluate_at(self, state: RunState, window: list[int]) -> None:
        if len(window) < self.cfg.straggler_window:
            return
        cfg = self.cfg
        ranks = sorted(state.steps[window[-1]])
        busy = {r: median([_busy(state.steps[s][r].values) for s in window]) for r in ranks}
        data = {r: median([state.steps[s][r].get("data") or 0.0 for s in window]) for r in ranks}
        step_med = median([state.steps[s][r].dur for s in window for r in ranks])
        lags = _arrival_lags(state, set(window), ranks)
        fastest = min(busy.values())
        spread = 1.4826 * mad(list(busy.values()))
        center = median(list(busy.values()))
        table: list[dict[str, Any]] = []
        for r in ranks:
            score = fastest / busy[r] if busy[r] > 0 else 1.0
            z = (busy[r] - center) / spread if spread > 0 else 0.0
            lag = lags.get(r, 0.0)
            arrival = 1.0 - lag / step_med if step_med > 0 else 1.0
            robust_ok = len(ranks) < 3 or z > cfg.straggler_z
            by_busy = (
                score < cfg.straggler_score
                and busy[r] - fastest > cfg.straggler_min_gap_s
                and robust_ok
            )
            by_arrival = arrival < cfg.straggler_score and lag > cfg.straggler_min_gap_s
            flag = by_busy or by_arrival
            table.append(
                {
                    "rank": r,
                    "busy_s": busy[r],
                    "data_s": data[r],
                    "score": round(score, 4),
                    "z": round(z, 3),
                    "arrival_lag_s": lag,
                    "arrival_score": round(arrival, 4),
                    "flagged": flag,
                }
            )
            if flag:
                self.flagged[r] = self.flagged.get(r, 0) + 1
                self.calm[r] = 0
                min_data = min(data.values())
                cause = "dataloader" if data[r] - min_data > (busy[r] - fastest) / 2 else "compute"
                old = self.findings.get(r)
                firing = self.flagged[r] >= cfg.straggler_persist or (
                    old is not None and old.firing
                )
                self.findings[r] = Finding(
                    key=f"rank{r}",
                    firing=firing,
                    culprit_rank=r,
                    step=old.step if old is not None and old.firing else window[-1],
                    message=f"rank {r} is a straggler ({cause}): score {min(score, arrival):.2f}, "
                    f"{busy[r] * 1e3:.1f} ms busy vs fastest {fastest * 1e3:.1f} ms",
                    attrs={
                        "cause": cause,
                        "score": round(min(score, arrival), 4),
                        "z": round(z, 3),
                    },
                )
            else:
                self.flagged[r] = 0
                if r in self.findings:
                    self.calm[r] = self.calm.get(r, 0) + 1
                    if not self.findings[r].firing or self.calm[r] >= cfg.resolve_after:
                        del self.findings[r]
        state.tables["straggler"] = {"step": window[-1], "rows": table}


def _busy(values: dict[str, float | None]) -> float:
    c = values.get("compute")
    d = values.get("data")
    return (c or 0.0) + (d or 0.0)


def _arrival_lags(state: RunState, window: set[int], ranks: list[int]) -> dict[int, float]:
    """Median over the window's collectives of (this rank's enter - earliest enter)."""
    per_rank: dict[int, list[float]] = {r: [] for r in ranks}
    for seq in reversed(state.colls):
        entry = state.colls[seq]
        steps = {c.step for c in entry.values()}
        if not steps & window:
            known = [s for s in steps if s is not None]
            if known and max(known) < min(window):
                break
            continue
        if len(entry) < len(ranks):
            continue
        first = min(c.enter for c in entry.values())
        for r in ranks:
            if r in entry:
                per_rank[r].append(entry[r].enter - first)
    return {r: median(v) for r, v in per_rank.items() if v}
