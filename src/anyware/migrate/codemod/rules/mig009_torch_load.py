"""MIG009 ``torch.load`` without ``map_location``.

Detects ``torch.load(f)`` with no ``map_location``. Why: a checkpoint saved on a GPU has its
storages tagged ``cuda:0`` and fails to load where CUDA is absent. Example:
``checkpoint = torch.load(args.resume)``. Fix: ``map_location=<accelerator or cpu>``.
"""

from __future__ import annotations

from typing import ClassVar

import libcst as cst

from anyware.migrate.codemod._expr import ACC, dotted, expr
from anyware.migrate.codemod.rules._base import CodemodRule, Context


class TorchLoad(CodemodRule):
    code: ClassVar[str] = "MIG009"
    kind: ClassVar[str] = "serialization"
    title: ClassVar[str] = "torch.load(f) → torch.load(f, map_location=accelerator)"

    def on_call(self, node: cst.Call, ctx: Context) -> cst.BaseExpression | None:
        if dotted(node.func) != "torch.load":
            return None
        positional = [a for a in node.args if a.keyword is None and a.star == ""]
        if len(positional) >= 2 or any(a.star for a in node.args):
            return None
        if any(a.keyword is not None and a.keyword.value == "map_location" for a in node.args):
            return None
        args = list(node.args)
        if args:
            args[-1] = args[-1].with_changes(
                comma=cst.Comma(whitespace_after=cst.SimpleWhitespace(" "))
            )
        args.append(
            cst.Arg(
                keyword=cst.Name("map_location"),
                value=expr(ACC),
                equal=cst.AssignEqual(
                    whitespace_before=cst.SimpleWhitespace(""),
                    whitespace_after=cst.SimpleWhitespace(""),
                ),
            )
        )
        return node.with_changes(args=args)
