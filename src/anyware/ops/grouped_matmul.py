# mypy: disable-error-code="no-untyped-def,untyped-decorator"
# (Triton kernels take untyped pointer arguments.)
"""Grouped GEMM for MoE experts: ``out[rows of g] = x[rows of g] @ w[g]`` for every group g,
with the rows of each group contiguous (the layout :func:`anyware.ops.moe_permute` makes).

One launch covers every expert (DeepGEMM's "contiguous" layout): the host turns
``group_sizes`` into a tile schedule — for each ``BLOCK_M`` slice of a group, which group and
which rows — and each program multiplies one slice by one ``BLOCK_N`` column tile of its
group's weight, accumulating in fp32. With block-aligned groups (``moe_permute(...,
block_size=BLOCK_M)``) no tile is partly empty.

Backward: ``dx = dy @ w[g]ᵀ`` is the same kernel on the transposed weight view; ``dw[g] =
x_gᵀ dy_g`` is a second kernel with one program per (group, output tile) that walks the
group's rows, so no atomics are needed and the result is deterministic.
"""

from __future__ import annotations

from typing import Any

import torch

from anyware.ops import _checks
from anyware.ops._registry import Impl, OpSpec, register_op, resolve
from anyware.ops._triton import dot_precision, interpreted, jit, next_pow2, tl, triton

SPEC = register_op(OpSpec(name="grouped_matmul", summary="MoE grouped GEMM over contiguous groups"))


def grouped_matmul_reference(
    x: torch.Tensor, w: torch.Tensor, group_sizes: torch.Tensor
) -> torch.Tensor:
    """The specification: one matmul per group, fp32 accumulation (fp64 for fp64)."""
    acc = torch.promote_types(x.dtype, torch.float32)
    parts = [
        rows.to(acc) @ w[g].to(acc) for g, rows in enumerate(torch.split(x, group_sizes.tolist()))
    ]
    out = torch.cat(parts) if parts else x.new_empty((0, w.shape[2]), dtype=acc)
    return out.to(x.dtype)


# --- kernels --------------------------------------------------------------------------------
@jit
def _fwd_kernel(
    X, W, OUT, TG, TS, TE, N, K, s_xm, s_xk, s_wg, s_wk, s_wn,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    t = tl.program_id(0)
    g = tl.load(TG + t).to(tl.int64)
    r0 = tl.load(TS + t)
    r1 = tl.load(TE + t)
    rows = r0 + tl.arange(0, BLOCK_M)
    cols = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    rmask = rows < r1
    acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(
            X + rows[:, None].to(tl.int64) * s_xm + kk[None, :] * s_xk,
            mask=rmask[:, None] & (kk < K)[None, :],
            other=0.0,
        )
        b = tl.load(
            W + g * s_wg + kk[:, None] * s_wk + cols[None, :] * s_wn,
            mask=(kk < K)[:, None] & (cols < N)[None, :],
            other=0.0,
        )
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    tl.store(
        OUT + rows[:, None].to(tl.int64) * N + cols[None, :],
        acc.to(OUT.dtype.element_ty),
        mask=rmask[:, None] & (cols < N)[None, :],
    )


@jit
def _wgrad_kernel(
    X, DY, DW, STARTS, K, N, s_xm, s_xk,
    BLOCK_M: tl.constexpr, BLOCK_K: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    g = tl.program_id(0)
    n_tiles = tl.cdiv(N, BLOCK_N)
    kk = (tl.program_id(1) // n_tiles) * BLOCK_K + tl.arange(0, BLOCK_K)
    cols = (tl.program_id(1) % n_tiles) * BLOCK_N + tl.arange(0, BLOCK_N)
    r0 = tl.load(STARTS + g)
    r1 = tl.load(STARTS + g + 1)
    acc = tl.zeros((BLOCK_K, BLOCK_N), tl.float32)
    for m0 in range(r0, r1, BLOCK_M):
        rows = m0 + tl.arange(0, BLOCK_M)
        rmask = rows < r1
        xt = tl.load(
            X + rows[None, :].to(tl.int64) * s_xm + kk[:, None] * s_xk,
            mask=rmask[None, :] & (kk < K)[:, None],
            other=0.0,
        )
        dy = tl.load(
            DY + rows[:, None].to(tl.int64) * N + cols[None, :],
            mask=rmask[:, None] & (cols < N)[None, :],
            other=0.0,
        )
        acc = tl.dot(xt, dy, acc, input_precision=PRECISION)
    out = DW + g.to(tl.int64) * K * N + kk[:, None] * N + cols[None, :]
    tl.store(out, acc.to(DW.dtype.element_ty), mask=(kk < K)[:, None] & (cols < N)[None, :])


# --- launchers ------------------------------------------------------------------------------
def _tiles(sizes: list[int], block_m: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    tg, ts, te = [], [], []
    start = 0
    for g, n in enumerate(sizes):
        for r in range(start, start + n, block_m):
            tg.append(g)
            ts.append(r)
            te.append(start + n)
        start += n
    return tuple(torch.tensor(v, dtype=torch.int32, device=device) for v in (tg, ts, te))


def _blocks(m: int, k: int, n: int) -> tuple[int, int, int]:
    if interpreted():
        return (
            max(16, min(64, next_pow2(m))),
            max(16, min(128, next_pow2(n))),
            max(16, min(128, next_pow2(k))),
        )
    return 64, 128, 64


def _forward(x: torch.Tensor, w: torch.Tensor, sizes: list[int]) -> torch.Tensor:
    m, k = x.shape
    n = w.shape[2]
    out = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m and n:
        bm, bn, bk = _blocks(max(sizes), k, n)
        tg, ts, te = _tiles(sizes, bm, x.device)
        _fwd_kernel[(tg.numel(), triton.cdiv(n, bn))](
            x, w, out, tg, ts, te, n, k, *x.stride(), *w.stride(),
            BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, PRECISION=dot_precision(x.dtype),
        )  # fmt: skip
    return out


@torch.library.custom_op("anyware::grouped_matmul", mutates_args=())
def _gmm_op(x: torch.Tensor, w: torch.Tensor, group_sizes: list[int]) -> torch.Tensor:
    return _forward(x, w, group_sizes)


@_gmm_op.register_fake
def _(x, w, group_sizes):  # type: ignore[no-untyped-def]
    return x.new_empty((x.shape[0], w.shape[2]))


@torch.library.custom_op("anyware::grouped_matmul_wgrad", mutates_args=())
def _wgrad_op(x: torch.Tensor, dy: torch.Tensor, group_sizes: list[int]) -> torch.Tensor:
    g, k, n = len(group_sizes), x.shape[1], dy.shape[1]
    dw = torch.zeros((g, k, n), dtype=x.dtype, device=x.device)
    if g and k and n:
        bm, bn, bk = _blocks(max(group_sizes), k, n)
        starts = torch.tensor(
            [0, *torch.tensor(group_sizes).cumsum(0).tolist()], dtype=torch.int32, device=x.device
        )
        _wgrad_kernel[(g, triton.cdiv(k, bk) * triton.cdiv(n, bn))](
            x, dy.contiguous(), dw, starts, k, n, *x.stride(),
            BLOCK_M=bm, BLOCK_K=bk, BLOCK_N=bn, PRECISION=dot_precision(x.dtype),
        )  # fmt: skip
    return dw


@_wgrad_op.register_fake
def _(x, dy, group_sizes):  # type: ignore[no-untyped-def]
    return x.new_empty((len(group_sizes), x.shape[1], dy.shape[1]))


def _setup(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    x, w, sizes = inputs
    ctx.save_for_backward(x, w)
    ctx.sizes = sizes


def _backward(ctx: Any, dy: torch.Tensor) -> tuple[Any, Any, None]:
    x, w = ctx.saved_tensors
    dx = _gmm_op(dy.contiguous(), w.transpose(1, 2), ctx.sizes) if ctx.needs_input_grad[0] else None
    dw = _wgrad_op(x, dy, ctx.sizes) if ctx.needs_input_grad[1] else None
    return dx, dw, None


_gmm_op.register_autograd(_backward, setup_context=_setup)


# --- public function -----------------------------------------------------------------------
def grouped_matmul(
    x: torch.Tensor, w: torch.Tensor, group_sizes: torch.Tensor, *, impl: str | None = None
) -> torch.Tensor:
    """``x (M, K)`` with rows grouped contiguously by ``group_sizes (G,)`` (summing to M),
    times ``w (G, K, N)`` per group → ``(M, N)``."""
    op = "grouped_matmul"
    for name, t in (("x", x), ("w", w), ("group_sizes", group_sizes)):
        _checks.tensor(op, name, t)
    _checks.ndim(op, "x", x, (2,), "2-D (rows, K)")
    _checks.ndim(op, "w", w, (3,), "3-D (groups, K, N)")
    _checks.ndim(op, "group_sizes", group_sizes, (1,), "1-D (groups,)")
    _checks.same_dtype(op, x=x, w=w)
    device = _checks.same_device(op, x=x, w=w)
    _checks.size(op, "w", w.shape[1], x.shape[1], "K (dim 1)")
    _checks.size(op, "group_sizes", group_sizes.numel(), w.shape[0], "length (w's groups)")
    sizes = [int(s) for s in group_sizes.tolist()]
    if any(s < 0 for s in sizes) or sum(sizes) != x.shape[0]:
        raise ValueError(
            f"grouped_matmul: group_sizes must be ≥ 0 and sum to x's {x.shape[0]} rows, got {sizes[:8]}"
        )
    if resolve(op, impl, device, unsupported=_checks.unsupported_dtype(x)) is Impl.REFERENCE:
        return grouped_matmul_reference(x, w, group_sizes)
    return _gmm_op(x.contiguous(), w, sizes)
