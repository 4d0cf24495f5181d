"""What every op test shares: the odd shapes, the dtypes, and kernel-vs-reference checks.

Shapes are odd on purpose (1, primes, one past a power of two) so masks and tails are hit;
they are small because the interpreter pays per program and per loop step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import torch

from anyware.testing.tolerances import assert_close, tolerance

#: Kernel dtypes checked in the interpreter (bf16 arithmetic is wrong there: reference only).
KERNEL_DTYPES = (torch.float32, torch.float16)

#: Row-wise ops: (..., N) with N = 1, a prime, one past a power of two, a wide row.
ROW_SHAPES: Sequence[tuple[int, ...]] = ((1, 1), (3, 17), (7, 129), (2, 3, 1000))

#: Elementwise ops.
FLAT_SHAPES: Sequence[tuple[int, ...]] = ((1,), (3, 17), (5, 7, 129))

#: (M, K, N) for matmul: degenerate, primes, tails past 16/64/128.
MATMUL_SHAPES: Sequence[tuple[int, int, int]] = (
    (1, 1, 1),
    (3, 17, 5),
    (70, 33, 130),
    (129, 257, 17),
)


def make(shape: Sequence[int], dtype: torch.dtype, *, scale: float = 1.0) -> torch.Tensor:
    return (torch.randn(*shape, dtype=torch.float64) * scale).to(dtype)


def check_op(
    kernel: Callable[..., torch.Tensor],
    reference: Callable[..., torch.Tensor],
    args: Sequence[Any],
    *,
    grad: Sequence[int] = (),
    dtype: torch.dtype | None = None,
    atol: float | None = None,
    msg: str = "",
) -> None:
    """Run ``kernel(*args)`` (inputs in their dtype) and ``reference`` on the same values in
    fp64; compare the output and, for the argument positions in ``grad``, the gradients of a
    random projection, with the tolerance of ``dtype`` (the output's dtype by default).
    ``atol`` overrides the table's absolute tolerance; callers justify it in a comment."""
    ours = [
        a.detach().clone().requires_grad_(i in grad) if isinstance(a, torch.Tensor) else a
        for i, a in enumerate(args)
    ]
    ref = [
        a.detach().double().requires_grad_(i in grad)
        if isinstance(a, torch.Tensor) and a.is_floating_point()
        else a
        for i, a in enumerate(args)
    ]
    out = kernel(*ours)
    expected = reference(*ref)
    tol_dtype = dtype or out.dtype
    _compare(out, expected, tol_dtype, atol, f"{msg} forward")
    if not grad:
        return
    g = torch.randn(out.shape, dtype=torch.float64).to(out.dtype)
    out.backward(g)
    expected.backward(g.double())
    for i in grad:
        assert ours[i].grad is not None, f"{msg}: no gradient for argument {i}"
        _compare(ours[i].grad, ref[i].grad, tol_dtype, atol, f"{msg} grad[{i}]")


def _compare(
    actual: torch.Tensor, expected: torch.Tensor, dtype: torch.dtype, atol: float | None, msg: str
) -> None:
    actual, expected = actual.detach(), expected.detach()
    if atol is None:
        assert_close(actual, expected, dtype=dtype, msg=msg)
        return
    rtol = tolerance(dtype).rtol
    torch.testing.assert_close(
        actual.double(),
        expected.double(),
        rtol=rtol,
        atol=atol,
        equal_nan=True,
        msg=lambda m: f"{msg}: {m}",
    )


def gemm_atol(dtype: torch.dtype, k: int) -> float | None:
    """Absolute tolerance for a K-term dot product of unit-normal inputs accumulated in fp32.

    A result near 0 comes from cancelling terms, so its error scales with Σ|aᵢbᵢ| (≈ 0.64·K
    for unit normals), not with the result: blocked fp32 summation keeps it near
    √K · 2⁻²⁴ · Σ|aᵢbᵢ|. Only fp32 needs it; fp16/bf16 outputs are dominated by their own
    rounding, which the table's rtol covers. ``None`` keeps the table's atol.
    """
    if dtype != torch.float32:
        return None
    return max(tolerance(dtype).atol, math.sqrt(k) * 2.0**-24 * 0.64 * k)
