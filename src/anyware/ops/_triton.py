"""Triton, when it is installed, and the few launch helpers every kernel file shares.

Kernel files import ``triton`` and ``tl`` from here. Without Triton the names are stand-ins
that let the files import (so the pure-PyTorch references work everywhere) while selection in
:mod:`anyware.ops._registry` never picks a kernel.

Whether kernels run in Triton's interpreter is decided when Triton is imported (it decorates
its own ``tl.sum`` & co. then) and when it decorates a kernel. Both are deferred to the first
launch: ``triton``/``tl`` are lazy module proxies and kernels are declared with :func:`jit`.
Importing ``anyware.ops`` early (a model module does) therefore fixes nothing, and
``TRITON_INTERPRET=1`` only has to be set before the first kernel runs (or before anything else
imports Triton). :func:`interpreted` says which mode is, or will be, in effect.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from typing import Any

#: The "triton" extra is installed (checked without importing it).
HAS_TRITON = importlib.util.find_spec("triton") is not None


class _Stub:
    """Stands in for ``triton`` / ``triton.language`` without Triton, so kernel files import."""

    constexpr = object

    def __getattr__(self, name: str) -> Any:
        return self

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        return self


class _ModuleProxy:
    """``triton`` / ``triton.language``, imported on first use.

    Triton decides interpreter-or-compiler when it is imported (its own ``tl.sum`` etc. are
    decorated then), so importing it with ``anyware.ops`` would fix the mode too early. Kernel
    modules see these proxies until their first launch, which swaps in the real modules.
    """

    def __init__(self, name: str) -> None:
        self._name = name

    def __getattr__(self, attr: str) -> Any:
        return getattr(importlib.import_module(self._name), attr)


triton: Any = _ModuleProxy("triton") if HAS_TRITON else _Stub()
tl: Any = _ModuleProxy("triton.language") if HAS_TRITON else _Stub()

__all__ = [
    "HAS_TRITON",
    "dot_precision",
    "interpreted",
    "jit",
    "materialize",
    "next_pow2",
    "row_block",
    "tl",
    "triton",
]


def interpreted() -> bool:
    """Kernels run (or, before Triton is imported, will run) in Triton's interpreter."""
    if not HAS_TRITON:
        return False
    lang = sys.modules.get("triton.language")
    if lang is not None:  # imported: its own jit functions tell which mode it is in
        return type(getattr(lang, "sum", None)).__name__ == "InterpretedFunction"
    return os.environ.get("TRITON_INTERPRET", "") == "1"


class _Lazy:
    """A kernel (or ``@jit`` helper) not yet handed to ``triton.jit``."""

    def __init__(self, fn: Any) -> None:
        self.fn = fn
        self.jitted: Any = None

    def materialize(self) -> Any:
        if self.jitted is None:
            import triton as real_triton
            import triton.language as real_tl

            # swap the proxies for the real modules and decorate every lazy function of the
            # module at once, rebinding the names, so Triton resolves helpers and `tl` as usual
            module_globals = self.fn.__globals__
            for name, obj in list(module_globals.items()):
                if obj is triton:
                    module_globals[name] = real_triton
                elif obj is tl:
                    module_globals[name] = real_tl
            for name, obj in list(module_globals.items()):
                if isinstance(obj, _Lazy) and obj.jitted is None:
                    obj.jitted = real_triton.jit(obj.fn)
                    module_globals[name] = obj.jitted
        return self.jitted

    def __getitem__(self, grid: Any) -> Any:
        return self.materialize()[grid]


def jit(fn: Any) -> Any:
    """``triton.jit``, applied at the first launch (see :class:`_ModuleProxy`)."""
    return _Lazy(fn) if HAS_TRITON else fn


def materialize(kernel: Any) -> Any:
    """The ``triton.jit`` function behind ``kernel`` (for wrappers such as ``triton.autotune``)."""
    return kernel.materialize() if isinstance(kernel, _Lazy) else kernel


def next_pow2(n: int) -> int:
    """The smallest power of two ≥ ``n`` (and ≥ 1)."""
    return 1 if n <= 1 else 1 << (n - 1).bit_length()


def row_block(n_cols: int, *, budget: int = 16384, most: int = 64) -> int:
    """Rows per program for a row-wise kernel whose row is ``n_cols`` wide (padded to a power
    of two): as many rows as fit ``budget`` elements, at most ``most``.

    The interpreter costs about a millisecond per program, so on cpu fewer, fatter programs are
    what keeps the tests fast; on a GPU 16K elements per program is a common register budget
    (Liger's RMSNorm uses one row of up to 64K per program).
    """
    return max(1, min(most, budget // next_pow2(n_cols)))


def dot_precision(dtype: Any) -> str:
    """``tl.dot``'s input precision for ``dtype``: fp32 inputs use full IEEE products unless
    torch itself is allowed TF32, so the kernel and aten round the same way."""
    import torch

    if dtype == torch.float32 and torch.get_float32_matmul_precision() == "highest":
        return "ieee"
    return "tf32"
