"""The small protocol every device backend answers.

A backend is one kind of device as torch sees it (``cuda``, ``xpu``, ``npu``, ...), plus the
facts around it that torch does not gather in one place: which distributed backend it speaks,
which environment variable hides devices from a process, which dtypes it computes in, and
whether Triton can target it. Each backend lives in one file under ``runtime/backends/``.

Probing must be cheap and must not initialise a device context: it may import the vendor's
torch extension only when that package is installed, and never at ``import anyware`` time.
"""

from __future__ import annotations

import abc
import os
import resource
import time
from dataclasses import dataclass, field
from typing import Any, ClassVar

#: dtype names used in capability tables, in the order ``anyware env`` shows them.
DTYPE_NAMES: tuple[str, ...] = (
    "fp64",
    "fp32",
    "fp16",
    "bf16",
    "fp8_e4m3fn",
    "fp8_e5m2",
    "fp8_e4m3fnuz",
    "fp8_e5m2fnuz",
)


@dataclass(frozen=True, slots=True, kw_only=True)
class Availability:
    """Whether a backend can be used in this process, and if not, why not."""

    available: bool
    """True when the backend's torch support is present and at least one device is visible."""
    reason: str
    """Human-readable: what was found, or what is missing (package, driver, device)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Capability:
    """What one device is and what it computes in."""

    name: str
    """Marketing name as the driver reports it (``NVIDIA H200``), or the host CPU's model."""
    arch: str
    """Architecture tag: ``sm_90``, ``gfx942``, ``x86_64``, ..."""
    dtypes: frozenset[str]
    """Names from :data:`DTYPE_NAMES` that the device computes in natively."""
    triton: bool
    """Whether Triton can compile kernels for this device in this process."""
    extra: dict[str, Any] = field(default_factory=dict)
    """Backend-specific facts (compute capability, core count, ...), JSON-serialisable."""

    def supports(self, dtype: str) -> bool:
        assert dtype in DTYPE_NAMES, f"unknown dtype name {dtype!r}"
        return dtype in self.dtypes

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "arch": self.arch,
            "dtypes": [d for d in DTYPE_NAMES if d in self.dtypes],
            "triton": self.triton,
            **({"extra": self.extra} if self.extra else {}),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class MemoryStats:
    """Memory of one device in bytes; ``None`` where the backend does not report a figure."""

    allocated: int | None
    """Bytes held by live tensors (cpu: the process's resident set size)."""
    reserved: int | None
    """Bytes held by the caching allocator (cpu: ``None``)."""
    peak: int | None
    """High-water mark of ``allocated`` since start or the last reset."""
    total: int | None
    """Device memory (cpu: physical memory of the host)."""

    def to_json(self) -> dict[str, int | None]:
        return {
            "allocated": self.allocated,
            "reserved": self.reserved,
            "peak": self.peak,
            "total": self.total,
        }


class Backend(abc.ABC):
    """One kind of device. Subclasses set the class attributes and answer the probes."""

    name: ClassVar[str]
    """Registry name: ``cuda``, ``rocm``, ``xpu``, ``npu``, ``mlu``, ``mps``, ``cpu``, ``fake``."""
    device_type: ClassVar[str]
    """The torch device type tensors get (rocm reports ``cuda``, fake reports ``cpu``)."""
    dist_backend: ClassVar[str]
    """torch.distributed backend name: nccl, hccl, cncl, xccl or gloo."""
    visible_devices_var: ClassVar[str | None]
    """The variable that hides devices from a process (``CUDA_VISIBLE_DEVICES``, ...)."""
    priority: ClassVar[int]
    """Higher wins when several are available and none is asked for; 0 is never auto-picked."""

    @abc.abstractmethod
    def probe(self) -> Availability:
        """Whether the backend is usable; must not initialise a device context."""

    @abc.abstractmethod
    def device_count(self) -> int: ...

    @abc.abstractmethod
    def device_module(self) -> Any:
        """``torch.cuda``, ``torch.xpu``, ``torch.npu``, ... (a cpu stand-in for cpu/fake)."""

    @abc.abstractmethod
    def synchronize(self, index: int | None = None) -> None: ...

    @abc.abstractmethod
    def memory_stats(self, index: int = 0) -> MemoryStats: ...

    @abc.abstractmethod
    def capability(self, index: int = 0) -> Capability: ...

    @abc.abstractmethod
    def new_event(self, *, enable_timing: bool = True) -> Any:
        """An event with ``record()``, ``synchronize()``, ``query()`` and ``elapsed_time(other)``
        in milliseconds."""

    @abc.abstractmethod
    def new_stream(self) -> Any: ...

    @abc.abstractmethod
    def current_stream(self) -> Any: ...

    def triton_supported(self) -> bool:
        return self.capability().triton if self.probe().available else False

    def device(self, index: int | None = None) -> Any:
        """The ``torch.device`` for device ``index`` (the current one when ``None``)."""
        import torch

        return (
            torch.device(self.device_type)
            if index is None
            else torch.device(self.device_type, index)
        )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.name!r} device_type={self.device_type!r}>"


# --- host-side stand-ins used by the cpu and fake backends ----------------------------------


class HostEvent:
    """A cpu event: ``record`` stamps the wall clock, so ``elapsed_time`` measures host time.

    On the host every op has finished when the call returns, so the wall clock between two
    records is what a device event would measure between the same two points of the stream.
    """

    __slots__ = ("_t", "enable_timing")

    def __init__(self, enable_timing: bool = True) -> None:
        self.enable_timing = enable_timing
        self._t: float | None = None

    def record(self, stream: Any = None) -> None:
        self._t = time.perf_counter()

    def query(self) -> bool:
        return self._t is not None

    def synchronize(self) -> None:
        return None

    def wait(self, stream: Any = None) -> None:
        return None

    def elapsed_time(self, end: HostEvent) -> float:
        if not (self.enable_timing and end.enable_timing):
            raise ValueError("elapsed_time needs events created with enable_timing=True")
        if self._t is None or end._t is None:
            raise ValueError("elapsed_time needs both events to have been recorded")
        return (end._t - self._t) * 1000.0


class HostStream:
    """A cpu stream: work runs in program order, so every operation is a no-op."""

    __slots__ = ()

    def synchronize(self) -> None:
        return None

    def query(self) -> bool:
        return True

    def wait_event(self, event: Any) -> None:
        return None

    def wait_stream(self, stream: Any) -> None:
        return None

    def record_event(self, event: HostEvent | None = None) -> HostEvent:
        event = event or HostEvent()
        event.record()
        return event

    def __enter__(self) -> HostStream:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def host_memory_stats() -> MemoryStats:
    """The process's resident set size and peak, and the host's physical memory."""
    page = os.sysconf("SC_PAGE_SIZE")
    rss: int | None
    try:
        with open("/proc/self/statm", encoding="ascii") as f:
            rss = int(f.read().split()[1]) * page
    except (OSError, ValueError, IndexError):
        rss = None  # not Linux: no cheap RSS reading
    peak_kib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # ru_maxrss is KiB on Linux and bytes on macOS.
    peak = peak_kib if os.uname().sysname == "Darwin" else peak_kib * 1024
    try:
        total: int | None = page * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError):
        total = None
    return MemoryStats(allocated=rss, reserved=None, peak=peak, total=total)
