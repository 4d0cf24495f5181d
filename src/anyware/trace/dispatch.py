"""The op-level observer: a ``TorchDispatchMode`` that records every aten op's outputs.

It sits below autograd, so it sees the ops autograd actually runs — forward ops after
composite decomposition, every backward op (attributed through the current autograd node's
module tag) and the optimizer's in-place updates — however the Python code spelled them.
The mode only reads: ``func`` runs exactly as without it, then statistics are queued on the
outputs. View ops are not measured (their values are their base's) but keep lineage, so a
consumer of ``w.t()`` knows it reads ``w``.
"""

from __future__ import annotations

from typing import Any

from torch.utils._python_dispatch import TorchDispatchMode

from anyware.trace.recorder import (
    _ALIAS_OPS,
    _OVERWRITE_OPS,
    _UNINITIALISED_OPS,
    BACKWARD,
    FORWARD,
    OPTIMIZER,
    _tensors,
)


class TraceMode(TorchDispatchMode):  # type: ignore[misc]
    def __init__(self, rec: Any) -> None:
        super().__init__()  # type: ignore[no-untyped-call]
        self.rec = rec
        self.names: dict[Any, tuple[str, bool]] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        rec = self.rec
        if rec.failed or rec.closed:
            return func(*args, **kwargs)
        try:
            # Inputs are measured before the op runs: an in-place op overwrites them.
            pre = self._before(func, args, kwargs)
        except Exception as e:
            rec._fail(e)
            return func(*args, **kwargs)
        out = func(*args, **kwargs)
        if pre is not None and not rec.failed:
            try:
                self._after(pre, out)
            except Exception as e:
                rec._fail(e)
        return out

    def _before(self, func: Any, args: Any, kwargs: Any) -> tuple[Any, ...] | None:
        import torch

        info = self.names.get(func)
        if info is None:
            name = str(func.overloadpacket)
            info = self.names[func] = (name, bool(func.is_view) or name in _ALIAS_OPS)
        name, alias = info
        rec = self.rec
        ins = _tensors(args)
        if kwargs:
            ins += _tensors(kwargs)
        if alias or name in _UNINITIALISED_OPS or name.startswith(("c10d.", "_c10d_functional.")):
            return (name, alias, ins)
        lineage = rec.lineage
        node: Any = torch._C._current_autograd_node()
        if node is not None:
            phase = BACKWARD
            module = node.metadata.get("anyware_module", "")
        elif rec.in_optimizer:
            phase = OPTIMIZER
            owner = rec.params.get(ins[0]) if ins else None
            module = owner[0] if owner else ""
        else:
            phase = FORWARD
            module = rec.stack[-1] if rec.stack else ""
        idx = rec.next_index(phase, module, name)
        call = rec.new_call()
        srcs = []
        overwrite = name in _OVERWRITE_OPS
        for i, t in enumerate(ins):
            if i == 0 and overwrite:
                continue  # the destination's old contents are not read
            s = lineage.get(t)
            if s is None:
                # An input no recorded op produced (data, a parameter, a buffer): measured
                # once, then every later consumer points at this row.
                s = rec.observe(
                    t,
                    phase=phase,
                    module=module,
                    op=name,
                    slot=f"in{i}",
                    role="in",
                    call=call,
                    call_index=idx,
                    where=False,
                    level="op",
                )
                lineage[t] = s
            srcs.append(s)
        return (name, alias, ins, phase, module, idx, call, srcs)

    def _after(self, pre: tuple[Any, ...], out: Any) -> None:

        name, alias, ins = pre[:3]
        outs = _tensors(out)
        if not outs:
            return
        lineage = self.rec.lineage
        if len(pre) == 3:
            if not alias:
                # A collective may still be writing its outputs when it returns (async
                # work), and an empty() has no values yet: measuring them now would race or
                # read garbage; their next consumer measures them.
                for t in outs:
                    lineage.pop(t, None)
            elif ins and ins[0].is_contiguous():
                # A view in the same element order (view, flatten, unsqueeze) reads its base's
                # row; a reordering one (t, transpose) is measured afresh where it is used.
                src = lineage.get(ins[0])
                if src is not None:
                    for t in outs:
                        if t.is_contiguous():
                            lineage[t] = src
            return
        _, _, _, phase, module, idx, call, srcs = pre
        for j, t in enumerate(outs):
            lineage[t] = self.rec.observe(
                t,
                phase=phase,
                module=module,
                op=name,
                slot=f"out{j}",
                role="out",
                call=call,
                call_index=idx,
                inputs=srcs,
                level="op",
                fresh=True,
            )
