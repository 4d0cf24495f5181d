# mypy: disable-error-code="no-untyped-def,untyped-decorator"
# (Triton kernels take untyped pointer arguments.)
"""Orthonormal Walsh–Hadamard transform along the last dim (QuaRot/SpinQuant rotations).

The math and its pure-PyTorch butterfly belong to :mod:`anyware.formats.hadamard` (the
formats that use it own it); this file owns the kernel. A width ``n = 2^k · m`` is transformed
as ``m`` independent blocks of ``b = 2^k``, each ``y = x · H_b / sqrt(b)``.

The kernel uses tensor cores instead of a butterfly (the HadaCore idea): a Sylvester matrix
factors as a Kronecker product, ``H_b = H_a ⊗ H_c``, so viewing a block as an ``a × c``
matrix X gives ``H_b x = vec(H_a X H_c)`` — two small GEMMs (c ≤ 128, a ≤ 128) per block
instead of ``log₂ b`` shuffle passes. Entries of H are generated in registers from the parity
of ``popcount(i & j)``; nothing is loaded but x. H is symmetric and orthogonal, so backward is
the same transform.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from anyware.ops import _checks
from anyware.ops._registry import Impl, OpSpec, register_op, resolve
from anyware.ops._triton import interpreted, jit, next_pow2, tl, triton

SPEC = register_op(
    OpSpec(name="hadamard", summary="orthonormal Walsh-Hadamard transform (last dim)")
)
_MAX_BLOCK = 16384


def hadamard_reference(x: torch.Tensor) -> torch.Tensor:
    """The specification: :func:`anyware.formats.hadamard.hadamard_transform` (butterfly)."""
    from anyware.formats.hadamard import hadamard_transform

    return hadamard_transform(x)


# --- kernel ---------------------------------------------------------------------------------
@jit
def _sylvester(N: tl.constexpr, n, LOG: tl.constexpr):
    """H[i, j] = (-1)^popcount(i & j) for i, j < n, zero outside (so padding never mixes in)."""
    i = tl.arange(0, N)[:, None]
    j = tl.arange(0, N)[None, :]
    bits = i & j
    parity = tl.zeros((N, N), tl.int32)
    for _ in tl.static_range(LOG):
        parity ^= bits & 1
        bits = bits >> 1
    return tl.where((i < n) & (j < n), 1.0 - 2.0 * parity.to(tl.float32), 0.0)


@jit
def _hadamard_kernel(
    X, Y, rows, a, c, scale,
    BLOCK_R: tl.constexpr, A_PAD: tl.constexpr, C_PAD: tl.constexpr,
    LOG_A: tl.constexpr, LOG_C: tl.constexpr, TWO_LEVEL: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    r = tl.program_id(0) * BLOCK_R + tl.arange(0, BLOCK_R)
    ia = tl.arange(0, A_PAD)
    ic = tl.arange(0, C_PAD)
    offs = r[:, None, None].to(tl.int64) * (a * c) + ia[None, :, None] * c + ic[None, None, :]
    mask = (r[:, None, None] < rows) & (ia[None, :, None] < a) & (ic[None, None, :] < c)
    x = tl.load(X + offs, mask=mask, other=0.0)
    hc = _sylvester(C_PAD, c, LOG_C).to(x.dtype)
    y = tl.dot(tl.reshape(x, (BLOCK_R * A_PAD, C_PAD)), hc, input_precision=PRECISION)
    if TWO_LEVEL:
        ha = _sylvester(A_PAD, a, LOG_A)
        yt = tl.reshape(
            tl.permute(tl.reshape(y, (BLOCK_R, A_PAD, C_PAD)), (0, 2, 1)), (BLOCK_R * C_PAD, A_PAD)
        )
        y = tl.dot(yt, ha, input_precision="ieee")
        y = tl.permute(tl.reshape(y, (BLOCK_R, C_PAD, A_PAD)), (0, 2, 1))
    y = tl.reshape(y, (BLOCK_R, A_PAD, C_PAD)) * scale
    tl.store(Y + offs, y.to(Y.dtype.element_ty), mask=mask)


# --- launcher and registration -------------------------------------------------------------
@torch.library.custom_op("anyware::hadamard", mutates_args=())
def _hadamard_op(x: torch.Tensor) -> torch.Tensor:
    n = x.shape[-1]
    b = n & -n
    rows = x.numel() // b if b else 0
    y = torch.empty_like(x)
    if rows:
        c = min(b, 128)
        a = b // c
        two = a > 1
        a_pad = max(16, next_pow2(a)) if two else 1
        c_pad = max(16, c)
        # rows per program: fill ~16K elements (8K on a GPU, registers), and keep the first
        # GEMM's M = rows·a_pad ≥ 16 as tl.dot requires
        budget = 16384 if interpreted() else 8192
        block_r = next_pow2(max(1, budget // (a_pad * c_pad)) + 1) // 2
        block_r = max(block_r, 16 // a_pad if a_pad < 16 else 1)
        precision = "ieee" if x.dtype == torch.float32 else "tf32"
        _hadamard_kernel[(triton.cdiv(rows, block_r),)](
            x, y, rows, a, c, 1.0 / math.sqrt(b),
            BLOCK_R=block_r, A_PAD=a_pad, C_PAD=c_pad, LOG_A=max(1, a_pad.bit_length() - 1),
            LOG_C=c_pad.bit_length() - 1, TWO_LEVEL=two, PRECISION=precision,
        )  # fmt: skip
    return y


@_hadamard_op.register_fake
def _(x: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


def _backward(ctx: Any, dy: torch.Tensor) -> torch.Tensor:
    return _hadamard_op(dy.contiguous())


_hadamard_op.register_autograd(_backward)


# --- public function -----------------------------------------------------------------------
def hadamard(x: torch.Tensor, *, impl: str | None = None) -> torch.Tensor:
    """The orthonormal Walsh–Hadamard transform of ``x`` along its last dim (block-diagonal
    over the largest power-of-two block when the width is not a power of two)."""
    op = "hadamard"
    _checks.tensor(op, "x", x)
    _checks.ndim(op, "x", x, range(1, 9), "at least 1-D")
    if x.shape[-1] == 0:
        raise ValueError("hadamard: x's last dim must be ≥ 1, got 0")
    b = x.shape[-1] & -x.shape[-1]
    blocker = _checks.unsupported_dtype(x)
    if b > _MAX_BLOCK:
        blocker = f"power-of-two block {b} > {_MAX_BLOCK}"
    if resolve(op, impl, x.device, unsupported=blocker) is Impl.REFERENCE:
        return hadamard_reference(x)
    return _hadamard_op(x.contiguous())
