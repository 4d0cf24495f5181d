"""Triton, when it is installed, and the few launch helpers every kernel file shares.

Kernel files import ``triton`` and ``tl`` from here. Without Triton the names are stand-ins
that let the files import (so the pure-PyTorch references work everywhere) while selection in
:mod:`anyware.ops._registry` never picks a kernel.

Whether kernels run in Triton's interpreter is decided when Triton decorates them, i.e. when
this package is first imported: ``TRITON_INTERPRET=1`` must be set before that (the tests do
it in ``tests/ops/conftest.py``). :data:`INTERPRETED` records what was in effect.
"""

from __future__ import annotations

import os
from typing import Any

try:  # the "triton" extra
    import triton
    import triton.language as tl

    HAS_TRITON = True
except ImportError:  # pragma: no cover - exercised only without the extra
    HAS_TRITON = False

    class _Stub:
        """Stands in for ``triton`` / ``triton.language`` so kernel files still import."""

        constexpr = object

        def __getattr__(self, name: str) -> Any:
            return self

        def __call__(self, *args: Any, **kwargs: Any) -> Any:
            if len(args) == 1 and callable(args[0]) and not kwargs:
                return args[0]  # @triton.jit on a kernel: keep the function, never launched
            return self

    triton = _Stub()
    tl = _Stub()

__all__ = ["HAS_TRITON", "INTERPRETED", "dot_precision", "next_pow2", "row_block", "tl", "triton"]

#: Kernels were decorated with ``TRITON_INTERPRET=1`` in effect: they run on cpu tensors.
INTERPRETED = HAS_TRITON and os.environ.get("TRITON_INTERPRET", "") == "1"


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
