"""Settings of the monitor: what a training process collects and ships, and how strict the
aggregator's checks are.

Both are frozen dataclasses validated on construction, so a typo in a threshold fails at start
with one message naming the field, not minutes later inside a check.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

#: Shipping faster than 20 Hz buys no detection latency (checks tick at 5 Hz) and costs GIL time;
#: slower than 5 Hz makes the dashboard feel stale (event-to-browser target is < 1 s).
MIN_SHIP_HZ = 5.0
MAX_SHIP_HZ = 20.0


@dataclass(frozen=True, slots=True, kw_only=True)
class MonitorConfig:
    """What one training process collects and where it sends it."""

    addr: str | None = None
    """``host:port`` of the aggregator; ``None``: write JSONL only."""
    events_dir: Path | None = None
    """Directory for this rank's ``rank<N>.jsonl``; ``None``: ship only."""
    token: str | None = None
    """Bearer token for an aggregator bound to a non-loopback address."""
    ship_hz: float = 10.0
    """How often the background thread drains the ring buffer (5-20 Hz)."""
    ring_size: int = 65_536
    """Records the hot path may queue before the oldest are dropped (and counted)."""
    spool_bytes: int = 32 * 2**20
    """In-memory backlog kept for the aggregator while it is unreachable; oldest dropped beyond."""
    disk_bytes: int = 2**30
    """Most bytes this rank's JSONL may grow to; beyond it (or on a full disk) one warning."""
    stats_every: int = 10
    """Update/parameter ratio every this many steps (it copies the parameters once)."""
    grad_norm_every: int = 1
    """Gradient norm every this many steps (a fused norm over all gradients; 1 catches a
    non-finite gradient on its own step). A norm from ``clip_grad_norm_`` is reused for free."""
    flops_per_step: float | None = None
    """Training FLOPs of one step on this rank; with ``peak_flops`` gives MFU."""
    peak_flops: float | None = None
    """The device's peak FLOP/s for the dtype in use."""
    tokens_per_step: int | None = None
    """Tokens one step consumes on this rank (default: the size of an integer model input)."""
    wrap_collectives: bool = True
    """Time torch.distributed collectives (enter/exit, op, bytes, sequence number)."""

    def __post_init__(self) -> None:
        if self.addr is not None:
            parse_addr(self.addr)
        if not MIN_SHIP_HZ <= self.ship_hz <= MAX_SHIP_HZ:
            raise ValueError(
                f"MonitorConfig.ship_hz must be within {MIN_SHIP_HZ:g}-{MAX_SHIP_HZ:g}, got {self.ship_hz}"
            )
        for name in ("ring_size", "spool_bytes", "disk_bytes", "stats_every", "grad_norm_every"):
            if getattr(self, name) <= 0:
                raise ValueError(
                    f"MonitorConfig.{name} must be positive, got {getattr(self, name)}"
                )
        for name in ("flops_per_step", "peak_flops"):
            v = getattr(self, name)
            if v is not None and not (math.isfinite(v) and v > 0):
                raise ValueError(f"MonitorConfig.{name} must be a positive number, got {v}")


def parse_addr(addr: str) -> tuple[str, int]:
    """``host:port`` → (host, port); a bare ``:port`` means 127.0.0.1."""
    host, sep, port = addr.strip().rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"monitor address {addr!r} must look like host:port (e.g. 127.0.0.1:8765)")
    return (host.strip("[]") or "127.0.0.1", int(port))


@dataclass(frozen=True, slots=True, kw_only=True)
class CheckConfig:
    """Thresholds of the aggregator's checks. Defaults suit real jobs; tests shrink the times."""

    straggler_score: float = 0.75
    """NVRx rule: flag a rank whose score (fastest median ÷ its median) falls below this."""
    straggler_z: float = 3.5
    """Robust z-score (MAD) a rank must also exceed when the world has 3 or more ranks."""
    straggler_window: int = 6
    """Steps (all ranks reported) whose medians are compared."""
    straggler_persist: int = 3
    """Consecutive flagged evaluations (new steps) before the alert fires."""
    straggler_warmup_steps: int = 10
    """First steps left out: lazy initialisation and staggered process start make them uneven."""
    straggler_min_gap_s: float = 0.002
    """Ignore differences below this: scheduler noise on µs-scale steps is not a straggler."""
    hang_factor: float = 5.0
    """No progress for hang_factor × p99 step time ..."""
    hang_min_s: float = 10.0
    """... or this many seconds, whichever is longer."""
    heartbeat_timeout_s: float = 10.0
    """A rank silent this long (shipper thread included) without saying goodbye has exited."""
    nonfinite_wait_s: float = 1.0
    """How long to wait for every rank's record of the step before naming the culprit."""
    loss_spike_k: float = 6.0
    """A loss above median + k × robust spread of the window is a spike ..."""
    loss_spike_rel: float = 0.5
    """... and also above median × (1 + rel) (guards a window with near-zero spread)."""
    loss_spike_window: int = 20
    """Past steps forming the baseline."""
    loss_spike_persist: int = 2
    """Consecutive spiking steps before the alert fires."""
    slow_collective_ratio: float = 3.0
    """Transfer time over the (op, bytes) baseline median that counts as slow."""
    slow_collective_min_s: float = 0.02
    """Ignore slow-downs below this absolute transfer time."""
    slow_collective_baseline: int = 8
    """Collectives of one (op, bytes) that form its baseline."""
    slow_collective_persist: int = 3
    """Consecutive slow collectives before the alert fires."""
    memory_window: int = 30
    """Memory samples per rank in the slope test."""
    memory_min_growth_bytes: float = 256 * 2**20
    """Growth over the window (Theil-Sen slope × span) that counts as a leak."""
    memory_monotonic: float = 0.8
    """Fraction of sample-to-sample changes that must be increases."""
    memory_warmup_steps: int = 10
    """Steps skipped before sampling: allocators grow while warming up."""
    dataloader_fraction: float = 0.3
    """Data loading above this fraction of the step time is a stall ..."""
    dataloader_min_s: float = 0.005
    """... when it is also longer than this ..."""
    dataloader_persist: int = 5
    """... for this many consecutive steps."""
    resolve_after: int = 5
    """Clean evaluations (steps) before a firing step-based alert resolves."""

    def __post_init__(self) -> None:
        for f in fields(self):
            v = getattr(self, f.name)
            if (
                isinstance(v, bool)
                or not isinstance(v, int | float)
                or not math.isfinite(v)
                or v <= 0
            ):
                raise ValueError(f"CheckConfig.{f.name} must be a positive number, got {v!r}")
        if not 0 < self.straggler_score < 1:
            raise ValueError(
                f"CheckConfig.straggler_score must be in (0, 1), got {self.straggler_score}"
            )
        for name in ("memory_monotonic", "dataloader_fraction"):
            if getattr(self, name) > 1:
                raise ValueError(f"CheckConfig.{name} must be in (0, 1], got {getattr(self, name)}")

    @classmethod
    def from_mapping(cls, data: dict[str, Any]) -> CheckConfig:
        """Build from JSON-like data; an unknown key fails naming the closest field."""
        import difflib

        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                close = difflib.get_close_matches(key, sorted(known), n=1)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                raise ValueError(f"unknown check setting {key!r}{hint}")
        return cls(**data)

    @classmethod
    def from_file(cls, path: Path) -> CheckConfig:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as e:
            raise ValueError(f"cannot read check settings from {path}: {e}") from None
        if not isinstance(data, dict):
            raise ValueError(f"check settings in {path} must be a JSON object")
        return cls.from_mapping(data)

    def to_json(self) -> dict[str, float]:
        return {f.name: getattr(self, f.name) for f in fields(self)}
