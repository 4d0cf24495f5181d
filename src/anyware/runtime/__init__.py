"""Device runtime: which accelerator is here, and one small API over all of them.

>>> from anyware import runtime
>>> b = runtime.current()            # explicit > ANYWARE_DEVICE > best available
>>> x = torch.ones(4, device=runtime.device())
>>> start, end = b.new_event(), b.new_event()

Nothing here imports torch until a backend is probed.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING

from anyware.runtime.protocol import (
    DTYPE_NAMES,
    Availability,
    Backend,
    Capability,
    HostEvent,
    HostStream,
    MemoryStats,
)
from anyware.runtime.registry import (
    BackendUnavailableError,
    UnknownBackendError,
    all_backends,
    backend_names,
    get_backend,
    parse_device,
    register_backend,
    select,
)
from anyware.runtime.visible import child_env, parse_visible

if TYPE_CHECKING:
    import torch

__all__ = [
    "DTYPE_NAMES",
    "Availability",
    "Backend",
    "BackendUnavailableError",
    "Capability",
    "HostEvent",
    "HostStream",
    "MemoryStats",
    "UnknownBackendError",
    "all_backends",
    "backend_names",
    "child_env",
    "current",
    "device",
    "get_backend",
    "parse_device",
    "parse_visible",
    "register_backend",
    "select",
    "set_current",
    "synchronize",
]

_lock = threading.Lock()
_current: Backend | None = None


def current() -> Backend:
    """The process's backend, selected once (see :func:`select`) and then cached."""
    global _current
    with _lock:
        if _current is None:
            _current = select()
        return _current


def set_current(name: str | None) -> Backend | None:
    """Pin the process's backend by name (``None`` forgets the choice); returns the new one."""
    global _current
    with _lock:
        _current = select(name) if name is not None else None
        return _current


def device(index: int | None = None) -> torch.device:
    """The ``torch.device`` of the current backend."""
    return current().device(index)


def synchronize(index: int | None = None) -> None:
    current().synchronize(index)
