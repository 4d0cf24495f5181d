"""MIG011 other ``torch.cuda`` / cuDNN APIs (not converted).

Detects ``torch.cuda.*`` calls no rule converts (``get_device_properties``, ``nvtx``, CUDA
graphs, streams, ...) and ``torch.backends.cudnn.*`` settings. Why: they have no exact
device-agnostic spelling (cuDNN flags simply do nothing elsewhere). Example:
``torch.backends.cudnn.benchmark = True``. Fix by hand, or run under ``anyware run``.
"""

from __future__ import annotations

from typing import ClassVar

import libcst as cst

from anyware.migrate.codemod._expr import dotted
from anyware.migrate.codemod.rules._base import CodemodRule, Context
from anyware.migrate.codemod.rules.mig008_legacy_types import TYPES


class CudaLeftover(CodemodRule):
    code: ClassVar[str] = "MIG011"
    kind: ClassVar[str] = "cuda api"
    title: ClassVar[str] = "other torch.cuda / cuDNN references (report only)"

    def on_node(self, node: cst.CSTNode, ctx: Context) -> None:
        if not isinstance(node, cst.Attribute):
            return
        name = dotted(node) or ""
        parts = name.split(".")
        if name.startswith("torch.backends.cudnn.") and len(parts) == 4:
            ctx.flag(self, f"{name} is cuDNN-only: no effect on other devices", kind="backend flag")

    def on_call(self, node: cst.Call, ctx: Context) -> cst.BaseExpression | None:
        # Runs last: what is still ``torch.cuda.X(...)`` here no rule converted.
        name = dotted(node.func) or ""
        parts = name.split(".")
        if name.startswith("torch.cuda.") and len(parts) >= 3 and name not in TYPES:
            ctx.flag(self, f"{name}() has no device-agnostic spelling; kept as is")
        return None
