"""The host CPU: always available, the fallback when no accelerator is present.

Events measure wall time (see :class:`~anyware.runtime.protocol.HostEvent`); memory is the
process's resident set against the host's physical memory.
"""

from __future__ import annotations

import os
import platform
from typing import Any, ClassVar

from anyware.runtime.backends._torch_device import triton_installed
from anyware.runtime.protocol import (
    Availability,
    Backend,
    Capability,
    HostEvent,
    HostStream,
    MemoryStats,
    host_memory_stats,
)


class _CpuDeviceModule:
    """What ``torch.cuda`` would be for the host: the calls scripts make, answered for cpu."""

    Event = HostEvent
    Stream = HostStream

    @staticmethod
    def is_available() -> bool:
        return True

    @staticmethod
    def device_count() -> int:
        return 1

    @staticmethod
    def current_device() -> int:
        return 0

    @staticmethod
    def synchronize(device: Any = None) -> None:
        return None

    @staticmethod
    def current_stream(device: Any = None) -> HostStream:
        return HostStream()


def cpu_model_name() -> str:
    """The CPU's model name from /proc/cpuinfo, or what ``platform`` knows."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8", errors="replace") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def triton_interpreter_on() -> bool:
    return os.environ.get("TRITON_INTERPRET", "") == "1"


class CpuBackend(Backend):
    name: ClassVar[str] = "cpu"
    device_type: ClassVar[str] = "cpu"
    dist_backend: ClassVar[str] = "gloo"
    visible_devices_var: ClassVar[str | None] = None
    priority: ClassVar[int] = 1

    def probe(self) -> Availability:
        return Availability(available=True, reason=f"{os.cpu_count()} core(s)")

    def device_count(self) -> int:
        return 1

    def device_module(self) -> Any:
        return _CpuDeviceModule

    def synchronize(self, index: int | None = None) -> None:
        return None

    def memory_stats(self, index: int = 0) -> MemoryStats:
        return host_memory_stats()

    def capability(self, index: int = 0) -> Capability:
        return Capability(
            name=cpu_model_name(),
            arch=platform.machine(),
            # fp8 tensors exist on cpu as storage and through emulated/scaled matmul.
            dtypes=frozenset({"fp64", "fp32", "fp16", "bf16", "fp8_e4m3fn", "fp8_e5m2"}),
            # Triton runs on the host only through its interpreter (TRITON_INTERPRET=1).
            triton=triton_installed() and triton_interpreter_on(),
            extra={"cores": os.cpu_count()},
        )

    def new_event(self, *, enable_timing: bool = True) -> HostEvent:
        return HostEvent(enable_timing)

    def new_stream(self) -> HostStream:
        return HostStream()

    def current_stream(self) -> HostStream:
        return HostStream()
