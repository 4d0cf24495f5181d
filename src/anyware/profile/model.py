"""The analysis' results: plain frozen records with a ``to_json`` each (the ``--json`` twin of
every table, and what the Profile page fetches)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from anyware.profile.classify import BUCKET_KEYS


def _r(x: float | None, nd: int = 3) -> float | None:
    return None if x is None else round(float(x), nd)


@dataclass(frozen=True, slots=True, kw_only=True)
class Breakdown:
    """Exclusive time per bucket over a span, in µs: the parts add up to ``span_us``."""

    span_us: float
    compute_us: float
    comm_us: float
    memory_us: float
    other_us: float
    idle_us: float

    def __post_init__(self) -> None:
        if self.span_us < 0:
            raise ValueError(f"negative span {self.span_us}")

    def parts(self) -> dict[str, float]:
        return {
            "compute": self.compute_us,
            "comm": self.comm_us,
            "memory": self.memory_us,
            "other": self.other_us,
            "idle": self.idle_us,
        }

    def pct(self) -> dict[str, float]:
        span = self.span_us or 1.0
        return {k: 100.0 * v / span for k, v in self.parts().items()}

    def to_json(self) -> dict[str, Any]:
        return {
            "span_us": _r(self.span_us),
            **{f"{k}_us": _r(v) for k, v in self.parts().items()},
            "pct": {k: _r(v, 2) for k, v in self.pct().items()},
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class StepBreakdown:
    step: int
    duration_us: float
    """The host's ``ProfilerStep#N`` duration."""
    breakdown: Breakdown | None
    """``None`` when no device event was launched in this step."""
    overlap_pct: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "duration_us": _r(self.duration_us),
            "breakdown": None if self.breakdown is None else self.breakdown.to_json(),
            "overlap_pct": _r(self.overlap_pct, 2),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class OpStat:
    name: str
    kind: str
    """``op`` (host operator, by self time) or ``kernel`` (device event, by duration)."""
    bucket: str
    count: int
    total_us: float
    module: str | None = None
    source: str | None = None
    launched_by: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "kind": self.kind,
            "bucket": self.bucket,
            "count": self.count,
            "total_us": _r(self.total_us),
            "mean_us": _r(self.total_us / self.count if self.count else 0.0),
            "module": self.module,
            "source": self.source,
            "launched_by": self.launched_by,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class CommStat:
    """One communication op or kernel name: how long it ran and how much of that compute hid."""

    name: str
    count: int
    total_us: float
    """Summed durations (whole spans, not self time: a collective's copies are its time)."""
    overlap_pct: float | None
    """Share of the union of its intervals during which compute also ran (any thread/stream)."""

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "count": self.count,
            "total_us": _r(self.total_us),
            "overlap_pct": _r(self.overlap_pct, 2),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class LaunchStats:
    launches: int
    launches_per_s: float
    mean_launch_us: float | None
    median_queue_us: float | None
    """Median time from the launch call to the kernel's start on the device."""
    starved_us: float
    """Device idle time that ended with a kernel launched only after the device went idle."""
    starved_pct: float
    host_bound: bool

    def to_json(self) -> dict[str, Any]:
        return {
            "launches": self.launches,
            "launches_per_s": _r(self.launches_per_s, 1),
            "mean_launch_us": _r(self.mean_launch_us),
            "median_queue_us": _r(self.median_queue_us),
            "starved_us": _r(self.starved_us),
            "starved_pct": _r(self.starved_pct, 2),
            "host_bound": self.host_bound,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RankReport:
    rank: int
    path: str
    mode: str
    """``device`` (breakdown of device streams) or ``host`` (no device events: host ops)."""
    events: int
    whole: Breakdown
    overlap_pct: float | None
    """Share of communication time during which compute also ran."""
    steps: list[StepBreakdown]
    mean_step_us: float | None
    top_ops: list[OpStat]
    top_kernels: list[OpStat]
    launch: LaunchStats | None
    memory: list[dict[str, Any]]
    problems: list[str]
    totals: dict[str, float] = field(repr=False)
    """Time per op (host mode) or kernel (device mode) name, for cross-rank comparison."""
    world_size: int | None = None
    run_id: str | None = None
    window_us: tuple[float, float] | None = None
    comm_ops: list[CommStat] = field(default_factory=list)
    """Per communication name, longest first (async ``anyware.comm`` spans apart)."""

    @property
    def busy_us(self) -> float:
        """Time the rank spent doing its own work: everything but communication and idle."""
        w = self.whole
        return w.compute_us + w.memory_us + w.other_us

    def per_step(self, us: float) -> float:
        n = len(self.steps) or 1
        return us / n

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "path": self.path,
            "mode": self.mode,
            "events": self.events,
            "breakdown": self.whole.to_json(),
            "overlap_pct": _r(self.overlap_pct, 2),
            "steps": [s.to_json() for s in self.steps],
            "mean_step_us": _r(self.mean_step_us),
            "top_ops": [o.to_json() for o in self.top_ops],
            "top_kernels": [o.to_json() for o in self.top_kernels],
            "comm_ops": [c.to_json() for c in self.comm_ops],
            "launch": None if self.launch is None else self.launch.to_json(),
            "memory": self.memory,
            "problems": self.problems,
            "world_size": self.world_size,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Slowest:
    rank: int
    busy_per_step_us: float
    median_busy_per_step_us: float
    extra_per_step_us: dict[str, float]
    """Per bucket (compute, memory, other, comm, idle): this rank minus the median rank."""
    top_extra: list[tuple[str, float]]
    """Ops or kernels with the most extra time per step against the median rank."""

    def to_json(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "busy_per_step_us": _r(self.busy_per_step_us),
            "median_busy_per_step_us": _r(self.median_busy_per_step_us),
            "extra_per_step_us": {k: _r(v) for k, v in self.extra_per_step_us.items()},
            "top_extra": [{"name": n, "extra_per_step_us": _r(v)} for n, v in self.top_extra],
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class ProfileReport:
    source: str
    ranks: list[RankReport]
    slowest: Slowest | None
    biggest_cost: str
    problems: list[str]

    def rank(self, r: int) -> RankReport:
        for rep in self.ranks:
            if rep.rank == r:
                return rep
        raise KeyError(f"no rank {r} in {self.source}; ranks: {[x.rank for x in self.ranks]}")

    def to_json(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "ranks": [r.to_json() for r in self.ranks],
            "slowest": None if self.slowest is None else self.slowest.to_json(),
            "biggest_cost": self.biggest_cost,
            "problems": self.problems,
            "buckets": [*BUCKET_KEYS, "idle"],
        }
