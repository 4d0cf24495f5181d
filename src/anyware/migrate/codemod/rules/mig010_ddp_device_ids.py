"""MIG010 ``DistributedDataParallel(device_ids=...)``.

Detects ``DDP(model, device_ids=[gpu])`` / ``output_device=``. Why: torch requires
``device_ids=None`` for a module on the cpu, so a fixed GPU list stops the script there.
Example: ``DDP(self.model, device_ids=[self.gpu_id])``. Fix: ``device_ids=[...] if
torch.accelerator.is_available() else None``.
"""

from __future__ import annotations

from typing import ClassVar

import libcst as cst

from anyware.migrate.codemod._expr import AVAILABLE, dotted, expr
from anyware.migrate.codemod.rules._base import CodemodRule, Context


class DdpDeviceIds(CodemodRule):
    code: ClassVar[str] = "MIG010"
    kind: ClassVar[str] = "distributed"
    title: ClassVar[str] = "DDP device_ids → None without an accelerator"

    def on_call(self, node: cst.Call, ctx: Context) -> cst.BaseExpression | None:
        name = dotted(node.func) or ""
        if not name.endswith(("DistributedDataParallel", "DDP")):
            return None
        args = list(node.args)
        changed = False
        for i, arg in enumerate(args):
            if arg.keyword is None or arg.keyword.value not in ("device_ids", "output_device"):
                continue
            if isinstance(arg.value, cst.IfExp) or (
                isinstance(arg.value, cst.Name) and arg.value.value == "None"
            ):
                continue
            value = cst.IfExp(
                test=expr(AVAILABLE),
                body=arg.value,
                orelse=cst.Name("None"),
                whitespace_before_if=cst.SimpleWhitespace(" "),
                whitespace_after_if=cst.SimpleWhitespace(" "),
                whitespace_before_else=cst.SimpleWhitespace(" "),
                whitespace_after_else=cst.SimpleWhitespace(" "),
            )
            args[i] = arg.with_changes(value=value)
            changed = True
        return node.with_changes(args=args) if changed else None
