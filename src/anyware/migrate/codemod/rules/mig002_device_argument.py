"""MIG002 CUDA device spellings in ``device=`` / ``map_location=`` arguments and ``.to(...)``.

Detects ``device="cuda"``, ``"cuda:1"``, ``f"cuda:{rank}"``, ``"cuda:{}".format(i)``,
``.to(0)``, ``.to(gpu_id)`` (a variable named like a GPU index: ``gpu``, ``gpu_id``,
``local_rank``, ``device_id``), ``"cuda" if c else "cpu"`` wherever a device is passed, and string
assignments (``loc = f"cuda:{gpu}"``; a bare ``'cuda'`` only to a variable named ``*device*``), kept a string with
``str(...)`` because such variables are later tested with ``'cuda' in device``). Why: a literal CUDA
device fails off NVIDIA hardware, and an integer id means "CUDA device N" to torch. Example:
``torch.zeros(3, device=f"cuda:{rank}")``. Fix: the accelerator expression, with the index.
"""

from __future__ import annotations

import re
from typing import ClassVar

import libcst as cst

from anyware.migrate.codemod._expr import indexed, rewrite_device, string_value
from anyware.migrate.codemod.rules._base import CodemodRule, Context

KEYWORDS = frozenset({"device", "map_location"})
#: ``.to(gpu_id)``: a variable named like a GPU index is an integer device id by convention.
INDEX_NAME = re.compile(r"(^|_)(gpu|gpu_id|gpu_idx|local_rank|device_id|device_idx|dev_id)$")


def _index_variable(node: cst.BaseExpression) -> bool:
    name = (
        node.value
        if isinstance(node, cst.Name)
        else node.attr.value
        if isinstance(node, cst.Attribute)
        else None
    )
    return name is not None and INDEX_NAME.search(name.lower()) is not None


class DeviceArgument(CodemodRule):
    code: ClassVar[str] = "MIG002"
    kind: ClassVar[str] = "device"
    title: ClassVar[str] = "device='cuda…' / .to('cuda…') → accelerator"

    def on_call(self, node: cst.Call, ctx: Context) -> cst.BaseExpression | None:
        is_to = isinstance(node.func, cst.Attribute) and node.func.attr.value == "to"
        changed = False
        args = []
        for i, arg in enumerate(node.args):
            new = None
            if arg.keyword is not None and arg.keyword.value in KEYWORDS:
                new = rewrite_device(arg.value)
            elif is_to and i == 0 and arg.keyword is None and arg.star == "":
                new = rewrite_device(arg.value)
                if new is None and _index_variable(arg.value):
                    new = indexed(arg.value)
            if new is not None:
                arg = arg.with_changes(value=new)
                changed = True
            args.append(arg)
        return node.with_changes(args=args) if changed else None

    def on_assign(self, node: cst.Assign, ctx: Context) -> cst.Assign | None:
        if len(node.targets) != 1 or not isinstance(node.targets[0].target, cst.Name):
            return None
        name = node.targets[0].target.value.lower()
        value = node.value
        if string_value(value) is None and not isinstance(value, cst.FormattedString):
            return None
        # "cuda:N" / f"cuda:{i}" name a device whatever the variable is called (``loc = ...``
        # for map_location); a bare "cuda" only when the variable says it is a device.
        indexed_spelling = string_value(value) != "cuda"
        if not indexed_spelling and ("device" not in name or "type" in name):
            return None
        new = rewrite_device(value)
        if new is None:
            return None
        return node.with_changes(value=cst.Call(func=cst.Name("str"), args=[cst.Arg(new)]))
