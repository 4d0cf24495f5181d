"""OCP Microscaling (MX v1.0): 32 elements share one power-of-two scale stored as E8M0.

An MX block is 32 consecutive elements along the reduction (last) dimension plus one byte
``X`` holding an unsigned exponent: the scale is ``2^(X - 127)``, ``X = 0xFF`` is NaN. Because
the scale is a power of two, ``x / scale`` is exact and the only rounding is the element cast.

Choosing the exponent is the whole design question:

* **FLOOR** (the spec): ``2^(floor(log2 amax) - emax_elem)`` puts amax in the element format's
  top binade. It can *overflow*: E4M3's top binade is [256, 512) but its max is 448, so a block
  with amax 500 maps it to 500 and saturates it to 448 (a 10% error on the largest value).
* **RCEIL** (NVIDIA's hardware and cuBLAS): ``2^ceil(log2(amax / max_elem))``, the smallest
  power of two that makes ``amax / scale ≤ max_elem``. It never saturates, at the price of
  sometimes using one binade less of the element range. This module computes the ceiling
  exactly (see ``fp8.ceil_log2_ratio``), not through an fp32 division.

torch's cast to ``float8_e8m0fnu`` rounds to nearest, which is neither; it is never used here.

Element encodings: FP8 E4M3/E5M2, FP6 E3M2/E2M3, FP4 E2M1 (minifloats, ``element.py``) and
INT8 (two's complement with an implicit 2^-6, so codes span [-2, 127/64]; the quantiser is
symmetric and produces -127..127). Exponents are clamped to E8M0's [-127, 127]; an all-zero
block gets the smallest scale (code 0) and zero elements. A block containing NaN or ±Inf has no
finite scale: its scale code is 0xFF (NaN) and the whole block dequantises to NaN.

Storage: one uint8 code per element, except FP4 which is **packed two per byte**: element
``2i`` in the low nibble (bits 0-3), element ``2i+1`` in the high nibble (bits 4-7), along the
last dim, which is padded with one zero nibble when odd. (FP6 is stored one code per byte; the
spec's 3-bytes-per-4 packing is a storage detail left to kernels.)
"""

from __future__ import annotations

import torch

from anyware.formats._blocks import BlockShape, block_amax, expand
from anyware.formats.element import decode, encode
from anyware.formats.fp8 import ceil_log2_ratio
from anyware.formats.spec import E8M0_BIAS, E8M0_NAN, MX_BLOCK, ElementFormat, ScaleRounding

MX_BLOCK_SHAPE = BlockShape(rows=1, cols=MX_BLOCK)


def mx_scale_exponent(
    amax: torch.Tensor, elem: ElementFormat, rounding: ScaleRounding
) -> torch.Tensor:
    """Unbiased scale exponent per block (int32, clamped to [-127, 127]) for finite ``amax``."""
    amax = amax.double()
    zero = amax == 0
    safe = torch.where(zero, torch.ones_like(amax), amax)
    if rounding is ScaleRounding.FLOOR:
        _, e = torch.frexp(safe)
        exp = (e - 1) - elem.emax
    else:
        exp = ceil_log2_ratio(safe, elem.max_value)
    exp = torch.where(zero, torch.full_like(exp, -E8M0_BIAS), exp.to(torch.int32))
    return exp.clamp(-E8M0_BIAS, E8M0_BIAS).to(torch.int32)


def quantize_mx(
    x: torch.Tensor, elem: ElementFormat, rounding: ScaleRounding
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(element codes uint8, E8M0 scale codes uint8 of shape (..., ceil(K/32)))``."""
    xf = x.float()
    amax, bad = block_amax(xf, MX_BLOCK_SHAPE)
    exp = mx_scale_exponent(amax, elem, rounding)
    scale_codes = torch.where(bad, torch.full_like(exp, E8M0_NAN), exp + E8M0_BIAS).to(torch.uint8)
    # x·2^-exp in fp32 is exact wherever it matters: the result is ≤ 2^(emax+1), and an fp32
    # product can only round when it is an fp32 subnormal (< 2^-126), far below half of any
    # element format's smallest subnormal, where every input rounds to 0 anyway.
    factor = expand(_pow2(-exp), tuple(xf.shape), MX_BLOCK_SHAPE)
    scaled = xf * factor
    block_bad = expand(bad, tuple(xf.shape), MX_BLOCK_SHAPE)
    scaled = torch.where(block_bad, torch.zeros_like(scaled), scaled)
    return encode(scaled, elem, saturate=True), scale_codes


def dequantize_mx(
    codes: torch.Tensor, scale_codes: torch.Tensor, elem: ElementFormat, shape: tuple[int, ...]
) -> torch.Tensor:
    """fp32 values ``value(code) · 2^(X - 127)``: one IEEE multiplication by a power of two, so
    at most one rounding (only where the product is an fp32 subnormal) or an overflow to Inf."""
    vals = decode(codes, elem)
    full = expand(e8m0_value(scale_codes), shape, MX_BLOCK_SHAPE)
    return vals * full


def pack_fp4(codes: torch.Tensor) -> torch.Tensor:
    """Two 4-bit codes per byte along the last dim: element 2i low nibble, 2i+1 high nibble."""
    if codes.shape[-1] % 2:
        codes = torch.cat([codes, codes.new_zeros((*codes.shape[:-1], 1))], dim=-1)
    lo = codes[..., 0::2] & 0x0F
    hi = codes[..., 1::2] & 0x0F
    return lo | (hi << 4)


def unpack_fp4(packed: torch.Tensor, k: int) -> torch.Tensor:
    """Inverse of ``pack_fp4`` for a last dim of ``k`` elements."""
    lo = packed & 0x0F
    hi = packed >> 4
    out = torch.stack([lo, hi], dim=-1).reshape(*packed.shape[:-1], packed.shape[-1] * 2)
    return out[..., :k]


def _pow2(exp: torch.Tensor) -> torch.Tensor:
    """fp32 ``2^exp`` for integer ``exp`` in [-127, 127] (exact: built in float64, then cast)."""
    return torch.ldexp(torch.ones(exp.shape, dtype=torch.float64), exp).float()


def e8m0_value(scale_codes: torch.Tensor) -> torch.Tensor:
    """fp32 value of E8M0 codes (2^(X-127); 0xFF → NaN; code 0 is 2^-127, an fp32 subnormal)."""
    exp = scale_codes.to(torch.int32) - E8M0_BIAS
    out = torch.ldexp(torch.ones(scale_codes.shape, dtype=torch.float64), exp).float()
    return torch.where(scale_codes == E8M0_NAN, torch.full_like(out, float("nan")), out)
