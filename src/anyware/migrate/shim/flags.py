"""Backend flags, profiling, CUDA graphs, NVTX and binary CUDA extensions.

What has a counterpart is redirected (``cuda.matmul.allow_tf32`` → float32 matmul precision,
NVTX ranges → ``torch.profiler.record_function``, ``ProfilerActivity.CUDA`` → the target's
activity); what has none is reported as not honoured: cuDNN-only flags, CUDA graph capture
(the body runs eagerly once and ``replay()`` recomputes nothing), and CUDA kernels compiled
from ``.cu`` sources. ``--strict`` makes those errors.
"""

from __future__ import annotations

import functools
from typing import Any

from anyware.migrate import _hooks
from anyware.migrate.shim._patch import Patcher
from anyware.migrate.shim._state import STATE, Target, record, unsupported
from anyware.migrate.shim.rules import Rule, RuleKind

CUDNN_FLAGS: tuple[str, ...] = ("benchmark", "deterministic", "allow_tf32", "enabled")


def _install_cudnn(p: Patcher, t: Target) -> None:
    import torch

    cls: Any = type(torch.backends.cudnn)
    for name in CUDNN_FLAGS:
        desc = cls.__dict__.get(name)
        if desc is None or not hasattr(desc, "__set__"):
            continue

        def fset(self: Any, value: Any, _desc: Any = desc, _name: str = name) -> None:
            target = STATE.target
            if target is not None and value and _name != "enabled":
                unsupported(
                    f"torch.backends.cudnn.{_name}",
                    f"cuDNN-only flag: no effect on {target.name!r}",
                )
            _desc.__set__(self, value)

        def fget(self: Any, _desc: Any = desc) -> Any:
            return _desc.__get__(self, type(self))

        p.set(cls, name, property(fget, fset))


def _install_matmul(p: Patcher, t: Target) -> None:
    import torch

    cls: Any = type(torch.backends.cuda.matmul)
    orig: Any = cls.__setattr__

    def __setattr__(self: Any, name: str, value: Any) -> Any:
        if name == "allow_tf32" and STATE.target is not None:
            record("torch.backends.cuda.matmul.allow_tf32")
            torch.set_float32_matmul_precision("high" if value else "highest")
        return orig(self, name, value)

    p.set(cls, "__setattr__", __setattr__)


def _install_profiler(p: Patcher, t: Target) -> None:
    import torch.profiler as prof

    activity = {"xpu": "XPU", "mtia": "MTIA"}.get(
        t.device_type, "PrivateUse1" if not t.host else None
    )

    def make(orig: Any) -> Any:
        @functools.wraps(orig)
        def __init__(self: Any, *args: Any, activities: Any = None, **kwargs: Any) -> None:
            if activities is not None and prof.ProfilerActivity.CUDA in activities:
                record("torch.profiler.ProfilerActivity.CUDA")
                repl = getattr(prof.ProfilerActivity, activity, None) if activity else None
                activities = [a for a in activities if a != prof.ProfilerActivity.CUDA]
                if repl is not None and repl not in activities:
                    activities.append(repl)
                activities = activities or [prof.ProfilerActivity.CPU]
            orig(self, *args, activities=activities, **kwargs)

        return __init__

    p.wrap(prof.profile, "__init__", make)


def _graph_reason() -> str:
    target = STATE.target
    name = target.name if target is not None else "this device"
    return f"CUDA graphs have no counterpart on {name!r}: captured code ran eagerly once; replay() does not recompute"


class _EagerGraph:
    """A ``torch.cuda.CUDAGraph`` that records nothing."""

    def capture_begin(self, *args: Any, **kwargs: Any) -> None:
        return None

    def capture_end(self) -> None:
        return None

    def replay(self) -> None:
        unsupported("torch.cuda.CUDAGraph.replay", _graph_reason())

    def reset(self) -> None:
        return None

    def pool(self) -> Any:
        return None


class _GraphCtx:
    def __init__(self, cuda_graph: Any, *args: Any, **kwargs: Any) -> None:
        self.graph = cuda_graph

    def __enter__(self) -> Any:
        unsupported("torch.cuda.graph", _graph_reason())
        return self.graph

    def __exit__(self, *exc: object) -> None:
        return None


def _install_graphs(p: Patcher, t: Target) -> None:
    import torch

    def make_graphed_callables(callables: Any, sample_args: Any, *args: Any, **kwargs: Any) -> Any:
        unsupported("torch.cuda.make_graphed_callables", "CUDA graphs: callables run eagerly")
        return callables

    p.set(torch.cuda, "CUDAGraph", _EagerGraph)
    p.set(torch.cuda, "graph", _GraphCtx)
    p.set(torch.cuda, "make_graphed_callables", make_graphed_callables)
    p.set(torch.cuda, "graph_pool_handle", lambda: None)
    p.set(torch.cuda, "is_current_stream_capturing", lambda: False)


def _install_nvtx(p: Patcher, t: Target) -> None:
    import torch
    import torch.cuda.nvtx as nvtx

    stack: list[Any] = []

    def range_push(msg: str) -> int:
        record("torch.cuda.nvtx")
        rf: Any = torch.profiler.record_function(msg)
        rf.__enter__()
        stack.append(rf)
        return len(stack) - 1

    def range_pop() -> int:
        if stack:
            stack.pop().__exit__(None, None, None)
        return len(stack)

    def range_(msg: str, *args: Any, **kwargs: Any) -> Any:
        record("torch.cuda.nvtx")
        return torch.profiler.record_function(
            msg.format(*args, **kwargs) if args or kwargs else msg
        )

    def mark(msg: str) -> None:
        record("torch.cuda.nvtx")

    p.set(nvtx, "range_push", range_push)
    p.set(nvtx, "range_pop", range_pop)
    p.set(nvtx, "range", range_)
    p.set(nvtx, "mark", mark)


def _cuda_sources(args: tuple[Any, ...], kwargs: dict[str, Any]) -> bool:
    if kwargs.get("with_cuda") or kwargs.get("cuda_sources"):
        return True
    sources = kwargs.get("sources", args[1] if len(args) > 1 else ())
    if isinstance(sources, str):
        sources = [sources]
    return any(str(s).endswith((".cu", ".cuh")) for s in sources or ())


def _call_make(make: Any, api: str, orig: Any) -> Any:
    return make(orig, api)


def _install_extensions(p: Patcher, t: Target) -> None:
    def patch(mod: Any) -> None:
        if STATE.target is None:
            return

        def make(orig: Any, api: str) -> Any:
            @functools.wraps(orig)
            def load(*args: Any, **kwargs: Any) -> Any:
                if _cuda_sources(args, kwargs):
                    unsupported(api, "binary CUDA kernels (.cu sources) cannot run on this device")
                return orig(*args, **kwargs)

            return load

        for name in ("load", "load_inline"):
            api = f"torch.utils.cpp_extension.{name}"
            p.wrap(mod, name, functools.partial(_call_make, make, api))

    _hooks.when_imported("torch.utils.cpp_extension", patch)


RULES: tuple[Rule, ...] = (
    Rule(api="torch.backends.cudnn", kind=RuleKind.FLAG, install=_install_cudnn,
         doc="benchmark/deterministic/allow_tf32 = True reported as not honoured (cuDNN-only)"),
    Rule(api="torch.backends.cuda.matmul.allow_tf32", kind=RuleKind.FLAG, install=_install_matmul,
         doc="→ torch.set_float32_matmul_precision('high' / 'highest')"),
    Rule(api="torch.profiler.ProfilerActivity.CUDA", kind=RuleKind.PROFILING, install=_install_profiler,
         doc="CUDA activity → the target's activity (dropped on a host target)"),
    Rule(api="torch.cuda.CUDAGraph", kind=RuleKind.GRAPH, install=_install_graphs,
         doc="graph capture runs eagerly, reported once; make_graphed_callables returns the callables"),
    Rule(api="torch.cuda.nvtx", kind=RuleKind.PROFILING, install=_install_nvtx,
         doc="NVTX ranges → torch.profiler.record_function"),
    Rule(api="torch.utils.cpp_extension.load", kind=RuleKind.EXTENSION, install=_install_extensions,
         doc="building .cu sources reported as not honoured (binary CUDA kernels)"),
)  # fmt: skip
