"""``torch.cuda.*`` functions answered for the target device.

On an accelerator target (npu, xpu, mlu, ...) a call goes to the same function of the target's
device module when it has one. On a host target (cpu, fake) the answers come from
:mod:`anyware.runtime`: events are wall-clock events, streams run in program order, memory
figures are the process's. ``is_available``/``device_count``/``current_device`` answer for the
target except to callers in :data:`~anyware.migrate.shim._state.TRUTH_PACKAGES`, which see the
real torch answers, so libraries that pick their own device are not misled.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable, Iterator
from types import SimpleNamespace
from typing import Any

from anyware.migrate.shim._patch import Patcher
from anyware.migrate.shim._state import STATE, Target, caller_sees_truth, record
from anyware.migrate.shim._translate import index_of
from anyware.migrate.shim.rules import Rule, RuleKind


def _backend() -> Any:
    from anyware import runtime

    target = STATE.target
    return runtime.get_backend(target.name) if target is not None else runtime.current()


def host_device_count(t: Target) -> int:
    """Host targets simulate one device per local rank, so ``rank % device_count()`` and
    ``set_device(local_rank)`` work under torchrun."""
    local = os.environ.get("LOCAL_WORLD_SIZE", "")
    return max(t.count, int(local) if local.isdigit() else 1, 1)


def _is_available() -> bool:
    return True


def _device_count() -> int:
    t = STATE.target
    return host_device_count(t) if t is not None else 1


def _current_device() -> int:
    return STATE.current_index


def _set_device(device: Any) -> None:
    STATE.current_index = index_of(device)


class _DeviceContext:
    """``with torch.cuda.device(i):`` on a host target: remembers and restores the index."""

    def __init__(self, device: Any) -> None:
        self.idx = index_of(device) if device is not None else STATE.current_index
        self.prev = STATE.current_index

    def __enter__(self) -> _DeviceContext:
        self.prev = STATE.current_index
        STATE.current_index = self.idx
        return self

    def __exit__(self, *exc: object) -> None:
        STATE.current_index = self.prev


def _synchronize(device: Any = None) -> None:
    _backend().synchronize()


def _manual_seed(seed: int) -> None:
    import torch

    # Not torch.manual_seed: it calls torch.cuda.manual_seed_all, which is this function.
    torch.default_generator.manual_seed(int(seed))


def _get_device_name(device: Any = None) -> str:
    t = STATE.target
    return t.device_name if t is not None else "cpu"


def _get_device_properties(device: Any = None) -> Any:
    t = STATE.target
    assert t is not None
    return SimpleNamespace(
        name=t.device_name,
        total_memory=t.memory_total or 0,
        major=0,
        minor=0,
        multi_processor_count=os.cpu_count() or 1,
        is_integrated=False,
        type=t.device_type,
    )


def _get_device_capability(device: Any = None) -> tuple[int, int]:
    return (0, 0)  # not an NVIDIA part: code that gates on sm_80+ takes its portable path


def _is_bf16_supported(including_emulation: bool = True) -> bool:
    t = STATE.target
    return t is not None and "bf16" in t.dtypes


def _mem(field: str) -> Callable[..., int]:
    def fn(device: Any = None) -> int:
        value = getattr(_backend().memory_stats(), field)
        return int(value or 0)

    fn.__name__ = field
    return fn


def _reserved(device: Any = None) -> int:
    s = _backend().memory_stats()
    return int(s.reserved if s.reserved is not None else (s.allocated or 0))


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


def _mem_get_info(device: Any = None) -> tuple[int, int]:
    s = _backend().memory_stats()
    total = int(s.total or 0)
    return max(total - int(s.allocated or 0), 0), total


def _stream_cls(*args: Any, **kwargs: Any) -> Any:
    return _backend().new_stream()


def _event_cls(
    enable_timing: bool = False, blocking: bool = False, interprocess: bool = False
) -> Any:
    return _backend().new_event(enable_timing=enable_timing)


def _current_stream(device: Any = None) -> Any:
    return _backend().current_stream()


@contextlib.contextmanager
def _stream_ctx(stream: Any = None) -> Iterator[Any]:
    yield stream


def _get_rng_state(device: Any = "cuda") -> Any:
    import torch

    return torch.get_rng_state()


def _set_rng_state(state: Any, device: Any = "cuda") -> None:
    import torch

    torch.set_rng_state(state)


#: (api name in torch.cuda, host implementation, kind, truth-sensitive?)
HOST_IMPLS: tuple[tuple[str, Callable[..., Any], RuleKind, bool], ...] = (
    ("is_available", _is_available, RuleKind.DEVICE_QUERY, True),
    ("device_count", _device_count, RuleKind.DEVICE_QUERY, True),
    ("current_device", _current_device, RuleKind.DEVICE_QUERY, True),
    ("set_device", _set_device, RuleKind.DEVICE_QUERY, False),
    ("device", _DeviceContext, RuleKind.DEVICE_QUERY, False),
    ("synchronize", _synchronize, RuleKind.STREAM, False),
    ("manual_seed", _manual_seed, RuleKind.RANDOM, False),
    ("manual_seed_all", _manual_seed, RuleKind.RANDOM, False),
    ("get_rng_state", _get_rng_state, RuleKind.RANDOM, False),
    ("set_rng_state", _set_rng_state, RuleKind.RANDOM, False),
    ("get_device_name", _get_device_name, RuleKind.DEVICE_QUERY, False),
    ("get_device_properties", _get_device_properties, RuleKind.DEVICE_QUERY, False),
    ("get_device_capability", _get_device_capability, RuleKind.DEVICE_QUERY, False),
    ("is_bf16_supported", _is_bf16_supported, RuleKind.DEVICE_QUERY, False),
    ("memory_allocated", _mem("allocated"), RuleKind.MEMORY, False),
    ("max_memory_allocated", _mem("peak"), RuleKind.MEMORY, False),
    ("memory_reserved", _reserved, RuleKind.MEMORY, False),
    ("max_memory_reserved", _reserved, RuleKind.MEMORY, False),
    ("reset_peak_memory_stats", _noop, RuleKind.MEMORY, False),
    ("empty_cache", _noop, RuleKind.MEMORY, False),
    ("mem_get_info", _mem_get_info, RuleKind.MEMORY, False),
    ("Stream", _stream_cls, RuleKind.STREAM, False),
    ("Event", _event_cls, RuleKind.STREAM, False),
    ("current_stream", _current_stream, RuleKind.STREAM, False),
    ("stream", _stream_ctx, RuleKind.STREAM, False),
)


def _make(name: str, host: Callable[..., Any], truth: bool, t: Target, real: Any) -> Any:
    """The replacement for ``torch.cuda.<name>``; ``truth`` marks the device queries whose
    real answer matters most to libraries (all functions defer to ``real`` for them)."""
    api = f"torch.cuda.{name}"
    impl = host
    if not t.host:
        dev_mod = t.device_module()
        impl = getattr(dev_mod, name, host) if dev_mod is not None else host

    if isinstance(impl, type) or name in {"Stream", "Event", "device"}:
        # A class stays a class so ``isinstance(x, torch.cuda.Event)`` is a valid check.
        def new(cls: Any, *args: Any, **kwargs: Any) -> Any:
            record(api)
            return impl(*args, **kwargs)

        return type(name, (), {"__new__": new, "__doc__": f"{api} on the anyware target"})

    def fn(*args: Any, **kwargs: Any) -> Any:
        # torch's own modules (and the libraries in TRUTH_PACKAGES) get the real function:
        # torch.manual_seed calls torch.cuda.manual_seed_all, which is not the user's redirect.
        if real is not None and caller_sees_truth(2):
            return real(*args, **kwargs)
        record(api)
        return impl(*args, **kwargs)

    fn.__name__ = name
    fn.__qualname__ = name
    fn.__doc__ = f"{api}, answered for the anyware target device."
    return fn


def _installer(name: str, host: Callable[..., Any], truth: bool) -> Any:
    def install(p: Patcher, t: Target) -> None:
        import torch

        real = getattr(torch.cuda, name, None)
        p.set(torch.cuda, name, _make(name, host, truth, t, real))

    return install


RULES: tuple[Rule, ...] = tuple(
    Rule(
        api=f"torch.cuda.{name}",
        kind=kind,
        install=_installer(name, host, truth),
        doc=(host.__doc__ or "").strip().splitlines()[0]
        if host.__doc__
        else f"answered by the target's device module or anyware.runtime ({kind})",
    )
    for name, host, kind, truth in HOST_IMPLS
)
