"""HM002 loss_spike: the loss jumps far above its recent robust baseline, and stays up.

Why: a spike that persists is how divergence starts (bad data shard, too high a learning rate,
an optimizer state blow-up); one noisy batch is not.
Rule: with ``m`` the median and ``s`` = 1.4826 × MAD of the last ``loss_spike_window`` normal
steps (loss averaged over ranks), a step spikes when ``loss > m + k·s`` and ``loss > m·(1+rel)``;
``loss_spike_persist`` consecutive spikes fire. Spiking steps do not enter the baseline.
Example: loss ≈ 2.1 ± 0.02 for 50 steps, then 9.5, 9.8 → fires at the second step.
Fix: skip or inspect the batches of those steps, lower the learning rate, or rewind to a
checkpoint before the spike.
"""

from __future__ import annotations

import math
from collections import deque
from typing import TYPE_CHECKING

from anyware.monitor.alerts import Finding
from anyware.monitor.checks.base import Check, mad, median

if TYPE_CHECKING:
    from anyware.monitor.config import CheckConfig
    from anyware.monitor.state import RunState


class LossSpike(Check):
    code = "HM002"
    name = "loss_spike"
    severity = "warning"

    def __init__(self, cfg: CheckConfig) -> None:
        super().__init__(cfg)
        self.baseline: deque[float] = deque(maxlen=cfg.loss_spike_window)
        self.cursor = -1
        self.run = 0
        self.calm = 0
        self.spike_step = -1
        self.firing = False
        self.finding: Finding | None = None

    def evaluate(self, state: RunState, now: float) -> list[Finding]:
        for step in state.complete_steps():
            if step <= self.cursor:
                continue
            self.cursor = step
            losses = [r.get("loss") for r in state.steps[step].values()]
            vals = [v for v in losses if v is not None and math.isfinite(v)]
            if not vals:
                continue
            self._observe(step, sum(vals) / len(vals))
        return [self.finding] if self.finding is not None else []

    def _observe(self, step: int, loss: float) -> None:
        cfg = self.cfg
        if len(self.baseline) < max(cfg.loss_spike_window // 2, 3):
            self.baseline.append(loss)
            return
        base = list(self.baseline)
        m = median(base)
        s = max(1.4826 * mad(base), 1e-12)
        spike = (
            loss > m + cfg.loss_spike_k * s and loss > m * (1 + cfg.loss_spike_rel)
            if m > 0
            else loss > m + cfg.loss_spike_k * s
        )
        if spike:
            self.run += 1
            self.calm = 0
            if self.run == 1:
                self.spike_step = step
            if self.run >= cfg.loss_spike_persist:
                self.firing = True
            self.finding = Finding(
                key="job",
                firing=self.firing,
                step=self.spike_step,
                message=f"loss {loss:.4g} at step {step} is {loss / m if m else math.inf:.1f}× its baseline median {m:.4g}",
                attrs={"loss": loss, "baseline": m, "spread": s},
            )
            return
        self.run = 0
        self.baseline.append(loss)
        if self.finding is None:
            return
        self.calm += 1
        if not self.firing or self.calm >= cfg.resolve_after:
            self.finding, self.firing, self.calm = None, False, 0
