"""MIG020 hazard: decisions made on a ``"cuda"`` string test (reported, left alone).

Detects ``'cuda' in device``, ``device == 'cuda'``, ``device.type != "cuda"``,
``str(device).startswith("cuda")``. Why: such tests often choose autocast dtypes, fused
optimizers, pinned memory or ``torch.compile``; on another accelerator they silently take the
slow or wrong branch, and no rewrite can know which branch the author meant. Example:
``use_fused = 'cuda' in device_type``. Fix by hand: test ``device.type != "cpu"`` or ask
``torch.accelerator``.
"""

from __future__ import annotations

from typing import ClassVar

import libcst as cst

from anyware.migrate.codemod._expr import string_value
from anyware.migrate.codemod.rules._base import CodemodRule, Context


def _is_cuda(node: cst.CSTNode) -> bool:
    v = string_value(node)
    return v is not None and (v == "cuda" or v.startswith("cuda:"))


class CudaStringTest(CodemodRule):
    code: ClassVar[str] = "MIG020"
    kind: ClassVar[str] = "hazard"
    title: ClassVar[str] = "'cuda' string tests decide behaviour (report only)"

    def on_node(self, node: cst.CSTNode, ctx: Context) -> None:
        if isinstance(node, cst.Comparison):
            if _is_cuda(node.left) or any(_is_cuda(c.comparator) for c in node.comparisons):
                ctx.flag(
                    self,
                    "a 'cuda' string test decides behaviour; other accelerators take the other branch",
                )
        elif (
            isinstance(node, cst.Call)
            and isinstance(node.func, cst.Attribute)
            and node.func.attr.value == "startswith"
            and node.args
            and _is_cuda(node.args[0].value)
        ):
            ctx.flag(
                self,
                "startswith('cuda') decides behaviour; other accelerators take the other branch",
            )
