"""Process-wide patches that let the monitor see what it is not handed: ``Tensor.backward``
(backward span and the loss) and torch.distributed's collectives (enter/exit, op, bytes,
sequence number), plus a timing communication hook for DistributedDataParallel.

Each patch is installed once and forwards to the active :class:`~anyware.monitor.collector.Monitor`;
with no monitor active a wrapper costs one global lookup. The collective sequence number counts
every collective this process issued; in an SPMD job all ranks issue the same sequence, so the
rank whose last sequence number is lowest during a hang is the one the others wait for (the rule
PyTorch's Flight Recorder uses).
"""

from __future__ import annotations

import functools
from typing import Any

from anyware.monitor import collector

#: Collectives wrapped in ``torch.distributed`` (point-to-point ops are not collectives).
COLLECTIVES: tuple[str, ...] = (
    "all_reduce",
    "broadcast",
    "reduce",
    "all_gather",
    "all_gather_into_tensor",
    "all_gather_object",
    "reduce_scatter",
    "reduce_scatter_tensor",
    "all_to_all",
    "all_to_all_single",
    "barrier",
    "gather",
    "scatter",
)

_installed: set[str] = set()


def install_backward_patch() -> None:
    if "backward" in _installed:
        return
    import torch

    original: Any = torch.Tensor.backward

    @functools.wraps(original)
    def backward(self: Any, *args: Any, **kwargs: Any) -> Any:
        mon = collector._ACTIVE
        if mon is None:
            return original(self, *args, **kwargs)
        mon.on_backward(self, True)
        try:
            return original(self, *args, **kwargs)
        finally:
            mon.on_backward(self, False)

    torch.Tensor.backward = backward  # type: ignore[method-assign]
    _installed.add("backward")


def install_clip_patch() -> None:
    """Reuse the total norm ``clip_grad_norm_`` returns: the script already paid for it."""
    if "clip" in _installed:
        return
    from torch.nn.utils import clip_grad

    original: Any = clip_grad.clip_grad_norm_

    @functools.wraps(original)
    def clip_grad_norm_(*args: Any, **kwargs: Any) -> Any:
        total = original(*args, **kwargs)
        mon = collector._ACTIVE
        if mon is not None:
            mon.on_clip_grad_norm(total)
        return total

    import torch.nn.utils

    clip_grad.clip_grad_norm_ = clip_grad_norm_
    torch.nn.utils.clip_grad_norm_ = clip_grad_norm_
    _installed.add("clip")


def _wrap(op: str, fn: Any) -> Any:
    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        mon = collector._ACTIVE
        if mon is None:
            return fn(*args, **kwargs)
        return mon.on_collective(op, fn, args, kwargs)

    wrapper.__anyware_monitor__ = True  # type: ignore[attr-defined]
    return wrapper


def install_collective_patches() -> None:
    """Wrap each collective in ``torch.distributed`` and ``distributed_c10d`` (scripts import
    either), keeping whatever was there before (another tool's wrapper keeps working)."""
    if "collectives" in _installed:
        return
    try:
        import torch.distributed as dist
        from torch.distributed import distributed_c10d as c10d
    except ImportError:
        return
    if not dist.is_available():
        return
    for op in COLLECTIVES:
        for ns in (dist, c10d):
            fn = getattr(ns, op, None)
            if fn is None or getattr(fn, "__anyware_monitor__", False):
                continue
            setattr(ns, op, _wrap(op, fn))
    _installed.add("collectives")


def maybe_hook_ddp(model: Any) -> None:
    """For a DistributedDataParallel model without a comm hook, register the stock allreduce
    hook in Python at the first forward, so each bucket's allreduce passes the wrapped
    ``dist.all_reduce`` (async: its exit is stamped when the future completes). A user who
    registers a hook before the first forward keeps theirs."""
    try:
        from torch.nn.parallel import DistributedDataParallel
    except ImportError:
        return
    if not isinstance(model, DistributedDataParallel):
        return
    handle: list[Any] = []

    def first_forward(module: Any, args: Any) -> None:
        for h in handle:
            h.remove()
        if getattr(module, "_comm_hooks", None):
            return
        from torch.distributed.algorithms.ddp_comm_hooks import default_hooks

        module.register_comm_hook(state=None, hook=default_hooks.allreduce_hook)

    handle.append(model.register_forward_pre_hook(first_forward, prepend=True))
