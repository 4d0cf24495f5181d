"""MIG003 ``torch.device("cuda"...)``.

Detects ``torch.device("cuda")``, ``torch.device("cuda", i)``, ``torch.device("cuda:0" if
use_cuda else "cpu")``. Why: the device object is then used everywhere; naming CUDA pins the
whole script to NVIDIA. Example: ``device = torch.device("cuda:0" if opt.cuda else "cpu")``.
Fix: the accelerator (``torch.accelerator.current_accelerator``) or the cpu.
"""

from __future__ import annotations

from typing import ClassVar

import libcst as cst

from anyware.migrate.codemod._expr import dotted, indexed, rewrite_device
from anyware.migrate.codemod.rules._base import CodemodRule, Context


class TorchDevice(CodemodRule):
    code: ClassVar[str] = "MIG003"
    kind: ClassVar[str] = "device"
    title: ClassVar[str] = "torch.device('cuda…') → accelerator"

    def on_call(self, node: cst.Call, ctx: Context) -> cst.BaseExpression | None:
        if dotted(node.func) != "torch.device" or not node.args:
            return None
        first = node.args[0]
        if len(node.args) == 2:
            if rewrite_device(first.value, type_only=True) is None:
                return None
            return indexed(node.args[1].value)
        new = rewrite_device(first.value)
        if new is None:
            return None
        if isinstance(new, cst.Call) and dotted(new.func) == "torch.device":
            return new  # already a device: no torch.device(torch.device(...))
        return node.with_changes(args=[first.with_changes(value=new)])
