"""MIG004 ``torch.cuda`` runtime calls with a ``torch.accelerator`` counterpart.

Detects ``torch.cuda.is_available()``, ``device_count()``, ``current_device()``,
``set_device(i)``, ``synchronize()``, ``empty_cache()``, ``memory_allocated()`` and friends,
``manual_seed(_all)``. Why: they answer only for NVIDIA devices. Example:
``torch.cuda.set_device(args.gpu)``. Fix: ``torch.accelerator.*``; calls that raise without an
accelerator are guarded, and ``device_count()`` is at least 1 so ``mp.spawn(nprocs=...)`` still
trains on a cpu.
"""

from __future__ import annotations

from typing import ClassVar

import libcst as cst

from anyware.migrate.codemod._expr import AVAILABLE, dotted, expr, guarded
from anyware.migrate.codemod.rules._base import CodemodRule, Context

#: torch.cuda name → (torch.accelerator call, value when no accelerator or None = unguarded)
TABLE: dict[str, tuple[str, str | None]] = {
    "current_device": ("torch.accelerator.current_device_index", "0"),
    "set_device": ("torch.accelerator.set_device_index", "None"),
    "synchronize": ("torch.accelerator.synchronize", "None"),
    "empty_cache": ("torch.accelerator.empty_cache", "None"),
    "memory_allocated": ("torch.accelerator.memory_allocated", "0"),
    "memory_reserved": ("torch.accelerator.memory_reserved", "0"),
    "max_memory_allocated": ("torch.accelerator.max_memory_allocated", "0"),
    "max_memory_reserved": ("torch.accelerator.max_memory_reserved", "0"),
    "reset_peak_memory_stats": ("torch.accelerator.reset_peak_memory_stats", "None"),
}


class CudaRuntime(CodemodRule):
    code: ClassVar[str] = "MIG004"
    kind: ClassVar[str] = "cuda api"
    title: ClassVar[str] = "torch.cuda.* → torch.accelerator.*"

    def on_call(self, node: cst.Call, ctx: Context) -> cst.BaseExpression | None:
        name = dotted(node.func)
        if name is None or not name.startswith("torch.cuda.") or name.count(".") != 2:
            return None
        fn = name.rsplit(".", 1)[1]
        if fn == "is_available" and not node.args:
            return expr(AVAILABLE)
        if fn == "device_count" and not node.args:
            return expr("max(torch.accelerator.device_count(), 1)")
        if fn in ("manual_seed", "manual_seed_all"):
            return node.with_changes(func=expr("torch.manual_seed"))
        if fn in TABLE:
            call, default = TABLE[fn]
            text = cst.Module(body=[]).code_for_node(node.with_changes(func=expr(call)))
            return guarded(text, default) if default is not None else expr(text)
        return None
