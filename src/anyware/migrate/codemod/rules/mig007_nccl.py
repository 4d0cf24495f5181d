"""MIG007 ``nccl`` as the process-group backend.

Detects ``init_process_group("nccl")`` / ``backend="nccl"`` (any spelling of the call) and
``backend = 'nccl'`` assignments to a variable named ``*backend*``.
Why: NCCL exists only for NVIDIA GPUs; other devices have their own collective library (gloo on
cpu). Example: ``dist.init_process_group(backend="nccl")``. Fix:
``torch.distributed.get_default_backend_for_device(<accelerator>)``.
"""

from __future__ import annotations

from typing import ClassVar

import libcst as cst

from anyware.migrate.codemod._expr import ACC, dotted, expr, string_value
from anyware.migrate.codemod.rules._base import CodemodRule, Context

BACKEND = f"torch.distributed.get_default_backend_for_device({ACC})"


class Nccl(CodemodRule):
    code: ClassVar[str] = "MIG007"
    kind: ClassVar[str] = "distributed"
    title: ClassVar[str] = "backend='nccl' → the accelerator's default backend"

    def on_call(self, node: cst.Call, ctx: Context) -> cst.BaseExpression | None:
        name = dotted(node.func) or ""
        if not name.endswith(("init_process_group", "new_group")):
            return None
        pos = 0 if name.endswith("init_process_group") else 2
        args = list(node.args)
        for i, arg in enumerate(args):
            hit = (arg.keyword is not None and arg.keyword.value == "backend") or (
                arg.keyword is None and i == pos
            )
            if hit and string_value(arg.value) == "nccl":
                args[i] = arg.with_changes(value=expr(BACKEND))
                return node.with_changes(args=args)
        return None

    def on_assign(self, node: cst.Assign, ctx: Context) -> cst.Assign | None:
        if len(node.targets) != 1 or not isinstance(node.targets[0].target, cst.Name):
            return None
        if "backend" not in node.targets[0].target.value.lower():
            return None
        if string_value(node.value) != "nccl":
            return None
        return node.with_changes(value=expr(BACKEND))
