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

from anyware.trace.schema import Phase


class TraceMode(TorchDispatchMode):
    def __init__(self, rec: Any) -> None:
        super().__init__()
        self.rec = rec
        self.names: dict[Any, tuple[str, bool]] = {}

    def __torch_dispatch__(self, func: Any, types: Any, args: Any = (), kwargs: Any = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        rec = self.rec
        if rec.failed or rec.closed:
            return out
        try:
            self._record(func, args, kwargs, out)
        except Exception as e:
            rec._fail(e)
        return out

    def _record(self, func: Any, args: Any, kwargs: Any, out: Any) -> None:
        import torch

        from anyware.trace.recorder import _ALIAS_OPS, _tensors

        info = self.names.get(func)
        if info is None:
            name = str(func.overloadpacket)
            info = self.names[func] = (name, bool(func.is_view) or name in _ALIAS_OPS)
        name, alias = info
        outs = _tensors(out)
        if not outs:
            return
        rec = self.rec
        lineage = rec.lineage
        ins = _tensors(args)
        if kwargs:
            ins += _tensors(kwargs)
        if alias:
            if ins:
                src = lineage.get(ins[0])
                if src is not None:
                    for t in outs:
                        lineage[t] = src
            return
        node = torch._C._current_autograd_node()
        if node is not None:
            phase = Phase.BACKWARD
            module = node.metadata.get("anyware_module", "")
        elif rec.in_optimizer:
            phase = Phase.OPTIMIZER
            owner = rec.params.get(ins[0]) if ins else None
            module = owner[0] if owner else ""
        else:
            phase = Phase.FORWARD
            module = rec.stack[-1] if rec.stack else ""
        idx = rec.next_index(phase, module, name)
        call = rec.new_call()
        srcs = []
        for i, t in enumerate(ins):
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
        for j, t in enumerate(outs):
            lineage[t] = rec.observe(
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
            )
