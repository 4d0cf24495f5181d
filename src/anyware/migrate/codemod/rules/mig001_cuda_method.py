"""MIG001 ``.cuda()`` on tensors and modules.

Detects ``x.cuda()``, ``x.cuda(i)``, ``x.cuda(non_blocking=True)``, ``model.cuda(args.gpu)``.
Why: ``.cuda()`` fails on every machine without CUDA. Example: ``images = images.cuda(gpu,
non_blocking=True)``. Fix: ``images.to(torch.device(<accelerator>.type, gpu),
non_blocking=True)``; without an index, ``.to(<accelerator or cpu>)``.
"""

from __future__ import annotations

from typing import ClassVar

import libcst as cst

from anyware.migrate.codemod._expr import ACC, dotted, expr, indexed
from anyware.migrate.codemod.rules._base import CodemodRule, Context


class CudaMethod(CodemodRule):
    code: ClassVar[str] = "MIG001"
    kind: ClassVar[str] = "device"
    title: ClassVar[str] = ".cuda() → .to(accelerator)"

    def on_call(self, node: cst.Call, ctx: Context) -> cst.BaseExpression | None:
        func = node.func
        if not isinstance(func, cst.Attribute) or func.attr.value != "cuda":
            return None
        if dotted(func.value) == "torch":
            return None
        index: cst.BaseExpression | None = None
        rest: list[cst.Arg] = []
        for i, arg in enumerate(node.args):
            if (arg.keyword is None and i == 0) or (
                arg.keyword is not None and arg.keyword.value == "device"
            ):
                index = arg.value
            else:
                rest.append(arg)
        target = (
            expr(ACC)
            if index is None or (isinstance(index, cst.Name) and index.value == "None")
            else indexed(index)
        )
        return node.with_changes(
            func=func.with_changes(attr=cst.Name("to")),
            args=[
                cst.Arg(target),
                *[a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in rest],
            ],
        )
