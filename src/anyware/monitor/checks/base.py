"""What every health check is: a class with a stable code, a short name and ``evaluate``.

Checks are stateful (persistence counters, baselines): the aggregator makes one instance of each
per run and calls ``evaluate`` on every tick with the run's state locked.
"""

from __future__ import annotations

import abc
import statistics
from typing import TYPE_CHECKING, ClassVar

if TYPE_CHECKING:
    from anyware.monitor.alerts import Finding
    from anyware.monitor.config import CheckConfig
    from anyware.monitor.state import RunState


class Check(abc.ABC):
    code: ClassVar[str]
    """Stable code (``HM003``): the alert record's ``name``."""
    name: ClassVar[str]
    """Short name (``straggler``): the alert record's ``attrs.check``."""
    severity: ClassVar[str] = "error"

    def __init__(self, cfg: CheckConfig) -> None:
        self.cfg = cfg

    @abc.abstractmethod
    def evaluate(self, state: RunState, now: float) -> list[Finding]:
        """Findings for this tick; an empty list resolves whatever this check had firing."""


def median(xs: list[float]) -> float:
    return statistics.median(xs) if xs else 0.0


def mad(xs: list[float]) -> float:
    """Median absolute deviation (unscaled)."""
    m = median(xs)
    return median([abs(x - m) for x in xs])


def p99(xs: list[float]) -> float:
    if not xs:
        return 0.0
    s = sorted(xs)
    return s[min(len(s) - 1, int(0.99 * (len(s) - 1) + 0.5))]
