"""Turn a CUDA device spelling into the target's device.

Accepted spellings: ``"cuda"``, ``"cuda:N"`` (f-strings arrive as these), ``torch.device("cuda",
N)``, and bare integers (torch reads ``.to(0)`` / ``device=0`` as CUDA device 0). On a host
target every index is the one cpu device, so ``x.device == torch.device("cuda:1")``-style
comparisons made after translation agree with where tensors really are.
"""

from __future__ import annotations

from typing import Any

from anyware.migrate.shim._state import STATE, Target

#: Real ``torch.device`` type, saved before the shim replaces the public name.
_REAL_DEVICE: Any = None


def real_device_type() -> Any:
    global _REAL_DEVICE
    if _REAL_DEVICE is None:
        import torch

        _REAL_DEVICE = torch._C.device  # the C type, whatever torch.device is bound to now
    return _REAL_DEVICE


def target_device(target: Target, index: int | None) -> Any:
    dev = real_device_type()
    if target.host or index is None:
        return dev(target.device_type)
    return dev(target.device_type, index)


def _cuda_index(spec: str) -> int | bool | None:
    """``"cuda"`` → None, ``"cuda:3"`` → 3, anything else → False."""
    if not spec.startswith("cuda"):
        return False
    rest = spec[4:]
    if rest == "":
        return None
    if rest.startswith(":") and rest[1:].isdigit():
        return int(rest[1:])
    return False


def translate(dev: Any) -> tuple[Any, bool]:
    """``(device, True)`` when ``dev`` named CUDA and was redirected, else ``(dev, False)``."""
    target = STATE.target
    if target is None or dev is None or target.device_type == "cuda":
        return dev, False
    if isinstance(dev, str):
        idx = _cuda_index(dev.strip())
        if idx is False:
            return dev, False
        return target_device(target, idx if isinstance(idx, int) else None), True
    if isinstance(dev, bool):
        return dev, False
    if isinstance(dev, int):
        return target_device(target, dev), True
    # Duck-typed, not isinstance(dev, torch.device): torch.compile traces through this
    # function and cannot build the C device class as a constant.
    if getattr(dev, "type", None) == "cuda":
        return target_device(target, dev.index), True
    return dev, False


def translate_type(device_type: Any) -> tuple[Any, bool]:
    """For ``device_type=`` arguments (autocast, GradScaler): a type name, not a device."""
    target = STATE.target
    if target is None or target.device_type == "cuda" or not isinstance(device_type, str):
        return device_type, False
    if device_type == "cuda" or device_type.startswith("cuda:"):
        return target.device_type, True
    return device_type, False


def index_of(dev: Any) -> int:
    """The device index a ``set_device``-style argument names (0 when it names none)."""
    if isinstance(dev, int) and not isinstance(dev, bool):
        return dev
    if isinstance(dev, str):
        idx = _cuda_index(dev.strip())
        return idx if isinstance(idx, int) and not isinstance(idx, bool) else 0
    index = getattr(dev, "index", None)
    return index if isinstance(index, int) else 0
