"""Shared plumbing for backends whose torch support is a device module (``torch.<type>``).

cuda, rocm, xpu, npu and mlu differ in how they are probed and what they call their
architecture; the stream, event, synchronisation and memory calls have the same names on every
device module, so they are written once here.
"""

from __future__ import annotations

import importlib.util
from typing import Any

from anyware.runtime.protocol import Backend, MemoryStats


def package_installed(name: str) -> bool:
    """Whether a top-level package can be imported, without importing it."""
    return importlib.util.find_spec(name) is not None


def triton_installed() -> bool:
    return package_installed("triton")


class TorchDeviceBackend(Backend):
    """A backend whose device module is ``getattr(torch, device_type)``."""

    def device_module(self) -> Any:
        import torch

        return getattr(torch, self.device_type)

    def device_count(self) -> int:
        return int(self.device_module().device_count()) if self.probe().available else 0

    def synchronize(self, index: int | None = None) -> None:
        self.device_module().synchronize(index)

    def memory_stats(self, index: int = 0) -> MemoryStats:
        mod = self.device_module()

        def ask(fn: str) -> int | None:
            f = getattr(mod, fn, None)
            if f is None:
                return None
            try:
                return int(f(index))
            except (RuntimeError, AttributeError, NotImplementedError):
                return None

        total: int | None = None
        mem_get_info = getattr(mod, "mem_get_info", None)
        if mem_get_info is not None:
            try:
                total = int(mem_get_info(index)[1])
            except (RuntimeError, AttributeError, NotImplementedError):
                total = None
        if total is None:
            total = getattr(mod.get_device_properties(index), "total_memory", None)
        return MemoryStats(
            allocated=ask("memory_allocated"),
            reserved=ask("memory_reserved"),
            peak=ask("max_memory_allocated"),
            total=total,
        )

    def new_event(self, *, enable_timing: bool = True) -> Any:
        return self.device_module().Event(enable_timing=enable_timing)

    def new_stream(self) -> Any:
        return self.device_module().Stream()

    def current_stream(self) -> Any:
        return self.device_module().current_stream()
