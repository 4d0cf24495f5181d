# mypy: disable-error-code="untyped-decorator,no-untyped-def"
"""Fast minifloat casts in Triton, by integer bit manipulation, registered as a torch op.

``torch.ops.anyware_formats.cast_to_codes(x, scale, fmt, saturate)`` returns the uint8 codes of
``x / scale`` in ``fmt`` (``e4m3``, ``e5m2``, ``e3m2``, ``e2m3``, ``e2m1``), bit-identical to
``element.encode_reference``. Why integers: Triton's CPU interpreter rounds fp32→fp8 casts
inside kernels differently from the hardware (and from torch), so a kernel that relied on
``.to(tl.float8e4nv)`` could not be verified on a CPU. Working on the fp32 encoding instead is
exact by construction and is also what fast casts on chips without native FP8 do.

The math, for ``u`` = the 31 magnitude bits of an fp32 (8 exponent, 23 mantissa bits):

* normal target (unbiased exponent ``e ≥ emin``): drop the low ``23 - M`` mantissa bits with
  round-half-even, ``(u + 2^(k-1) - 1 + ((u >> k) & 1)) >> k`` for ``k = 23 - M``. A mantissa
  carry ripples into the exponent field, which is exactly the carry across a power of two.
  Re-biasing subtracts ``(127 - B) << M``.
* subnormal target (``e < emin``): the value is ``1.m · 2^e``; its code is the number of
  quanta ``2^(emin - M)``, i.e. the 24-bit significand ``(1 << 23) | m`` shifted right by
  ``23 + emin - M - e`` with the same round-half-even. A result of ``2^M`` is the smallest
  normal's code: the subnormal→normal carry comes out right for free.
* codes above the largest finite code overflow: saturate, or Inf for E5M2 when not saturating.

The launcher picks Triton when the tensor's device can run it (a GPU with Triton, or any tensor
with ``TRITON_INTERPRET=1``) and the reference otherwise, so the op works everywhere.
"""

from __future__ import annotations

import os
from typing import Any

import torch

from anyware.formats.element import encode_reference
from anyware.formats.spec import E2M1, E2M3, E3M2, E4M3, E5M2, ElementFormat

FORMATS: dict[str, ElementFormat] = {f.name: f for f in (E4M3, E5M2, E3M2, E2M3, E2M1)}
_BLOCK = 1024
#: the interpreter runs each program as numpy vector ops: fewer, larger programs are ~10× faster
_INTERPRET_BLOCK = 16384
_kernel: Any = None


def _build_kernel() -> Any:
    import triton
    import triton.language as tl

    @triton.jit
    def cast_kernel(
        x_ptr, scale_ptr, out_ptr, n,
        M: tl.constexpr, EMIN: tl.constexpr, REBIAS: tl.constexpr, BITS: tl.constexpr,
        MAXCODE: tl.constexpr, OVERCODE: tl.constexpr, INFCODE: tl.constexpr,
        NANCODE: tl.constexpr, HAS_NAN: tl.constexpr, BLOCK: tl.constexpr,
    ):  # fmt: skip
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        mask = offs < n
        x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        # div_rn: correctly rounded (a plain `/` lowers to an approximate division on GPUs)
        y = tl.math.div_rn(x, tl.load(scale_ptr))
        u = y.to(tl.int32, bitcast=True)
        sign = (u >> 31) & 1
        a = u & 0x7FFFFFFF
        ef = a >> 23
        e = ef - 127
        # normal target: round-half-even away the low 23-M mantissa bits
        k: tl.constexpr = 23 - M
        rn = (a + ((1 << (k - 1)) - 1) + ((a >> k) & 1)) >> k
        code_n = rn - REBIAS
        # subnormal target: count quanta of 2^(EMIN-M) in the 24-bit significand
        s = tl.minimum(tl.maximum(23 + EMIN - M - e, 1), 31)
        full = (a & 0x7FFFFF) | 0x800000
        rs = (full + ((1 << (s - 1)) - 1) + ((full >> s) & 1)) >> s
        code_s = tl.where(ef == 0, 0, rs)
        code = tl.where(e >= EMIN, code_n, code_s)
        code = tl.where(code > MAXCODE, OVERCODE, code)
        code = tl.where(a == 0x7F800000, INFCODE, code)
        is_nan = a > 0x7F800000
        if HAS_NAN:
            code = tl.where(is_nan, NANCODE, code)
        else:
            code = tl.where(is_nan, 0, code)
            sign = tl.where(is_nan, 0, sign)
        code = code | (sign << (BITS - 1))
        tl.store(out_ptr + offs, code.to(tl.uint8), mask=mask)

    return cast_kernel


def triton_usable(x: torch.Tensor) -> bool:
    """Whether Triton can run on ``x``'s device here (a GPU, or the interpreter on cpu)."""
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    if x.device.type == "cpu":
        return os.environ.get("TRITON_INTERPRET") == "1"
    return True


def cast_to_codes_triton(
    x: torch.Tensor, scale: torch.Tensor, fmt: ElementFormat, saturate: bool
) -> torch.Tensor:
    """Launch the kernel (``x`` any float dtype, ``scale`` a one-element fp32 tensor)."""
    global _kernel
    if _kernel is None:
        _kernel = _build_kernel()
    xc = x.contiguous()
    out = torch.empty(xc.shape, dtype=torch.uint8, device=x.device)
    n = xc.numel()
    if n == 0:
        return out
    over = fmt.inf_code if (fmt.has_inf and not saturate) else fmt.max_code
    block = _INTERPRET_BLOCK if os.environ.get("TRITON_INTERPRET") == "1" else _BLOCK
    _kernel[(triton_cdiv(n, block),)](
        xc, scale.float().reshape(1).contiguous(), out, n,
        M=fmt.mbits, EMIN=fmt.emin, REBIAS=(127 - fmt.bias) << fmt.mbits, BITS=fmt.bits,
        MAXCODE=fmt.max_code, OVERCODE=over,
        INFCODE=fmt.inf_code if fmt.has_inf else fmt.max_code,
        NANCODE=fmt.nan_code or 0, HAS_NAN=fmt.has_nan, BLOCK=block,
    )  # fmt: skip
    return out


def triton_cdiv(a: int, b: int) -> int:
    return -(-a // b)


def cast_to_codes_reference(
    x: torch.Tensor, scale: torch.Tensor, fmt: str, saturate: bool
) -> torch.Tensor:
    """The specification: fp32 ``x / scale``, then ``element.encode_reference``."""
    return encode_reference(x.float() / scale.float().reshape(()), _lookup(fmt), saturate=saturate)


def _lookup(fmt: str) -> ElementFormat:
    try:
        return FORMATS[fmt]
    except KeyError:
        raise ValueError(
            f"cast_to_codes: unknown element format {fmt!r}; known: {sorted(FORMATS)}"
        ) from None


@torch.library.custom_op("anyware_formats::cast_to_codes", mutates_args=())
def cast_to_codes(x: torch.Tensor, scale: torch.Tensor, fmt: str, saturate: bool) -> torch.Tensor:
    """uint8 codes of ``x / scale`` in the minifloat ``fmt`` (round half to even)."""
    el = _lookup(fmt)
    if scale.numel() != 1:
        raise ValueError(
            f"cast_to_codes: scale must have one element, got shape {tuple(scale.shape)}"
        )
    if triton_usable(x):
        return cast_to_codes_triton(x, scale, el, saturate)
    return cast_to_codes_reference(x, scale, fmt, saturate)


@cast_to_codes.register_fake
def _(x: torch.Tensor, scale: torch.Tensor, fmt: str, saturate: bool) -> torch.Tensor:
    return torch.empty(x.shape, dtype=torch.uint8, device=x.device)
