"""MIG021 hazard: ``rank % torch.cuda.device_count()`` (reported, left alone).

Detects a modulo by the CUDA device count. Why: it maps ranks onto GPUs by assuming every
host has the same number of NVIDIA devices; with no CUDA the count is 0 (ZeroDivisionError),
and on a cpu every rank shares one device. Example: ``device_id = rank % torch.cuda.device_count()``.
Fix by hand: use ``LOCAL_RANK`` from the launcher.
"""

from __future__ import annotations

from typing import ClassVar

import libcst as cst

from anyware.migrate.codemod._expr import dotted
from anyware.migrate.codemod.rules._base import CodemodRule, Context


class RankModulo(CodemodRule):
    code: ClassVar[str] = "MIG021"
    kind: ClassVar[str] = "hazard"
    title: ClassVar[str] = "rank % device_count() (report only)"

    def on_node(self, node: cst.CSTNode, ctx: Context) -> None:
        if (
            isinstance(node, cst.BinaryOperation)
            and isinstance(node.operator, cst.Modulo)
            and isinstance(node.right, cst.Call)
            and dotted(node.right.func) == "torch.cuda.device_count"
        ):
            ctx.flag(
                self,
                "rank % torch.cuda.device_count() assumes NVIDIA GPUs on every host; use LOCAL_RANK",
            )
