# mypy: disable-error-code="no-untyped-def,untyped-decorator"
# (Triton kernels take untyped pointer arguments.)
"""Fused RMSNorm: ``y = x / sqrt(mean(x²) + eps) · weight`` over the last dimension.

Unfused, PyTorch reads x three times and writes two temporaries; the kernel reads each row
once, keeps it in registers, and writes y plus one fp32 ``rstd`` per row for the backward.
Statistics are always fp32 (a bf16 mean of squares loses the small rows).

Backward, with x̂ = x·rstd and g = weight·dy:
``dx = rstd · (g − x̂ · mean(x̂ · g))`` and ``dweight = Σ_rows dy · x̂``. Each program sums its
rows' ``dy · x̂`` into one fp32 partial row; the few partials are added by aten (Liger's layout:
no atomics, deterministic).
"""

from __future__ import annotations

from typing import Any

import torch

from anyware.ops import _checks
from anyware.ops._registry import Impl, OpSpec, register_op, resolve
from anyware.ops._triton import jit, next_pow2, row_block, tl, triton

SPEC = register_op(OpSpec(name="rms_norm", summary="fused RMSNorm over the last dim"))


def rms_norm_reference(x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """The specification, in fp32 (or fp64 for fp64 inputs), rounded once to x's dtype."""
    acc = torch.promote_types(x.dtype, torch.float32)
    xf = x.to(acc)
    rstd = torch.rsqrt(xf.pow(2).mean(dim=-1, keepdim=True) + eps)
    return (xf * rstd * weight.to(acc)).to(x.dtype)


# --- kernels --------------------------------------------------------------------------------
@jit
def _fwd_kernel(
    x_ptr, w_ptr, y_ptr, rstd_ptr, M, N, eps, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr
):
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    mask = (rows[:, None] < M) & (cols[None, :] < N)
    offs = rows[:, None].to(tl.int64) * N + cols[None, :]
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)
    rstd = 1.0 / tl.sqrt(tl.sum(x * x, axis=1) / N + eps)
    tl.store(rstd_ptr + rows, rstd, mask=rows < M)
    y = x * rstd[:, None] * w[None, :]
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@jit
def _bwd_kernel(
    dy_ptr, x_ptr, w_ptr, rstd_ptr, dx_ptr, dw_part_ptr, M, N,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    rows = pid * BLOCK_M + tl.arange(0, BLOCK_M)
    cols = tl.arange(0, BLOCK_N)
    mask = (rows[:, None] < M) & (cols[None, :] < N)
    offs = rows[:, None].to(tl.int64) * N + cols[None, :]
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    w = tl.load(w_ptr + cols, mask=cols < N, other=0.0).to(tl.float32)
    rstd = tl.load(rstd_ptr + rows, mask=rows < M, other=0.0)
    xhat = x * rstd[:, None]
    g = dy * w[None, :]
    c = tl.sum(xhat * g, axis=1) / N
    dx = rstd[:, None] * (g - xhat * c[:, None])
    tl.store(dx_ptr + offs, dx.to(dx_ptr.dtype.element_ty), mask=mask)
    tl.store(dw_part_ptr + pid * N + cols, tl.sum(dy * xhat, axis=0), mask=cols < N)


# --- launchers and registration ------------------------------------------------------------
def _blocks(n: int) -> tuple[int, int]:
    return row_block(n), next_pow2(n)


@torch.library.custom_op("anyware::rms_norm", mutates_args=())
def _rms_norm_op(
    x: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    m, n = x.shape
    y = torch.empty_like(x)
    rstd = torch.empty(m, dtype=torch.float32, device=x.device)
    if m:
        bm, bn = _blocks(n)
        _fwd_kernel[(triton.cdiv(m, bm),)](x, weight, y, rstd, m, n, eps, BLOCK_M=bm, BLOCK_N=bn)
    return y, rstd


@_rms_norm_op.register_fake
def _(x: torch.Tensor, weight: torch.Tensor, eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty_like(x), x.new_empty(x.shape[0], dtype=torch.float32)


@torch.library.custom_op("anyware::rms_norm_backward", mutates_args=())
def _rms_norm_bwd_op(
    dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, rstd: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    m, n = x.shape
    dx = torch.empty_like(x)
    bm, bn = _blocks(n)
    programs = triton.cdiv(m, bm)
    part = torch.zeros((max(programs, 1), n), dtype=torch.float32, device=x.device)
    if m:
        _bwd_kernel[(programs,)](
            dy.contiguous(), x, weight, rstd, dx, part, m, n, BLOCK_M=bm, BLOCK_N=bn
        )
    return dx, part.sum(0).to(weight.dtype)


@_rms_norm_bwd_op.register_fake
def _(
    dy: torch.Tensor, x: torch.Tensor, weight: torch.Tensor, rstd: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty_like(x), torch.empty_like(weight)


def _setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, weight, _ = inputs
    ctx.save_for_backward(x, weight, output[1])


def _backward(ctx: Any, dy: torch.Tensor, _drstd: torch.Tensor) -> tuple[Any, ...]:
    x, weight, rstd = ctx.saved_tensors
    dx, dw = _rms_norm_bwd_op(dy, x, weight, rstd)
    return dx, dw, None


_rms_norm_op.register_autograd(_backward, setup_context=_setup)


# --- public function -----------------------------------------------------------------------
def rms_norm(
    x: torch.Tensor, weight: torch.Tensor, eps: float = 1e-6, *, impl: str | None = None
) -> torch.Tensor:
    """RMSNorm of ``x (..., N)`` scaled by ``weight (N,)``."""
    op = "rms_norm"
    _checks.tensor(op, "x", x)
    _checks.tensor(op, "weight", weight)
    _checks.ndim(op, "x", x, range(1, 9), "at least 1-D (..., N)")
    _checks.ndim(op, "weight", weight, (1,), "1-D (N,)")
    _checks.size(op, "weight", weight.shape[0], x.shape[-1], "length (x's last dim)")
    device = _checks.same_device(op, x=x, weight=weight)
    if not eps >= 0:
        raise ValueError(f"rms_norm: eps must be ≥ 0, got {eps}")
    blocker = _checks.unsupported_dtype(x) or _checks.unsupported_dtype(weight)
    if x.shape[-1] > 65536:
        blocker = f"rows of {x.shape[-1]} > 65536 do not fit one program"
    if resolve(op, impl, device, unsupported=blocker) is Impl.REFERENCE:
        return rms_norm_reference(x, weight, eps)
    y, _ = _rms_norm_op(x.reshape(-1, x.shape[-1]).contiguous(), weight.contiguous(), float(eps))
    return y.reshape(x.shape)
