"""The in-process half of the monitor: hooks that time each training step, cheaply.

A step is cut at the optimizer's ``step()`` (its post-hook), so an unmodified training loop needs
no call from the user. Inside a step the hot path only stamps times and records the runtime's
device events at phase boundaries::

    [prev step end] -- data -- [forward pre] -- forward -- [forward post] -- ...
        [Tensor.backward enter] -- backward -- [exit] -- ... [optimizer pre] -- optimizer -- [post]

At the post-hook the step's marks go into a ring buffer as one tuple; the background shipper
(``shipper.py``) turns them into events once the device events have completed, so there is no
extra synchronisation on the hot path. Loss comes from ``Tensor.backward`` on a one-element
tensor, gradient norm from one fused ``_foreach_norm`` before the step, and the update/parameter
ratio from a parameter copy every ``stats_every`` steps. Values stay device tensors until the
shipper reads them.

Compute time, the straggler signal, is ``step - data - blocking collective time``: in a
synchronous collective the slow rank waits least, so the fast ranks' waiting is subtracted out.
"""

from __future__ import annotations

import os
import sys
import threading
import time
import weakref
from collections import deque
from typing import TYPE_CHECKING, Any

from anyware.monitor.config import MonitorConfig

if TYPE_CHECKING:
    import torch

    from anyware.monitor.shipper import Shipper

#: The one monitor of this process; the global patches (backward, collectives) route to it.
_ACTIVE: Monitor | None = None
_LOCK = threading.Lock()


class StepAcc:
    """What the hot path gathers during one step (mutable, reset after each step)."""

    __slots__ = (
        "comm",
        "depth",
        "grad_norm",
        "loss",
        "marks",
        "n_coll",
        "params_before",
        "samples",
        "tokens",
    )

    def __init__(self) -> None:
        self.marks: list[tuple[str, float, Any]] = []
        self.comm = 0.0
        self.n_coll = 0
        self.depth = 0
        self.loss: Any = None
        self.grad_norm: Any = None
        self.params_before: list[Any] | None = None
        self.samples: int | None = None
        self.tokens: int | None = None


class Monitor:
    """Collects one process's step records; start it with :func:`anyware.monitor.attach`."""

    def __init__(self, config: MonitorConfig) -> None:
        from anyware import runtime

        self.config = config
        self.backend = runtime.current()
        self.ring: deque[tuple[Any, ...]] = deque(maxlen=config.ring_size)
        self.appended = 0
        self.step = 0
        self.seq = 0
        self.inflight: tuple[int, str, float] | None = None
        self.acc = StepAcc()
        self.last_step_end: float | None = None
        self.crashed: str | None = None
        self._handles: list[Any] = []
        self._param_cache: dict[int, tuple[tuple[int, int], list[Any]]] = {}
        self._models: list[weakref.ref[Any]] = []
        self._optimizers: list[weakref.ref[Any]] = []
        self._global_forward = False
        self._global_handles: list[Any] = []
        self._top_modules: dict[int, weakref.ref[Any]] = {}
        self._shipper: Shipper | None = None
        self.closed = False

    # --- hot path ----------------------------------------------------------------------------
    def _mark(self, name: str) -> None:
        ev = self.backend.new_event()
        ev.record()
        self.acc.marks.append((name, time.time(), ev))

    def on_forward_pre(self, module: Any, args: Any) -> None:
        acc = self.acc
        acc.depth += 1
        if acc.depth != 1:
            return
        if self._global_forward:
            self._top_modules.setdefault(id(module), weakref.ref(module))
        if acc.samples is None and args and hasattr(args[0], "shape") and args[0].dim() > 0:
            x = args[0]
            acc.samples = int(x.shape[0])
            if not x.is_floating_point():
                acc.tokens = int(x.numel())
        self._mark("fwd0")

    def on_forward_post(self, module: Any, args: Any, output: Any) -> None:
        acc = self.acc
        acc.depth = max(acc.depth - 1, 0)
        if acc.depth == 0:
            self._mark("fwd1")

    def on_backward(self, tensor: Any, enter: bool) -> None:
        if enter:
            if tensor.numel() == 1 and tensor.is_floating_point():
                self.acc.loss = tensor.detach()
            self._mark("bwd0")
        else:
            self._mark("bwd1")

    def _params(self, optimizer: Any) -> list[Any]:
        # Param groups almost never change after the first step; rebuilding the flat list
        # every step cost ~10 µs for a 28-tensor GPT, so it is cached per optimizer.
        key = id(optimizer)
        groups = optimizer.param_groups
        sig = (len(groups), sum(len(g["params"]) for g in groups))
        cached = self._param_cache.get(key)
        if cached is None or cached[0] != sig:
            cached = (sig, [p for g in groups for p in g["params"]])
            self._param_cache[key] = cached
        return cached[1]

    def on_optimizer_pre(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        import torch

        acc = self.acc
        params = self._params(optimizer)
        # The norm is enqueued, not read: on a device this is two kernel launches, and the value
        # is fetched by the shipper once the step's end event has completed. A norm the script
        # already computed (clip_grad_norm_) is reused instead.
        if acc.grad_norm is None and self.step % self.config.grad_norm_every == 0:
            grads = [p.grad for p in params if p.grad is not None]
            if grads:
                acc.grad_norm = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
        if self.step % self.config.stats_every == 0:
            with torch.no_grad():
                acc.params_before = [p.detach().clone() for p in params]
        self._mark("opt0")

    def on_clip_grad_norm(self, total_norm: Any) -> None:
        if hasattr(total_norm, "detach"):
            self.acc.grad_norm = total_norm.detach()

    def on_optimizer_post(self, optimizer: Any, args: Any, kwargs: Any) -> None:
        import torch

        self._mark("opt1")
        acc = self.acc
        ratio = None
        if acc.params_before is not None:
            with torch.no_grad():
                after = [p.detach() for p in self._params(optimizer)]
                delta = torch._foreach_sub(after, acc.params_before)
                dn = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(delta)))
                pn = torch.linalg.vector_norm(torch.stack(torch._foreach_norm(after)))
                ratio = dn / pn.clamp_min(1e-30)
        t_end = acc.marks[-1][1]
        self.ring.append(
            (
                "step",
                self.step,
                self.last_step_end,
                t_end,
                acc.marks,
                acc.loss,
                acc.grad_norm,
                ratio,
                acc.comm,
                acc.n_coll,
                acc.samples,
                acc.tokens,
            )
        )
        self.appended += 1
        self.last_step_end = t_end
        self.step += 1
        self.acc = StepAcc()
        if self._global_forward and self.step == 1:
            self._narrow_forward_hooks(optimizer)

    def on_collective(self, op: str, fn: Any, args: Any, kwargs: Any) -> Any:
        self.seq += 1
        seq = self.seq
        nbytes = _nbytes(args, kwargs)
        t0 = time.time()
        self.inflight = (seq, op, t0)
        ev0 = self.backend.new_event()
        ev0.record()
        step = self.step
        try:
            out = fn(*args, **kwargs)
        finally:
            self.inflight = None
        ev1 = self.backend.new_event()
        ev1.record()
        if kwargs.get("async_op") and out is not None and hasattr(out, "get_future"):
            ring = self.ring

            def done(_fut: Any) -> None:
                ring.append(("coll", seq, op, nbytes, step, t0, time.time(), None, None))

            out.get_future().then(done)
        else:
            t1 = time.time()
            self.acc.comm += t1 - t0
            self.acc.n_coll += 1
            self.ring.append(("coll", seq, op, nbytes, step, t0, t1, ev0, ev1))
        self.appended += 1
        return out

    # --- wiring ------------------------------------------------------------------------------
    def watch_model(self, model: Any) -> None:
        self._models.append(weakref.ref(model))
        self._handles.append(model.register_forward_pre_hook(self.on_forward_pre))
        self._handles.append(model.register_forward_hook(self.on_forward_post))
        from anyware.monitor.collectives import maybe_hook_ddp

        maybe_hook_ddp(model)

    def watch_optimizer(self, optimizer: Any) -> None:
        self._optimizers.append(weakref.ref(optimizer))
        self._handles.append(optimizer.register_step_pre_hook(self.on_optimizer_pre))
        self._handles.append(optimizer.register_step_post_hook(self.on_optimizer_post))

    def watch_globally(self) -> None:
        """No model or optimizer given (``anyware run --monitor``): take every optimizer's step
        and, until the first step, every top-level module call; then keep hooks only on the
        top-level modules that own parameters (global module hooks cost µs per submodule)."""
        from torch.nn.modules import module as mod
        from torch.optim import optimizer as optim_mod

        self._global_forward = True
        self._global_handles = [
            optim_mod.register_optimizer_step_pre_hook(self.on_optimizer_pre),
            optim_mod.register_optimizer_step_post_hook(self.on_optimizer_post),
            mod.register_module_forward_pre_hook(self.on_forward_pre),
            mod.register_module_forward_hook(self.on_forward_post),
        ]

    def unwatch_globally(self) -> None:
        """An explicit ``attach(model, optimizer)`` after autostart: keep only its hooks."""
        self._global_forward = False
        for h in self._global_handles:
            h.remove()
        self._global_handles = []
        self._top_modules.clear()

    def _narrow_forward_hooks(self, optimizer: Any) -> None:
        self._global_forward = False
        for h in self._global_handles[2:]:
            h.remove()
        self._global_handles = self._global_handles[:2]
        owned = {id(p) for g in optimizer.param_groups for p in g["params"]}
        for ref in self._top_modules.values():
            m = ref()
            if m is not None and any(id(p) in owned for p in m.parameters()):
                self.watch_model(m)
        self._top_modules.clear()

    def start(self) -> None:
        from anyware.monitor.shipper import Shipper

        self._shipper = Shipper(self)
        self._shipper.start()

    def close(self, *, timeout: float = 3.0) -> None:
        """Stop hooks, ship what is left and say goodbye (clean unless an exception escaped)."""
        global _ACTIVE
        if self.closed:
            return
        self.closed = True
        for h in self._handles:
            h.remove()
        for h in self._global_handles:
            h.remove()
        with _LOCK:
            if _ACTIVE is self:
                _ACTIVE = None
        if self._shipper is not None:
            self._shipper.stop(timeout=timeout)

    def rank(self) -> int:
        return current_rank()

    def dropped(self) -> int:
        return self._shipper.dropped if self._shipper is not None else 0


def current_rank() -> int:
    """torch.distributed's rank once initialised, else ``RANK`` (torchrun), else 0."""
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return int(dist.get_rank())
    except Exception:
        pass
    value = os.environ.get("RANK", "0")
    return int(value) if value.isdigit() else 0


def world_size() -> int:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return int(dist.get_world_size())
    except Exception:
        pass
    value = os.environ.get("WORLD_SIZE", "1")
    return int(value) if value.isdigit() else 1


def _nbytes(args: Any, kwargs: Any) -> int:
    total = 0
    for a in (*args, *kwargs.values()):
        if hasattr(a, "element_size") and hasattr(a, "numel"):
            total += a.element_size() * a.numel()
        elif isinstance(a, list | tuple):
            total += sum(t.element_size() * t.numel() for t in a if hasattr(t, "element_size"))
    return total


def active() -> Monitor | None:
    return _ACTIVE


def activate(config: MonitorConfig) -> Monitor:
    """Create the process's monitor (or return the running one) and install global patches."""
    global _ACTIVE
    with _LOCK:
        if _ACTIVE is not None:
            return _ACTIVE
        mon = Monitor(config)
        _ACTIVE = mon
    from anyware.monitor.collectives import (
        install_backward_patch,
        install_clip_patch,
        install_collective_patches,
    )

    install_backward_patch()
    install_clip_patch()
    if config.wrap_collectives:
        install_collective_patches()
    _install_excepthook(mon)
    mon.start()
    return mon


def _install_excepthook(mon: Monitor) -> None:
    previous = sys.excepthook

    def hook(exc_type: Any, exc: Any, tb: Any) -> None:
        mon.crashed = f"{exc_type.__name__}: {exc}"
        previous(exc_type, exc, tb)

    sys.excepthook = hook


def tensor_value(t: torch.Tensor | None) -> float | None:
    if t is None:
        return None
    return float(t.item())
