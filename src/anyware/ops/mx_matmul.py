# mypy: disable-error-code="no-untyped-def,untyped-decorator"
# (Triton kernels take untyped pointer arguments.)
"""MX block-scaled GEMM (OCP Microscaling): ``C = A @ Bᵀ`` where every 32 consecutive
elements along K share one power-of-two E8M0 scale, ``value = element · 2^(X − 127)``.

The kernel hands each ``BLOCK_M × BLOCK_K`` tile and its ``BLOCK_M × BLOCK_K/32`` scale codes
straight to ``tl.dot_scaled``, which on Blackwell maps to the native block-scaled MMA and
elsewhere is lowered by Triton to upcast-and-multiply; either way the scales never leave the
kernel as a dequantised tensor. Each operand is MXFP8 (a float8 e4m3/e5m2 tensor ``(rows, K)``)
or MXFP4 (uint8 ``(rows, K/2)``, two e2m1 codes per byte, element 2i in the low nibble — the
packing of :mod:`anyware.formats`); operands may mix (FP8 activations × FP4 weights). A is
``(M, ·)``, B is ``(N, ·)`` (a weight's layout), scales are uint8 ``(M, K/32)`` and
``(N, K/32)`` as :func:`anyware.formats.quantize` returns them for ``mxfp8_*``/``mxfp4_e2m1``.
"""

from __future__ import annotations

from typing import Any

import torch

from anyware.ops import _checks
from anyware.ops._registry import Impl, OpSpec, register_op, resolve
from anyware.ops._triton import interpreted, jit, next_pow2, tl, triton

SPEC = register_op(
    OpSpec(
        name="mx_matmul", summary="MXFP8/MXFP4 block-scaled GEMM (tl.dot_scaled)", backward="none"
    )
)
_FMT = {torch.float8_e4m3fn: "e4m3", torch.float8_e5m2: "e5m2", torch.uint8: "e2m1"}
MX_BLOCK = 32


def _e8m0(scales: torch.Tensor, rows: int, cols: int) -> torch.Tensor:
    exp = scales.to(torch.int32) - 127
    val = torch.ldexp(torch.ones(exp.shape, dtype=torch.float64, device=scales.device), exp)
    val = torch.where(scales == 255, torch.full_like(val, float("nan")), val)
    return val.repeat_interleave(MX_BLOCK, 1)[:rows, :cols]


def _elements(x: torch.Tensor) -> torch.Tensor:
    """Element values in fp64: float8 directly, packed e2m1 through the formats decoder."""
    if x.dtype != torch.uint8:
        return x.double()
    from anyware.formats.element import decode
    from anyware.formats.mx import unpack_fp4
    from anyware.formats.spec import E2M1

    return decode(unpack_fp4(x, 2 * x.shape[1]), E2M1).double()


def mx_matmul_reference(
    a: torch.Tensor,
    a_scales: torch.Tensor,
    b: torch.Tensor,
    b_scales: torch.Tensor,
    *,
    out_dtype: torch.dtype = torch.bfloat16,
) -> torch.Tensor:
    """The specification: decode elements and E8M0 scales exactly (fp64), multiply, round once."""
    ea, eb = _elements(a), _elements(b)
    m, k = ea.shape
    n = eb.shape[0]
    da = ea * _e8m0(a_scales, m, k)
    db = eb * _e8m0(b_scales, n, k)
    return (da @ db.t()).to(out_dtype)


# --- kernel ---------------------------------------------------------------------------------
@jit
def _mx_kernel(
    A, SA, B, SB, C, M, N, K,
    FMT_A: tl.constexpr, FMT_B: tl.constexpr, PACK_A: tl.constexpr, PACK_B: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr,
):  # fmt: skip
    rm = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rn = tl.program_id(1) * BLOCK_N + tl.arange(0, BLOCK_N)
    mmask = rm < M
    nmask = rn < N
    ks = K // 32
    acc = tl.zeros((BLOCK_M, BLOCK_N), tl.float32)
    for k0 in range(0, K, BLOCK_K):
        # packed operands (e2m1) hold two elements per byte along K
        ka = k0 // PACK_A + tl.arange(0, BLOCK_K // PACK_A)
        kb = k0 // PACK_B + tl.arange(0, BLOCK_K // PACK_B)
        sk = k0 // 32 + tl.arange(0, BLOCK_K // 32)
        a = tl.load(
            A + rm[:, None].to(tl.int64) * (K // PACK_A) + ka[None, :],
            mask=mmask[:, None] & (ka < K // PACK_A)[None, :],
            other=0.0,
        )
        b = tl.load(
            B + rn[None, :].to(tl.int64) * (K // PACK_B) + kb[:, None],
            mask=(kb < K // PACK_B)[:, None] & nmask[None, :],
            other=0.0,
        )
        # scale code 127 = 2^0 on padding, so masked lanes stay finite zeros
        sa = tl.load(
            SA + rm[:, None] * ks + sk[None, :], mask=mmask[:, None] & (sk < ks)[None, :], other=127
        )
        sb = tl.load(
            SB + rn[:, None] * ks + sk[None, :], mask=nmask[:, None] & (sk < ks)[None, :], other=127
        )
        acc = tl.dot_scaled(a, sa, FMT_A, b, sb, FMT_B, acc)
    tl.store(
        C + rm[:, None].to(tl.int64) * N + rn[None, :],
        acc.to(C.dtype.element_ty),
        mask=mmask[:, None] & nmask[None, :],
    )


# --- launcher and registration -------------------------------------------------------------
@torch.library.custom_op("anyware::mx_matmul", mutates_args=())
def _mx_op(
    a: torch.Tensor,
    a_scales: torch.Tensor,
    b: torch.Tensor,
    b_scales: torch.Tensor,
    out_dtype: torch.dtype,
) -> torch.Tensor:
    pack_a, pack_b = (2 if a.dtype == torch.uint8 else 1), (2 if b.dtype == torch.uint8 else 1)
    m, k = a.shape[0], a.shape[1] * pack_a
    n = b.shape[0]
    c = torch.empty((m, n), dtype=out_dtype, device=a.device)
    if m and n:
        if interpreted():
            bm, bn, bk = (
                max(16, min(64, next_pow2(m))),
                max(16, min(128, next_pow2(n))),
                max(32, min(256, next_pow2(k))),
            )
        else:
            bm, bn, bk = 128, 128, 128
        _mx_kernel[(triton.cdiv(m, bm), triton.cdiv(n, bn))](
            a, a_scales, b, b_scales, c, m, n, k, FMT_A=_FMT[a.dtype], FMT_B=_FMT[b.dtype], PACK_A=pack_a, PACK_B=pack_b,
            BLOCK_M=bm, BLOCK_N=bn, BLOCK_K=bk,
        )  # fmt: skip
    return c


@_mx_op.register_fake
def _(a, a_scales, b, b_scales, out_dtype):  # type: ignore[no-untyped-def]
    return a.new_empty((a.shape[0], b.shape[0]), dtype=out_dtype)


# --- public function -----------------------------------------------------------------------
def mx_matmul(
    a: Any,
    b: Any,
    a_scales: torch.Tensor | None = None,
    b_scales: torch.Tensor | None = None,
    *,
    out_dtype: torch.dtype = torch.bfloat16,
    impl: str | None = None,
) -> torch.Tensor:
    """MX ``a @ bᵀ`` (K along dim 1 of both) with E8M0 block scales ``(M, K/32)``/``(N, K/32)``;
    each operand is float8 (MXFP8) or packed uint8 e2m1 (MXFP4), or an
    :class:`anyware.formats.QuantizedTensor` in ``mxfp8_*``/``mxfp4_e2m1``."""
    op = "mx_matmul"
    if a_scales is None and hasattr(a, "fp8_view"):
        a, a_scales = (a.codes if a.packed else a.fp8_view()), a.scales
    if b_scales is None and hasattr(b, "fp8_view"):
        b, b_scales = (b.codes if b.packed else b.fp8_view()), b.scales
    for name, t in (("a", a), ("b", b), ("a_scales", a_scales), ("b_scales", b_scales)):
        _checks.tensor(op, name, t)
    assert a_scales is not None and b_scales is not None
    _checks.ndim(op, "a", a, (2,), "2-D (M, K)")
    _checks.ndim(op, "b", b, (2,), "2-D (N, K)")
    _checks.dtype(op, "a", a, tuple(_FMT))
    _checks.dtype(op, "b", b, tuple(_FMT))
    m, k = a.shape[0], a.shape[1] * (2 if a.dtype == torch.uint8 else 1)
    n = b.shape[0]
    _checks.size(
        op, "b", b.shape[1] * (2 if b.dtype == torch.uint8 else 1), k, "K (elements along dim 1)"
    )
    if k % MX_BLOCK:
        raise ValueError(f"mx_matmul: K={k} must be a multiple of the MX block ({MX_BLOCK})")
    for name, s, rows in (("a_scales", a_scales, m), ("b_scales", b_scales, n)):
        _checks.dtype(op, name, s, (torch.uint8,))
        if tuple(s.shape) != (rows, k // MX_BLOCK):
            raise ValueError(
                f"mx_matmul: {name} has shape {tuple(s.shape)}, expected ({rows}, {k // MX_BLOCK})"
            )
    device = _checks.same_device(op, a=a, b=b, a_scales=a_scales, b_scales=b_scales)
    if out_dtype not in _checks.FLOATS:
        raise ValueError(f"mx_matmul: out_dtype={out_dtype}; use float32, float16 or bfloat16")
    blocker = None
    if device.type == "cpu" and out_dtype == torch.bfloat16:
        blocker = "bf16 output is not rounded correctly by Triton's interpreter"
    if resolve(op, impl, device, unsupported=blocker) is Impl.REFERENCE:
        return mx_matmul_reference(a, a_scales, b, b_scales, out_dtype=out_dtype)
    return _mx_op(
        a.contiguous(), a_scales.contiguous(), b.contiguous(), b_scales.contiguous(), out_dtype
    )
