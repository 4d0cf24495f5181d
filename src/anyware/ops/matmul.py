# mypy: disable-error-code="no-untyped-def,untyped-decorator"
# (Triton kernels take untyped pointer arguments.)
"""Matrix multiply with fp32 accumulation: ``C = A @ B`` over broadcast batch dimensions.

Each program owns one ``BLOCK_M × BLOCK_N`` tile of C and walks K in ``BLOCK_K`` steps,
accumulating ``tl.dot`` products in fp32 and rounding once on store, which is what cuBLAS does
for fp16/bf16. Programs are visited in groups of ``GROUP_M`` row-tiles so that tiles running at
the same time share columns of B in L2 (the ordering of Triton's matmul tutorial).

Backward is two more matmuls through the same kernel on transposed views (no copies):
``dA = dC @ Bᵀ``, ``dB = Aᵀ @ dC``.

On a GPU the tile shape is autotuned over a handful of configurations; in the interpreter,
where autotuning cannot time anything, one large tile is picked by a heuristic.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from anyware.ops import _checks
from anyware.ops._registry import Impl, OpSpec, register_op, resolve
from anyware.ops._triton import dot_precision, interpreted, jit, materialize, next_pow2, tl, triton

SPEC = register_op(OpSpec(name="matmul", summary="A @ B with fp32 accumulation, batched"))


def matmul_reference(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """The specification: products summed in (at least) fp32, rounded once to the input dtype."""
    acc = torch.promote_types(a.dtype, torch.float32)
    return torch.matmul(a.to(acc), b.to(acc)).to(a.dtype)


# --- kernel ---------------------------------------------------------------------------------
@jit
def _matmul_kernel(
    a_ptr, b_ptr, c_ptr, M, N, K,
    s_ab, s_am, s_ak, s_bb, s_bk, s_bn, s_cb, s_cm, s_cn,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
    GROUP_M: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    pid = tl.program_id(0)
    batch = tl.program_id(1).to(tl.int64)
    num_m = tl.cdiv(M, BLOCK_M)
    num_n = tl.cdiv(N, BLOCK_N)
    in_group = GROUP_M * num_n
    first_m = (pid // in_group) * GROUP_M
    group_rows = tl.minimum(num_m - first_m, GROUP_M)
    pid_m = first_m + (pid % in_group) % group_rows
    pid_n = (pid % in_group) // group_rows

    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    rk = tl.arange(0, BLOCK_K)
    a_rows = a_ptr + batch * s_ab + rm[:, None].to(tl.int64) * s_am
    b_cols = b_ptr + batch * s_bb + rn[None, :].to(tl.int64) * s_bn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + rk
        a = tl.load(
            a_rows + kk[None, :] * s_ak, mask=(rm[:, None] < M) & (kk[None, :] < K), other=0.0
        )
        b = tl.load(
            b_cols + kk[:, None] * s_bk, mask=(kk[:, None] < K) & (rn[None, :] < N), other=0.0
        )
        acc = tl.dot(a, b, acc, input_precision=PRECISION)
    c = c_ptr + batch * s_cb + rm[:, None].to(tl.int64) * s_cm + rn[None, :] * s_cn
    tl.store(c, acc.to(c_ptr.dtype.element_ty), mask=(rm[:, None] < M) & (rn[None, :] < N))


def _gpu_configs() -> list[Any]:
    # The shapes that win on H100/H200/MI300 for large bf16 GEMMs (Triton tutorial + FlagGems
    # tables); autotune times them once per (M, N, K) bucket.
    shapes = [
        (128, 256, 64, 3, 8), (256, 128, 64, 3, 8), (128, 128, 64, 4, 4),
        (128, 128, 32, 4, 4), (64, 128, 32, 4, 4), (128, 64, 32, 4, 4), (64, 64, 32, 5, 2),
    ]  # fmt: skip
    return [
        triton.Config(
            {"BLOCK_M": m, "BLOCK_N": n, "BLOCK_K": k, "GROUP_M": 8}, num_stages=s, num_warps=w
        )
        for m, n, k, s, w in shapes
    ]


_tuned: Any = None


def _launch(a: torch.Tensor, b: torch.Tensor, out: torch.Tensor) -> None:
    global _tuned
    nb, m, k = a.shape
    n = b.shape[2]
    args = (a, b, out, m, n, k, *a.stride(), *b.stride(), *out.stride())
    precision = dot_precision(a.dtype)
    if interpreted() or out.device.type == "cpu":
        # One fat tile: the interpreter pays per program and per loop step, not per element.
        bm, bn = max(16, min(128, next_pow2(m))), max(16, min(128, next_pow2(n)))
        bk = max(16, min(256, next_pow2(k)))
        grid = (triton.cdiv(m, bm) * triton.cdiv(n, bn), nb)
        _matmul_kernel[grid](
            *args, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk, GROUP_M=8, PRECISION=precision
        )
        return
    if _tuned is None:
        _tuned = triton.autotune(configs=_gpu_configs(), key=["M", "N", "K"])(
            materialize(_matmul_kernel)
        )

    def tuned_grid(meta: dict[str, int]) -> tuple[int, int]:
        return (triton.cdiv(m, meta["BLOCK_M"]) * triton.cdiv(n, meta["BLOCK_N"]), nb)

    _tuned[tuned_grid](*args, PRECISION=precision)


# --- torch.library registration ------------------------------------------------------------
@torch.library.custom_op("anyware::matmul", mutates_args=())
def _matmul_op(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    out = torch.empty((a.shape[0], a.shape[1], b.shape[2]), dtype=a.dtype, device=a.device)
    if out.numel():
        if a.shape[2] == 0:
            out.zero_()
        else:
            _launch(a, b, out)
    return out


@_matmul_op.register_fake
def _(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return a.new_empty((a.shape[0], a.shape[1], b.shape[2]))


def _setup(ctx: Any, inputs: tuple[torch.Tensor, torch.Tensor], output: torch.Tensor) -> None:
    ctx.save_for_backward(*inputs)


def _backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    a, b = ctx.saved_tensors
    grad_a = grad_b = None
    if ctx.needs_input_grad[0]:
        grad_a = _matmul_op(grad, b.transpose(1, 2))
    if ctx.needs_input_grad[1]:
        grad_b = _matmul_op(a.transpose(1, 2), grad)
    return grad_a, grad_b


_matmul_op.register_autograd(_backward, setup_context=_setup)


# --- public function -----------------------------------------------------------------------
def matmul(a: torch.Tensor, b: torch.Tensor, *, impl: str | None = None) -> torch.Tensor:
    """``a @ b`` for ``a (..., M, K)`` and ``b (..., K, N)`` with broadcast batch dims."""
    op = "matmul"
    _checks.tensor(op, "a", a)
    _checks.tensor(op, "b", b)
    _checks.ndim(op, "a", a, range(2, 9), "at least 2-D (..., M, K)")
    _checks.ndim(op, "b", b, range(2, 9), "at least 2-D (..., K, N)")
    _checks.same_dtype(op, a=a, b=b)
    device = _checks.same_device(op, a=a, b=b)
    if a.shape[-1] != b.shape[-2]:
        raise ValueError(
            f"matmul: a has K={a.shape[-1]} (shape {tuple(a.shape)}) but b has "
            f"K={b.shape[-2]} (shape {tuple(b.shape)}); the inner dimensions must match"
        )
    try:
        batch = torch.broadcast_shapes(a.shape[:-2], b.shape[:-2])  # type: ignore[no-untyped-call]
    except RuntimeError:
        raise ValueError(
            f"matmul: batch dims of a {tuple(a.shape[:-2])} and b {tuple(b.shape[:-2])} "
            "do not broadcast"
        ) from None
    chosen = resolve(op, impl, device, unsupported=_checks.unsupported_dtype(a))
    if chosen is Impl.REFERENCE:
        return matmul_reference(a, b)
    m, k, n = a.shape[-2], a.shape[-1], b.shape[-1]
    if b.dim() == 2:  # x @ W: fold every batch dim into M, one big GEMM
        out = _matmul_op(a.reshape(1, math.prod(a.shape[:-1]), k), b.unsqueeze(0))
        return out.reshape(*a.shape[:-1], n)
    a3 = a.expand(*batch, m, k).reshape(-1, m, k)
    b3 = b.expand(*batch, k, n).reshape(-1, k, n)
    return _matmul_op(a3, b3).reshape(*batch, m, n)
