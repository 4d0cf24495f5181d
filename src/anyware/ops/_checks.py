"""Input checks shared by the ops: each raises ``ValueError`` naming the argument, what was
given and what is expected, before any kernel sees the tensors."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch

FLOATS = (torch.float32, torch.float16, torch.bfloat16)
"""The dtypes the kernels compute in (fp32 accumulation inside)."""


def tensor(op: str, name: str, x: Any) -> torch.Tensor:
    if not isinstance(x, torch.Tensor):
        raise ValueError(f"{op}: {name} must be a torch.Tensor, got {type(x).__name__}")
    return x


def ndim(op: str, name: str, x: torch.Tensor, allowed: Iterable[int], what: str) -> None:
    allowed = tuple(allowed)
    if x.dim() not in allowed:
        raise ValueError(f"{op}: {name} must be {what}, got shape {tuple(x.shape)}")


def dtype(op: str, name: str, x: torch.Tensor, allowed: Iterable[torch.dtype]) -> None:
    allowed = tuple(allowed)
    if x.dtype not in allowed:
        names = ", ".join(str(d).removeprefix("torch.") for d in allowed)
        raise ValueError(f"{op}: {name} has dtype {x.dtype}, expected one of {names}")


def same_dtype(op: str, **tensors: torch.Tensor) -> None:
    items = list(tensors.items())
    first_name, first = items[0]
    for name, x in items[1:]:
        if x.dtype != first.dtype:
            raise ValueError(
                f"{op}: {name} has dtype {x.dtype} but {first_name} has {first.dtype}; "
                "they must match"
            )


def same_device(op: str, **tensors: torch.Tensor) -> torch.device:
    items = list(tensors.items())
    first_name, first = items[0]
    for name, x in items[1:]:
        if x.device != first.device:
            raise ValueError(
                f"{op}: {name} is on {x.device} but {first_name} is on {first.device}; "
                "move them to one device"
            )
    return first.device


def size(op: str, name: str, got: int, expected: int, what: str) -> None:
    if got != expected:
        raise ValueError(f"{op}: {name} has {what} {got}, expected {expected}")


def unsupported_dtype(x: torch.Tensor, allowed: Iterable[torch.dtype] = FLOATS) -> str | None:
    """The kernel's own dtype limit, as a fallback reason."""
    from anyware.ops._registry import interpreter_dtype_blocker

    if x.dtype not in tuple(allowed):
        return f"no kernel for dtype {str(x.dtype).removeprefix('torch.')}"
    return interpreter_dtype_blocker(x.dtype, x.device)
