"""A small ``torch.accelerator``-shaped API that works on torch 2.4 and later.

Where the installed torch has ``torch.accelerator`` (2.6+) and it agrees with the selected
backend, the calls go there; otherwise they go to the backend's device module. On a host with no
accelerator the "accelerator" is the cpu, so device-agnostic code has one path.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from anyware.runtime import registry

if TYPE_CHECKING:
    import torch


def _torch_accelerator(device_type: str) -> Any | None:
    import torch

    acc = getattr(torch, "accelerator", None)
    if acc is None or not acc.is_available():
        return None
    cur = acc.current_accelerator()
    return acc if cur is not None and cur.type == device_type else None


def current_accelerator() -> torch.device:
    return registry.select().device()


def is_available() -> bool:
    return registry.select().device_type != "cpu"


def device_count() -> int:
    return registry.select().device_count()


def current_device_index() -> int:
    backend = registry.select()
    if backend.device_type == "cpu":
        return 0
    acc = _torch_accelerator(backend.device_type)
    if acc is not None:
        return int(acc.current_device_index())
    return int(backend.device_module().current_device())


def set_device_index(index: int) -> None:
    backend = registry.select()
    if backend.device_type == "cpu":
        if index >= backend.device_count():
            raise ValueError(f"device index {index} out of range for {backend.name}")
        return
    acc = _torch_accelerator(backend.device_type)
    if acc is not None:
        acc.set_device_index(index)
    else:
        backend.device_module().set_device(index)


def synchronize(index: int | None = None) -> None:
    registry.select().synchronize(index)
