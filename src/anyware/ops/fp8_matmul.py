# mypy: disable-error-code="no-untyped-def,untyped-decorator"
# (Triton kernels take untyped pointer arguments.)
"""FP8-scaled GEMM: ``C = (A · s_A) @ (B · s_B)ᵀ`` with FP8 (e4m3 / e5m2) operands, fp32
accumulation and one of three scale layouts (the ones :mod:`anyware.formats` produces):

============  ===========================  =================================================
layout        ``scale_a``                  ``scale_b``
============  ===========================  =================================================
tensorwise    ``()``                       ``()``
rowwise       ``(M, 1)``                   ``(N, 1)``
blockwise     ``(M, ⌈K/128⌉)`` (1×128)      ``(⌈N/128⌉, ⌈K/128⌉)`` (128×128, DeepSeek-V3)
============  ===========================  =================================================

B is stored ``(N, K)`` (a weight's layout, "NT" GEMM). Tensorwise and rowwise scales are
constant along K, so the kernel accumulates raw FP8 products for the whole K loop and applies
``s_A ⊗ s_B`` once on the fp32 accumulator. Blockwise scales change every 128 elements of K:
the kernel uses ``BLOCK_K = 128`` and ``BLOCK_N`` dividing 128, so each K step multiplies one
partial product by one column of A-scales and one B-scale (DeepGEMM promotes partial sums to
fp32 the same way, which also sidesteps Hopper's ~14-bit FP8 accumulator).
"""

from __future__ import annotations

from typing import Any

import torch

from anyware.ops import _checks
from anyware.ops._registry import Impl, OpSpec, register_op, resolve
from anyware.ops._triton import interpreted, jit, next_pow2, tl, triton

SPEC = register_op(
    OpSpec(
        name="fp8_matmul",
        summary="FP8 GEMM: tensorwise, rowwise, 1x128 x 128x128 scales",
        backward="none",
    )
)
FP8 = (torch.float8_e4m3fn, torch.float8_e5m2)
_MODES = ("tensorwise", "rowwise", "blockwise")


def _expand_scale(scale: torch.Tensor, rows: int, cols: int, block_rows: int) -> torch.Tensor:
    if scale.dim() == 0:
        return scale.float().expand(rows, cols)
    if scale.shape[1] == 1:
        return scale.float().expand(rows, cols)
    full = scale.float().repeat_interleave(block_rows, 0)[:rows]
    return full.repeat_interleave(128, 1)[:, :cols]


def fp8_matmul_reference(
    a: torch.Tensor,
    b: torch.Tensor,
    scale_a: torch.Tensor,
    scale_b: torch.Tensor,
    *,
    out_dtype: torch.dtype = torch.bfloat16,
) -> torch.Tensor:
    """The specification: dequantise both operands to fp32, multiply, round once."""
    m, k = a.shape
    n = b.shape[0]
    da = a.float() * _expand_scale(scale_a, m, k, 1)
    db = b.float() * _expand_scale(scale_b, n, k, 128)
    return (da.double() @ db.double().t()).to(out_dtype)


def layout(scale_a: torch.Tensor, scale_b: torch.Tensor, m: int, n: int, k: int) -> str:
    """Which scale layout the two scale tensors describe, or a ValueError naming them."""
    kb, nb = -(-k // 128), -(-n // 128)
    sa, sb = tuple(scale_a.shape), tuple(scale_b.shape)
    if sa in ((), (1,)) and sb in ((), (1,)):
        return "tensorwise"
    if sa == (m, 1) and sb == (n, 1):
        return "rowwise"
    if sa == (m, kb) and sb == (nb, kb):
        return "blockwise"
    raise ValueError(
        f"fp8_matmul: scale_a {sa} and scale_b {sb} match no layout; expected () and (), "
        f"({m}, 1) and ({n}, 1), or ({m}, {kb}) and ({nb}, {kb}) (1×128 × 128×128 blocks)"
    )


# --- kernel ---------------------------------------------------------------------------------
@jit
def _fp8_kernel(
    A, B, SA, SB, C, M, N, K, s_am, s_ak, s_bn, s_bk, s_sam, s_sak, s_sbn, s_sbk,
    MODE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    pid_n = tl.program_id(1)
    rm = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
    mmask = rm < M
    nmask = rn < N
    acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        kk = k0 + tl.arange(0, BLOCK_K)
        a = tl.load(
            A + rm[:, None].to(tl.int64) * s_am + kk[None, :] * s_ak,
            mask=mmask[:, None] & (kk < K)[None, :],
            other=0.0,
        )
        b = tl.load(
            B + rn[None, :].to(tl.int64) * s_bn + kk[:, None] * s_bk,
            mask=(kk < K)[:, None] & nmask[None, :],
            other=0.0,
        )
        if MODE == 2:
            part = tl.dot(a, b)
            sa = tl.load(SA + rm * s_sam + (k0 // 128) * s_sak, mask=mmask, other=0.0)
            sb = tl.load(SB + ((pid_n * BLOCK_N) // 128) * s_sbn + (k0 // 128) * s_sbk)
            acc += part * sa[:, None] * sb
        else:
            acc = tl.dot(a, b, acc)
    if MODE == 0:
        acc = acc * (tl.load(SA) * tl.load(SB))
    if MODE == 1:
        sa = tl.load(SA + rm, mask=mmask, other=0.0)
        sb = tl.load(SB + rn, mask=nmask, other=0.0)
        acc = acc * sa[:, None] * sb[None, :]
    tl.store(
        C + rm[:, None].to(tl.int64) * N + rn[None, :],
        acc.to(C.dtype.element_ty),
        mask=mmask[:, None] & nmask[None, :],
    )


# --- launcher and registration -------------------------------------------------------------
@torch.library.custom_op("anyware::fp8_matmul", mutates_args=())
def _fp8_op(
    a: torch.Tensor,
    b: torch.Tensor,
    scale_a: torch.Tensor,
    scale_b: torch.Tensor,
    mode: int,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    m, k = a.shape
    n = b.shape[0]
    c = torch.empty((m, n), dtype=out_dtype, device=a.device)
    if m and n:
        if mode == 2:
            bm, bn, bk = (64, 128, 128) if interpreted() else (128, 128, 128)
        elif interpreted():
            bm, bn, bk = (
                max(16, min(64, next_pow2(m))),
                max(16, min(128, next_pow2(n))),
                max(32, min(256, next_pow2(k))),
            )
        else:
            bm, bn, bk = 128, 128, 128
        sa = scale_a.float().reshape(m, -1) if mode else scale_a.float().reshape(1)
        sb = (
            scale_b.float().reshape(scale_b.shape[0] if scale_b.dim() else 1, -1)
            if mode
            else scale_b.float().reshape(1)
        )
        sa2 = sa if sa.dim() == 2 else sa.reshape(1, 1)
        sb2 = sb if sb.dim() == 2 else sb.reshape(1, 1)
        _fp8_kernel[(triton.cdiv(m, bm), triton.cdiv(n, bn))](
            a, b, sa2, sb2, c, m, n, k, *a.stride(), *b.stride(), *sa2.stride(), *sb2.stride(),
            MODE=mode, BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk,
        )  # fmt: skip
    elif m:
        c.zero_()
    return c


@_fp8_op.register_fake
def _(a, b, scale_a, scale_b, mode, out_dtype):  # type: ignore[no-untyped-def]
    return a.new_empty((a.shape[0], b.shape[0]), dtype=out_dtype)


# --- public function -----------------------------------------------------------------------
def fp8_matmul(
    a: Any,
    b: Any,
    scale_a: torch.Tensor | None = None,
    scale_b: torch.Tensor | None = None,
    *,
    out_dtype: torch.dtype = torch.bfloat16,
    impl: str | None = None,
) -> torch.Tensor:
    """``(a·scale_a) @ (b·scale_b)ᵀ`` for FP8 ``a (M, K)`` and ``b (N, K)``; ``a``/``b`` may
    also be :class:`anyware.formats.QuantizedTensor` (their scales are used)."""
    op = "fp8_matmul"
    if scale_a is None and hasattr(a, "fp8_view"):
        a, scale_a = a.fp8_view(), a.scales
    if scale_b is None and hasattr(b, "fp8_view"):
        b, scale_b = b.fp8_view(), b.scales
    for name, t in (("a", a), ("b", b), ("scale_a", scale_a), ("scale_b", scale_b)):
        _checks.tensor(op, name, t)
    assert scale_a is not None and scale_b is not None
    _checks.ndim(op, "a", a, (2,), "2-D (M, K)")
    _checks.ndim(op, "b", b, (2,), "2-D (N, K) (a weight's layout)")
    _checks.dtype(op, "a", a, FP8)
    _checks.dtype(op, "b", b, FP8)
    _checks.size(op, "b", b.shape[1], a.shape[1], "K (dim 1)")
    device = _checks.same_device(op, a=a, b=b, scale_a=scale_a, scale_b=scale_b)
    mode = _MODES.index(layout(scale_a, scale_b, a.shape[0], b.shape[0], a.shape[1]))
    blocker = None
    if out_dtype not in _checks.FLOATS:
        raise ValueError(f"fp8_matmul: out_dtype={out_dtype}; use float32, float16 or bfloat16")
    if device.type == "cpu" and out_dtype == torch.bfloat16:
        blocker = "bf16 output is not rounded correctly by Triton's interpreter"
    if resolve(op, impl, device, unsupported=blocker) is Impl.REFERENCE:
        return fp8_matmul_reference(a, b, scale_a, scale_b, out_dtype=out_dtype)
    return _fp8_op(a, b, scale_a.contiguous(), scale_b.contiguous(), mode, out_dtype)
