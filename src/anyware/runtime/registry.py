"""The typed backend registry and device selection.

Backends are named here by import path and loaded on first use, so ``import anyware`` never
imports torch or a vendor extension. Out-of-tree backends register through the
``anyware.backends`` entry-point group (value ``package.module:BackendClass``), discovered the
first time the registry is consulted, or in code with :func:`register_backend`.

Selection order: an explicit name, then ``ANYWARE_DEVICE``, then the available backend with the
highest priority (cpu is always available, so selection always succeeds unless a name is given).
"""

from __future__ import annotations

import importlib
import threading
from collections.abc import Callable

from anyware import _env
from anyware.runtime.protocol import Backend

BackendFactory = Callable[[], Backend]

_BUILTIN: dict[str, str] = {
    "cuda": "anyware.runtime.backends.cuda:CudaBackend",
    "rocm": "anyware.runtime.backends.rocm:RocmBackend",
    "xpu": "anyware.runtime.backends.xpu:XpuBackend",
    "npu": "anyware.runtime.backends.npu:NpuBackend",
    "mlu": "anyware.runtime.backends.mlu:MluBackend",
    "mps": "anyware.runtime.backends.mps:MpsBackend",
    "cpu": "anyware.runtime.backends.cpu:CpuBackend",
    "fake": "anyware.runtime.backends.fake:FakeBackend",
}

ENTRY_POINT_GROUP = "anyware.backends"

_lock = threading.RLock()
_factories: dict[str, BackendFactory | str] = dict(_BUILTIN)
_instances: dict[str, Backend] = {}
_entry_points_loaded = False
_entry_point_errors: dict[str, str] = {}


class UnknownBackendError(ValueError):
    """A name that no registered backend answers to."""


class BackendUnavailableError(ValueError):
    """A registered backend that cannot be used here (package missing, no device)."""


def register_backend(name: str, factory: BackendFactory | str, *, replace: bool = False) -> None:
    """Add a backend under ``name``; ``factory`` is a zero-argument callable or ``"mod:Class"``."""
    if not name or not name.isidentifier():
        raise ValueError(f"backend name {name!r} must be a non-empty identifier")
    with _lock:
        if name in _factories and not replace:
            raise ValueError(
                f"backend {name!r} is already registered; pass replace=True to override"
            )
        _factories[name] = factory
        _instances.pop(name, None)


def _load_entry_points() -> None:
    global _entry_points_loaded
    with _lock:
        if _entry_points_loaded:
            return
        _entry_points_loaded = True
        from importlib.metadata import entry_points  # ~30 ms: only when the registry is consulted

        for ep in entry_points(group=ENTRY_POINT_GROUP):
            if ep.name in _BUILTIN:
                _entry_point_errors[ep.name] = (
                    f"entry point {ep.value!r} shadows a built-in backend"
                )
                continue
            _factories.setdefault(ep.name, ep.value)


def backend_names() -> list[str]:
    """Every registered name, built-ins first in priority order, then plug-ins."""
    _load_entry_points()
    with _lock:
        return list(_factories)


def _resolve(spec: BackendFactory | str) -> Backend:
    if isinstance(spec, str):
        module, _, attr = spec.partition(":")
        obj = getattr(importlib.import_module(module), attr)
        backend = obj()
    else:
        backend = spec()
    if not isinstance(backend, Backend):
        raise TypeError(
            f"backend factory {spec!r} returned {type(backend).__name__}, not a Backend"
        )
    return backend


def _unknown(name: str) -> UnknownBackendError:
    import difflib

    names = backend_names()
    close = difflib.get_close_matches(name, names, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    return UnknownBackendError(
        f"unknown device backend {name!r}: choose from {', '.join(names)}{hint}"
    )


def get_backend(name: str) -> Backend:
    """The backend registered under ``name`` (available or not), created once and cached.

    A built-in or already-registered name is answered without scanning entry points (~30 ms,
    paid in every process ``anyware run`` starts); plug-ins cannot shadow built-ins.
    """
    with _lock:
        if name in _instances:
            return _instances[name]
        if name not in _factories:
            _load_entry_points()
            if name not in _factories:
                raise _unknown(name)
        backend = _resolve(_factories[name])
        _instances[name] = backend
        return backend


def all_backends() -> list[Backend]:
    """Every backend that could be created (a broken plug-in is skipped, see ``plugin_errors``)."""
    out = []
    for name in backend_names():
        try:
            out.append(get_backend(name))
        except Exception as e:  # a broken plug-in must not hide the working backends
            _entry_point_errors[name] = f"{type(e).__name__}: {e}"
    return out


def plugin_errors() -> dict[str, str]:
    """Plug-in backends that failed to load, with the reason."""
    _load_entry_points()
    return dict(_entry_point_errors)


def parse_device(spec: str) -> tuple[str, int | None]:
    """Split ``"npu:1"`` into ``("npu", 1)``; a bare name gives index ``None``."""
    name, sep, index = spec.strip().partition(":")
    if not sep:
        return name, None
    if not index.isdigit():
        raise ValueError(f"device {spec!r}: the index after ':' must be a non-negative integer")
    return name, int(index)


def select(name: str | None = None) -> Backend:
    """The backend to use: ``name``, else ``ANYWARE_DEVICE``, else the best available one.

    A named backend that is not available raises :class:`BackendUnavailableError` naming why and
    which backends are available.
    """
    source = "argument"
    if name is None:
        name = _env.DEVICE.get()
        source = "ANYWARE_DEVICE"
    if name is not None:
        base, _ = parse_device(name)
        try:
            backend = get_backend(base)
        except UnknownBackendError as err:
            if source == "ANYWARE_DEVICE":
                raise UnknownBackendError(f"ANYWARE_DEVICE: {err}") from None
            raise
        status = backend.probe()
        if not status.available:
            avail = [b.name for b in all_backends() if b.probe().available]
            prefix = "ANYWARE_DEVICE: " if source == "ANYWARE_DEVICE" else ""
            raise BackendUnavailableError(
                f"{prefix}device backend {base!r} is not available here ({status.reason}); "
                f"available: {', '.join(avail)}"
            )
        return backend
    candidates = [b for b in all_backends() if b.priority > 0 and b.probe().available]
    assert candidates, "the cpu backend is always available"
    return max(candidates, key=lambda b: b.priority)


def _reset_for_tests() -> None:
    """Forget instances, plug-ins and registrations made after import (tests only)."""
    global _entry_points_loaded
    with _lock:
        _factories.clear()
        _factories.update(_BUILTIN)
        _instances.clear()
        _entry_point_errors.clear()
        _entry_points_loaded = False
