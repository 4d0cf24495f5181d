"""MIG005 CUDA autocast.

Detects ``torch.cuda.amp.autocast(...)``, ``torch.autocast("cuda")``,
``torch.autocast(device_type="cuda")``, ``torch.amp.autocast("cuda")``. Why: autocast on a
non-CUDA device with ``device_type="cuda"`` is silently off or fails. Example:
``with torch.cuda.amp.autocast(dtype=torch.float16):``. Fix: ``torch.autocast(<accelerator
type>, ...)``. Note: float16 autocast on a cpu is slow; the run-time shim picks bfloat16 there.
"""

from __future__ import annotations

from typing import ClassVar

import libcst as cst

from anyware.migrate.codemod._expr import ACC_TYPE, dotted, expr, rewrite_device
from anyware.migrate.codemod.rules._base import CodemodRule, Context

NAMES = frozenset({"torch.autocast", "torch.amp.autocast", "torch.amp.autocast_mode.autocast"})


def retype_first(node: cst.Call, keyword: str) -> cst.Call | None:
    """Rewrite the device-type argument (first positional or ``keyword=``)."""
    args = list(node.args)
    for i, arg in enumerate(args):
        if (arg.keyword is None and i == 0) or (
            arg.keyword is not None and arg.keyword.value == keyword
        ):
            new = rewrite_device(arg.value, type_only=True)
            if new is None:
                return None
            args[i] = arg.with_changes(value=new)
            return node.with_changes(args=args)
    return None


class Autocast(CodemodRule):
    code: ClassVar[str] = "MIG005"
    kind: ClassVar[str] = "amp"
    title: ClassVar[str] = "CUDA autocast → torch.autocast(accelerator type)"

    def on_call(self, node: cst.Call, ctx: Context) -> cst.BaseExpression | None:
        name = dotted(node.func)
        if name == "torch.cuda.amp.autocast":
            return node.with_changes(
                func=expr("torch.autocast"), args=[cst.Arg(expr(ACC_TYPE)), *node.args]
            )
        if name in NAMES:
            return retype_first(node, "device_type")
        return None
