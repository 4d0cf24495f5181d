"""MIG008 legacy CUDA tensor types (not converted).

Detects ``torch.cuda.FloatTensor``, ``torch.cuda.LongTensor``, ... Why: these types exist only
with CUDA; code like ``Tensor = torch.cuda.FloatTensor if cuda else torch.FloatTensor`` and
``x.type(Tensor)`` needs a dtype/device rewrite a tool cannot infer safely. Example:
``Tensor(imgs.size(0), 1).fill_(1.0)``. Fix by hand: ``torch.ones(n, 1, device=device)``;
``anyware run`` handles them at run time.
"""

from __future__ import annotations

from typing import ClassVar

import libcst as cst

from anyware.migrate.codemod._expr import dotted
from anyware.migrate.codemod.rules._base import CodemodRule, Context

TYPES = frozenset(
    f"torch.cuda.{t}Tensor"
    for t in ("Float", "Double", "Half", "BFloat16", "Byte", "Char", "Short", "Int", "Long", "Bool")
)


class LegacyTypes(CodemodRule):
    code: ClassVar[str] = "MIG008"
    kind: ClassVar[str] = "legacy type"
    title: ClassVar[str] = "torch.cuda.<X>Tensor (report only)"

    def on_node(self, node: cst.CSTNode, ctx: Context) -> None:
        if isinstance(node, cst.Attribute) and dotted(node) in TYPES:
            ctx.flag(self, f"{dotted(node)} exists only with CUDA; use a dtype and device= instead")
