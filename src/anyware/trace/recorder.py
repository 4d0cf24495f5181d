"""The recorder: module hooks, an aten dispatch mode and optimizer hooks feeding one row list.

Three observers, one execution counter (``seq``):

* **modules** — global ``nn.Module`` forward pre/post hooks keep a stack of module paths (for
  attributing ops) and, at ``module``/``mix`` level, record each call's inputs and outputs; a
  hook on every output (and input) tensor records its gradient when autograd produces it.
  Tensor hooks only read the gradient and return ``None``: they add no node to the graph, so
  gradient accumulation order is unchanged (``register_full_backward_hook`` would insert
  identity nodes, which is why it is not used).
* **ops** — a ``TorchDispatchMode`` sees every aten op however Python spelled it (``x.relu_()``,
  ``from torch import relu``, operators). The autograd engine carries the mode into backward
  (it restores the caller's thread-local state in its worker threads), and
  ``torch._C._current_autograd_node()`` names the node being run; the module post-hook tags
  the nodes a module created (``node.metadata``), so backward ops get their module too.
* **optimizer** — global step pre/post hooks record each parameter's gradient, its value
  before the step and the update ``p_after − p_before``, then close the step: one flush of
  device statistics to the host, the step's rows handed to the writer as one Arrow batch.
"""

from __future__ import annotations

import contextlib
import fnmatch
import os
import sys
import weakref
from dataclasses import dataclass
from pathlib import Path
from types import FrameType
from typing import Any

from anyware.trace.schema import Level, Phase
from anyware.trace.stats import Pending
from anyware.trace.tensormap import TensorMap
from anyware.trace.writer import TraceWriter

#: Ops whose output aliases their input without changing a value: no statistics, lineage only.
_ALIAS_OPS = frozenset({"aten._unsafe_view", "aten.lift_fresh", "aten.alias", "aten.detach"})
#: Ops whose output holds whatever was in memory: nothing to measure until something writes it
#: (its next consumer measures it then). Comparing them flagged garbage as a divergence.
_UNINITIALISED_OPS = frozenset(
    {
        "aten.empty",
        "aten.empty_like",
        "aten.new_empty",
        "aten.empty_strided",
        "aten.new_empty_strided",
    }
)
#: In-place ops that overwrite their first argument whatever it held (initialisers, fills):
#: its old contents are not an input, and are often the garbage of an empty().
_OVERWRITE_OPS = frozenset(
    {
        "aten.uniform_",
        "aten.normal_",
        "aten.random_",
        "aten.bernoulli_",
        "aten.exponential_",
        "aten.zero_",
        "aten.fill_",
        "aten.copy_",
    }
)
#: Phases as plain strings: an enum member's ``.value`` goes through a descriptor, and the op
#: level asks for it a few thousand times a step.
FORWARD, BACKWARD, OPTIMIZER = (p.value for p in Phase)
_SKIP_DIRS: tuple[str, ...] = ()
_DTYPE_NAMES: dict[Any, str] = {}
#: Rows kept on the device before an early flush when no optimizer step closes the step.
_MAX_PENDING = 200_000


def _skip_dirs() -> tuple[str, ...]:
    global _SKIP_DIRS
    if not _SKIP_DIRS:
        import torch

        here = os.path.dirname(os.path.dirname(__file__))
        _SKIP_DIRS = (
            os.path.dirname(torch.__file__),
            os.path.join(here, "trace"),
            os.path.join(here, "migrate"),  # the shim's wrappers: report the caller's line
            os.path.dirname(os.__file__),
        )
    return _SKIP_DIRS


def _location() -> str:
    """file:line of the innermost frame outside torch, the tracer and the standard library."""
    f: FrameType | None = sys._getframe(2)
    skip = _skip_dirs()
    while f is not None:
        fn = f.f_code.co_filename
        if not fn.startswith(skip) and not fn.startswith("<"):
            return f"{fn}:{f.f_lineno}"
        f = f.f_back
    return ""


def _tensors(obj: Any) -> list[Any]:
    """The tensors in an op's or module's arguments (nested lists, tuples, dicts), in order."""
    tensor = _TENSOR or _tensor_type()
    if isinstance(obj, tensor):
        return [obj]
    if isinstance(obj, dict):
        obj = tuple(obj.values())
    elif not isinstance(obj, list | tuple):
        return []
    out = []
    for o in obj:  # flat argument lists are the rule: recurse only into containers
        if isinstance(o, tensor):
            out.append(o)
        elif isinstance(o, list | tuple | dict):
            out += _tensors(o)
    return out


_TENSOR: Any = None


def _tensor_type() -> Any:
    global _TENSOR
    import torch

    _TENSOR = torch.Tensor
    return _TENSOR


@dataclass(frozen=True, slots=True, kw_only=True)
class RecordConfig:
    """What to record and where."""

    out: Path
    """Trace directory (created); each rank writes ``rank<N>.parquet`` there."""
    level: Level | str = Level.MODULE
    """module, op or mix."""
    tensors: str | None = None
    """Glob over module paths whose tensors are also saved whole (``'blocks.1.*'``)."""
    rank: int | None = None
    """This process's rank; default: ``RANK`` or torch.distributed, else 0."""

    def __post_init__(self) -> None:
        if not isinstance(self.level, Level):
            try:
                object.__setattr__(self, "level", Level(self.level))
            except ValueError:
                choices = ", ".join(lv.value for lv in Level)
                raise ValueError(
                    f"trace level must be one of {choices}, got {self.level!r}"
                ) from None
        object.__setattr__(self, "out", Path(self.out))


class Recorder:
    """One per process while recording; see the module docstring for what it observes."""

    def __init__(self, cfg: RecordConfig) -> None:
        self.cfg = cfg
        self.level = Level(cfg.level)
        self.modules = self.level in (Level.MODULE, Level.MIX)
        self.ops = self.level in (Level.OP, Level.MIX)
        self.step = 0
        self.seq = 0
        self.call = 0
        self.pending = Pending()
        self.writer: TraceWriter | None = None
        self.stack: list[str] = []
        self.mcalls: list[tuple[int, int, list[int], list[Any]]] = []
        self.paths: weakref.WeakKeyDictionary[Any, str] = weakref.WeakKeyDictionary()
        self.roots: list[str] = []
        self.params = TensorMap()
        self.lineage = TensorMap()
        self.seen = TensorMap()
        self.counters: dict[tuple[str, str, str], int] = {}
        self.locations: dict[tuple[str, str, str, int], str] = {}
        self.in_optimizer = False
        self.before: dict[int, Any] = {}
        self.handles: list[Any] = []
        self.mode: Any = None
        self.failed = False
        self.closed = False

    # -- lifecycle ------------------------------------------------------------------------
    def install(self) -> None:
        import torch
        import torch.optim.optimizer as optim_mod
        from torch.nn.modules import module as module_mod

        self.handles += [
            module_mod.register_module_forward_pre_hook(self._pre),
            module_mod.register_module_forward_hook(self._post),
            optim_mod.register_optimizer_step_pre_hook(self._opt_pre),
            optim_mod.register_optimizer_step_post_hook(self._opt_post),
        ]
        if self.ops:
            from anyware.trace.dispatch import TraceMode

            self.mode = TraceMode(self)
            self.mode.__enter__()
        del torch

    def close(self) -> None:
        """Remove every hook, gather the last statistics and seal this rank's file."""
        if self.closed:
            return
        self.closed = True
        for h in self.handles:
            h.remove()
        self.handles.clear()
        if self.mode is not None:
            # Exited on another thread/stack (atexit): nothing left to undo then.
            with contextlib.suppress(Exception):
                self.mode.__exit__(None, None, None)
            self.mode = None
        self.flush()
        w = self._writer()
        w.close({"level": self.level.value, "steps": self.step, "rank": w.rank})

    def _writer(self) -> TraceWriter:
        if self.writer is None:
            self.writer = TraceWriter(self.cfg.out, self._rank())
        return self.writer

    def _rank(self) -> int:
        if self.cfg.rank is not None:
            return self.cfg.rank
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return int(dist.get_rank())
        return int(os.environ.get("RANK", "0") or 0)

    def flush(self) -> None:
        self.seen.clear()
        with self._quiet():
            cols = self.pending.flush()
        if cols:
            w = self._writer()
            cols["rank"] = [w.rank] * len(cols["seq"])
            w.write(cols)

    def mark_step(self) -> None:
        """Close the current step: statistics to the host, its rows to the writer."""
        self.flush()
        self.step += 1
        self.counters.clear()
        self.stack.clear()
        self.mcalls.clear()

    # -- rows -----------------------------------------------------------------------------
    def observe(
        self,
        t: Any,
        *,
        phase: str,
        module: str,
        op: str,
        slot: str,
        role: str,
        call: int,
        call_index: int,
        inputs: list[int] | None = None,
        where: bool = True,
        level: str = "module",
        fresh: bool = False,
    ) -> int:
        """Queue one tensor's statistics; returns its ``seq``."""
        seq = self.seq
        self.seq += 1
        loc = ""
        if where:
            lk = (phase, module, op, call_index)
            loc = self.locations.get(lk, "")
            if not loc:
                loc = self.locations[lk] = _location()
        step = self.step
        ph = phase
        dtype = _DTYPE_NAMES.get(t.dtype)
        if dtype is None:
            dtype = _DTYPE_NAMES[t.dtype] = str(t.dtype).removeprefix("torch.")
        row = (
            seq,
            step,
            ph,
            module,
            op,
            call_index,
            slot,
            role,
            call,
            f"{step}/{ph}/{module}/{op}#{call_index}/{slot}",  # schema.make_key, inlined
            dtype,
            "x".join(map(str, t.shape)),
            t.numel(),
            inputs or [],
            loc,
            level,
        )
        # The same tensor, unchanged, is often observed twice (a child's input is its
        # parent's; a module's output is its last op's): measure it once per step.
        try:
            version = t._version
        except RuntimeError:  # inference tensors keep no version counter
            version = None
        # ``fresh``: an op's output inside the dispatch mode, where an in-place op has not yet
        # bumped the version counter (autograd's ADInplaceOrView does that on the way out).
        hit = self.seen.get(t) if version is not None and not fresh else None
        if hit is not None and hit[0] == version:
            self.pending.add_copy(row, hit[1])
        else:
            i = self.pending.add(row, t.detach())
            if version is not None:
                self.seen[t] = (version, i)
        if self.cfg.tensors and fnmatch.fnmatchcase(module, self.cfg.tensors):
            self._writer().tensors[row[9]] = t.detach().to("cpu", copy=True)
        if len(self.pending.rows) >= _MAX_PENDING:
            self.flush()
        return seq

    def next_index(self, phase: str, module: str, op: str) -> int:
        k = (phase, module, op)
        i = self.counters.get(k, 0)
        self.counters[k] = i + 1
        return i

    def new_call(self) -> int:
        self.call += 1
        return self.call

    # -- module hooks ---------------------------------------------------------------------
    def _path(self, mod: Any) -> str:
        p = self.paths.get(mod)
        if p is not None:
            return p
        if self.stack:  # created on the fly inside a known module
            parent = self.stack[-1]
            p = f"{parent}.{type(mod).__name__}" if parent else type(mod).__name__
            self.paths[mod] = p
            return p
        prefix = "" if not self.roots else type(mod).__name__
        while prefix in self.roots and prefix:
            prefix += "_"
        self.roots.append(prefix)
        for name, sub in mod.named_modules():
            full = ".".join(x for x in (prefix, name) if x)
            self.paths.setdefault(sub, full)
        for name, prm in mod.named_parameters():
            owner, _, local = name.rpartition(".")
            full = ".".join(x for x in (prefix, owner) if x)
            if prm not in self.params:
                self.params[prm] = (full, local)
        return self.paths[mod]

    def _pre(self, mod: Any, args: Any) -> None:
        if self.failed:
            return
        try:
            path = self._path(mod)
            self.stack.append(path)
            if self.modules:
                with self._quiet():
                    self._module_inputs(mod, path, args)
        except Exception as e:
            self._fail(e)

    def _post(self, mod: Any, args: Any, output: Any) -> None:
        if self.failed:
            return
        try:
            path = self.stack.pop() if self.stack else self._path(mod)
            if self.modules:
                with self._quiet():
                    self._module_outputs(mod, path, output)
            if self.ops:  # walks autograd nodes only: no tensor op, nothing to hide
                _tag_nodes(_tensors(output), _tensors(args), path)
        except Exception as e:
            self._fail(e)

    def _module_inputs(self, mod: Any, path: str, args: Any) -> None:
        op = type(mod).__name__
        idx = self.next_index(FORWARD, path, op)
        call = self.new_call()
        ins = _tensors(args)
        seqs = [
            self.observe(
                t,
                phase=FORWARD,
                module=path,
                op=op,
                slot=f"in{i}",
                role="in",
                call=call,
                call_index=idx,
            )
            for i, t in enumerate(ins)
        ]
        self.mcalls.append((call, idx, seqs, ins))

    def _module_outputs(self, mod: Any, path: str, output: Any) -> None:
        op = type(mod).__name__
        call, idx, seqs, ins = self.mcalls.pop() if self.mcalls else (self.new_call(), 0, [], [])
        outs = _tensors(output)
        for i, t in enumerate(outs):
            self.observe(
                t,
                phase=FORWARD,
                module=path,
                op=op,
                slot=f"out{i}",
                role="out",
                call=call,
                call_index=idx,
                inputs=seqs,
            )
        if not any(t.requires_grad for t in outs):
            return
        bcall = self.new_call()
        grad_outs: list[int] = []
        for i, t in enumerate(outs):
            if t.requires_grad:
                t.register_hook(self._grad_hook(path, op, f"grad_out{i}", "in", bcall, grad_outs))
        for i, t in enumerate(ins):
            if t.requires_grad:
                t.register_hook(self._grad_hook(path, op, f"grad_in{i}", "out", bcall, grad_outs))

    def _grad_hook(
        self, path: str, op: str, slot: str, role: str, call: int, outs: list[int]
    ) -> Any:
        def hook(grad: Any) -> None:
            if self.failed or self.closed or grad is None:
                return
            try:
                with self._quiet():
                    idx = self.next_index(BACKWARD, path, f"{op}.{slot}")
                    s = self.observe(
                        grad,
                        phase=BACKWARD,
                        module=path,
                        op=op,
                        slot=slot,
                        role=role,
                        call=call,
                        call_index=idx,
                        inputs=None if role == "in" else list(outs),
                    )
                    if role == "in":
                        outs.append(s)
            except Exception as e:
                self._fail(e)

        return hook

    # -- optimizer hooks ------------------------------------------------------------------
    def _param_name(self, p: Any, g: int, i: int) -> tuple[str, str]:
        return self.params.get(p) or ("", f"param{g}.{i}")

    def _opt_pre(self, opt: Any, args: Any, kwargs: Any) -> None:
        if self.failed:
            return
        try:
            with self._quiet():
                import torch

                with torch.no_grad():
                    for g, group in enumerate(opt.param_groups):
                        for i, p in enumerate(group["params"]):
                            mod, name = self._param_name(p, g, i)
                            op = f"{type(opt).__name__}.step"
                            call = self.new_call()
                            ins = []
                            if p.grad is not None:
                                src = self.lineage.get(p.grad)
                                ins.append(
                                    self.observe(
                                        p.grad,
                                        phase=BACKWARD,
                                        module=mod,
                                        op="grad",
                                        slot=name,
                                        role="out",
                                        call=call,
                                        call_index=0,
                                        where=False,
                                        inputs=None if src is None else [src],
                                    )
                                )
                            ins.append(
                                self.observe(
                                    p,
                                    phase=OPTIMIZER,
                                    module=mod,
                                    op=op,
                                    slot=f"param:{name}",
                                    role="in",
                                    call=call,
                                    call_index=0,
                                    where=False,
                                )
                            )
                            self.before[id(p)] = (p.detach().clone(), call, ins, mod, name, op)
            self.in_optimizer = True
        except Exception as e:
            self._fail(e)

    def _opt_post(self, opt: Any, args: Any, kwargs: Any) -> None:
        self.in_optimizer = False
        if self.failed:
            return
        try:
            with self._quiet():
                import torch

                with torch.no_grad():
                    for group in opt.param_groups:
                        for p in group["params"]:
                            saved = self.before.pop(id(p), None)
                            if saved is None:
                                continue
                            old, call, ins, mod, name, op = saved
                            self.observe(
                                p.detach() - old,
                                phase=OPTIMIZER,
                                module=mod,
                                op=op,
                                slot=f"update:{name}",
                                role="out",
                                call=call,
                                call_index=0,
                                inputs=ins,
                                where=False,
                            )
            self.before.clear()
            self.mark_step()
        except Exception as e:
            self._fail(e)

    # -- helpers --------------------------------------------------------------------------
    def _quiet(self) -> Any:
        """Our own tensor work must not be seen by our dispatch mode."""
        if self.mode is None:
            import contextlib

            return contextlib.nullcontext()
        from torch.utils._python_dispatch import _disable_current_modes

        return _disable_current_modes()

    def _fail(self, e: BaseException) -> None:
        # The user's program must go on: stop recording, keep what was recorded, say why once.
        self.failed = True
        print(f"anyware trace: stopped recording: {type(e).__name__}: {e}", file=sys.stderr)
        if os.environ.get("ANYWARE_TRACE_DEBUG"):
            import traceback

            traceback.print_exception(e)


def _tag_nodes(outputs: list[Any], inputs: list[Any], path: str) -> None:
    """Label the autograd nodes a module call created with its path (innermost module wins:
    children finish first and tag their nodes before the parent walks past them)."""
    stop = {id(t.grad_fn) for t in inputs if t.grad_fn is not None}
    todo = [t.grad_fn for t in outputs if t.grad_fn is not None]
    seen: set[int] = set()
    while todo:
        n = todo.pop()
        if n is None or id(n) in seen or id(n) in stop:
            continue
        seen.add(id(n))
        md = n.metadata
        if "anyware_module" not in md:
            md["anyware_module"] = path
        todo.extend(nxt for nxt, _ in n.next_functions)
