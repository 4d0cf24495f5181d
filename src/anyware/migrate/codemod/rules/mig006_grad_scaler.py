"""MIG006 CUDA gradient scaler.

Detects ``torch.cuda.amp.GradScaler(...)`` and ``torch.amp.GradScaler("cuda")``. Why: the CUDA
scaler refuses to run elsewhere. Example: ``scaler = torch.cuda.amp.GradScaler(enabled=fp16)``.
Fix: ``torch.amp.GradScaler(<accelerator type>, ...)``.
"""

from __future__ import annotations

from typing import ClassVar

import libcst as cst

from anyware.migrate.codemod._expr import ACC_TYPE, dotted, expr
from anyware.migrate.codemod.rules._base import CodemodRule, Context
from anyware.migrate.codemod.rules.mig005_autocast import retype_first


class GradScaler(CodemodRule):
    code: ClassVar[str] = "MIG006"
    kind: ClassVar[str] = "amp"
    title: ClassVar[str] = "CUDA GradScaler → torch.amp.GradScaler(accelerator type)"

    def on_call(self, node: cst.Call, ctx: Context) -> cst.BaseExpression | None:
        name = dotted(node.func)
        if name == "torch.cuda.amp.GradScaler":
            return node.with_changes(
                func=expr("torch.amp.GradScaler"), args=[cst.Arg(expr(ACC_TYPE)), *node.args]
            )
        if name == "torch.amp.GradScaler":
            return retype_first(node, "device")
        return None
