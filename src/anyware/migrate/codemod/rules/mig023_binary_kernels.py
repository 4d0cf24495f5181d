"""MIG023 hazard: binary CUDA kernels (reported, left alone).

Detects ``CUDAExtension(...)``, ``cpp_extension.load(...)`` with ``.cu`` sources,
``torch.ops.load_library(...)``, and imports of ``cupy`` / ``pycuda`` / ``numba.cuda``. Why:
compiled CUDA code cannot run on another device, whatever the Python around it says. Fix by
hand: a Triton or pure-PyTorch version of the kernel.
"""

from __future__ import annotations

from typing import ClassVar

import libcst as cst

from anyware.migrate.codemod._expr import dotted, string_value
from anyware.migrate.codemod.rules._base import CodemodRule, Context

MODULES = ("cupy", "pycuda", "numba.cuda")


def _mentions_cu(node: cst.CSTNode) -> bool:
    found = False

    class V(cst.CSTVisitor):
        def visit_SimpleString(self, n: cst.SimpleString) -> None:
            nonlocal found
            v = string_value(n)
            if v is not None and v.endswith((".cu", ".cuh")):
                found = True

    node.visit(V())
    return found


class BinaryKernels(CodemodRule):
    code: ClassVar[str] = "MIG023"
    kind: ClassVar[str] = "hazard"
    title: ClassVar[str] = "binary CUDA kernels (report only)"

    def on_node(self, node: cst.CSTNode, ctx: Context) -> None:
        if isinstance(node, cst.Call):
            name = dotted(node.func) or ""
            last = name.rsplit(".", 1)[-1]
            if (
                last == "CUDAExtension"
                or name == "torch.ops.load_library"
                or (last in ("load", "load_inline") and _mentions_cu(node))
            ):
                ctx.flag(self, f"{name or last}(...) builds or loads binary CUDA kernels")
        elif isinstance(node, cst.Import | cst.ImportFrom):
            mods = []
            if isinstance(node, cst.Import):
                mods = [dotted(a.name) or "" for a in node.names]
            elif node.module is not None:
                mods = [dotted(node.module) or ""]
            for m in mods:
                if m.startswith(MODULES):
                    ctx.flag(self, f"import of {m}: CUDA-only kernels")
