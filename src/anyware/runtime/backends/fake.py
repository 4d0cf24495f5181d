"""A configurable stand-in accelerator whose tensors live on the cpu.

Tests use it to exercise multi-device logic (device counts, visible-device masks, dtype gaps,
memory figures) without hardware. It is never picked automatically; ask for it with
``--device fake`` or ``ANYWARE_DEVICE=fake``.

Configure it with ``ANYWARE_FAKE_DEVICES``: a device count (``"4"``) or a JSON object with any
of ``count``, ``name``, ``arch``, ``memory_total`` (bytes), ``dtypes`` (names from
``DTYPE_NAMES``) and ``triton``. The default is one device without fp64, so that code paths
for devices missing a dtype are exercised by default.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, ClassVar

from anyware import _env
from anyware.runtime.backends.cpu import CpuBackend
from anyware.runtime.protocol import DTYPE_NAMES, Availability, Capability, MemoryStats


@dataclass(frozen=True, slots=True, kw_only=True)
class FakeConfig:
    """The fake device table."""

    count: int = 1
    """How many devices to report."""
    name: str = "anyware fake accelerator"
    """Device name each device reports."""
    arch: str = "fake1"
    """Architecture tag."""
    memory_total: int = 16 * 2**30
    """Memory per device in bytes."""
    dtypes: frozenset[str] = frozenset({"fp32", "fp16", "bf16", "fp8_e4m3fn", "fp8_e5m2"})
    """dtypes the device computes in (no fp64 by default)."""
    triton: bool = False
    """Whether Triton may target it."""

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"ANYWARE_FAKE_DEVICES: count must be >= 0, got {self.count}")
        unknown = set(self.dtypes) - set(DTYPE_NAMES)
        if unknown:
            raise ValueError(
                f"ANYWARE_FAKE_DEVICES: unknown dtype(s) {sorted(unknown)}; choose from {list(DTYPE_NAMES)}"
            )

    @classmethod
    def from_env(cls) -> FakeConfig:
        raw = _env.FAKE_DEVICES.get()
        if raw is None:
            return cls()
        if raw.isdigit():
            return cls(count=int(raw))
        try:
            data = json.loads(raw)
        except json.JSONDecodeError as e:
            raise ValueError(
                f"ANYWARE_FAKE_DEVICES={raw!r} is neither a count nor JSON ({e.msg}); "
                'use e.g. 4 or {"count": 4, "dtypes": ["fp32", "bf16"]}'
            ) from None
        if not isinstance(data, dict):
            raise ValueError(f"ANYWARE_FAKE_DEVICES={raw!r} must be a count or a JSON object")
        fields = {"count", "name", "arch", "memory_total", "dtypes", "triton"}
        extra = set(data) - fields
        if extra:
            raise ValueError(
                f"ANYWARE_FAKE_DEVICES: unknown key(s) {sorted(extra)}; known: {sorted(fields)}"
            )
        if "dtypes" in data:
            data["dtypes"] = frozenset(data["dtypes"])
        return cls(**data)


class FakeBackend(CpuBackend):
    name: ClassVar[str] = "fake"
    device_type: ClassVar[str] = "cpu"
    dist_backend: ClassVar[str] = "gloo"
    visible_devices_var: ClassVar[str | None] = "ANYWARE_FAKE_VISIBLE_DEVICES"
    priority: ClassVar[int] = 0

    def __init__(self, config: FakeConfig | None = None) -> None:
        self._config = config

    @property
    def config(self) -> FakeConfig:
        # Read lazily so a test can set ANYWARE_FAKE_DEVICES after the registry was built.
        return self._config if self._config is not None else FakeConfig.from_env()

    def probe(self) -> Availability:
        n = self.config.count
        if n == 0:
            return Availability(available=False, reason="ANYWARE_FAKE_DEVICES sets 0 devices")
        return Availability(available=True, reason=f"{n} simulated device(s) on the cpu")

    def device_count(self) -> int:
        return self.config.count

    def memory_stats(self, index: int = 0) -> MemoryStats:
        self._check_index(index)
        host = super().memory_stats(index)
        return MemoryStats(
            allocated=host.allocated, reserved=None, peak=host.peak, total=self.config.memory_total
        )

    def capability(self, index: int = 0) -> Capability:
        self._check_index(index)
        c = self.config
        return Capability(name=c.name, arch=c.arch, dtypes=c.dtypes, triton=c.triton)

    def device(self, index: int | None = None) -> Any:
        import torch

        if index is not None:
            self._check_index(index)
        return torch.device("cpu")

    def _check_index(self, index: int) -> None:
        if not 0 <= index < self.config.count:
            raise ValueError(
                f"fake device index {index} out of range: {self.config.count} device(s) configured"
            )
