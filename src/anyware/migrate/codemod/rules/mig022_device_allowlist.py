"""MIG022 hazard: allow-lists of device names (reported, left alone).

Detects list/tuple/set literals naming ``"cuda"`` beside other device names, e.g.
``assert device in ("cuda", "cpu")``. Why: every other accelerator is rejected or routed to the
cpu path. Fix by hand: accept any ``torch.device`` or ask ``torch.accelerator``.
"""

from __future__ import annotations

from typing import ClassVar

import libcst as cst

from anyware.migrate.codemod._expr import DEVICE_NAMES, string_value
from anyware.migrate.codemod.rules._base import CodemodRule, Context


class DeviceAllowList(CodemodRule):
    code: ClassVar[str] = "MIG022"
    kind: ClassVar[str] = "hazard"
    title: ClassVar[str] = "allow-lists of device names (report only)"

    def on_node(self, node: cst.CSTNode, ctx: Context) -> None:
        if not isinstance(node, cst.List | cst.Tuple | cst.Set):
            return
        names = {string_value(e.value) for e in node.elements}
        if "cuda" in names and len(names & DEVICE_NAMES) >= 2:
            ctx.flag(self, "an allow-list of device names rejects other accelerators")
