"""Apple GPUs through torch's Metal Performance Shaders backend (macOS only)."""

from __future__ import annotations

import platform
from typing import Any, ClassVar

from anyware.runtime.backends._torch_device import TorchDeviceBackend
from anyware.runtime.protocol import Availability, Capability, MemoryStats


class MpsBackend(TorchDeviceBackend):
    name: ClassVar[str] = "mps"
    device_type: ClassVar[str] = "mps"
    dist_backend: ClassVar[str] = "gloo"
    visible_devices_var: ClassVar[str | None] = None
    priority: ClassVar[int] = 70

    def probe(self) -> Availability:
        import torch

        if platform.system() != "Darwin":
            return Availability(available=False, reason="MPS exists only on macOS")
        if not torch.backends.mps.is_built():
            return Availability(available=False, reason="this torch build has no MPS support")
        if not torch.backends.mps.is_available():
            return Availability(
                available=False, reason="MPS is built but unavailable (macOS < 12.3?)"
            )
        return Availability(available=True, reason="1 device")

    def device_count(self) -> int:
        return 1 if self.probe().available else 0

    def synchronize(self, index: int | None = None) -> None:
        import torch

        torch.mps.synchronize()

    def memory_stats(self, index: int = 0) -> MemoryStats:
        import torch

        return MemoryStats(
            allocated=int(torch.mps.current_allocated_memory()),
            reserved=int(torch.mps.driver_allocated_memory()),
            peak=None,
            total=int(torch.mps.recommended_max_memory()),
        )

    def capability(self, index: int = 0) -> Capability:
        # No fp64 on Apple GPUs; bf16 from macOS 14.
        return Capability(
            name=f"Apple {platform.machine()} GPU",
            arch=platform.machine(),
            dtypes=frozenset({"fp32", "fp16", "bf16"}),
            triton=False,
        )

    def new_event(self, *, enable_timing: bool = True) -> Any:
        import torch

        return torch.mps.Event(enable_timing=enable_timing)

    def new_stream(self) -> Any:
        from anyware.runtime.protocol import HostStream

        return HostStream()  # MPS exposes one queue to Python

    def current_stream(self) -> Any:
        return self.new_stream()
