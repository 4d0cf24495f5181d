"""Scaled FP8 (E4M3 / E5M2): one fp32 scale per tensor, row, 1×128 tile or 128×128 block.

An FP8 element covers only ~2^17 (E4M3) or ~2^32 (E5M2) of dynamic range, so each block of
values is divided by a scale ``s`` that maps its largest magnitude onto the format's maximum::

    s      = amax / fp8_max             (exact: fp32 division; or power of two, below)
    code   = cast_satfinite(x / s)      (fp32 division, then one round-half-even)
    x'     = value(code) · s

``s`` is the *dequantisation* scale, the one ``torch._scaled_mm`` takes as ``scale_a``. With
``pow2_scale=True`` the scale is ``2^ceil(log2(amax / fp8_max))``: ``x / s`` and ``value · s``
become exact exponent shifts (no second rounding, a cheap epilogue on hardware, what Transformer
Engine's blockwise recipe uses) at the cost of up to one binade of unused range, i.e. ~1 bit of
precision for the block's largest values.

Granularity is the trade-off between tracking the data and cost:

* ``tensor``: one scale; an outlier anywhere squeezes every other value toward the subnormals.
* ``row``: one scale per row of the last dim (per token for activations, per output channel
  for weights); the GEMM epilogue multiplies by an outer product of scales.
* ``block1x128`` / ``block128x128``: DeepSeek-V3's fine-grained scaling (activations in 1×128
  tiles, weights in 128×128 blocks); the GEMM must apply scales every 128 elements of K, which
  is also where DeepSeek promotes partial sums to fp32.

Special values: scales come from the *finite* amax; an all-zero block gets ``s = 1``. NaN stays
NaN per element, ±Inf becomes ±Inf in E5M2 and ±448 in E4M3fn (see ``element.py``).
"""

from __future__ import annotations

import torch

from anyware.formats._blocks import BlockShape, block_amax, expand
from anyware.formats.element import decode, encode
from anyware.formats.spec import ElementFormat, Granularity

#: FP8 block widths: DeepSeek-V3 / Transformer Engine use 128 along K.
FP8_BLOCK = 128

BLOCKS: dict[Granularity, BlockShape] = {
    Granularity.TENSOR: BlockShape(rows=None, cols=None),
    Granularity.ROW: BlockShape(rows=1, cols=None),
    Granularity.BLOCK1X128: BlockShape(rows=1, cols=FP8_BLOCK),
    Granularity.BLOCK128X128: BlockShape(rows=FP8_BLOCK, cols=FP8_BLOCK),
}


def ceil_log2_ratio(amax: torch.Tensor, max_value: float) -> torch.Tensor:
    """Exact ``ceil(log2(amax / max_value))`` for ``amax > 0`` (int32), without dividing.

    With ``amax = m·2^a`` and ``max_value = n·2^b`` (m, n in [0.5, 1)), the ratio is
    ``(m/n)·2^(a-b)`` and ``m/n`` lies in (0.5, 2): the ceiling is ``a - b`` plus one when
    ``m > n``. Dividing in fp32 first could round a ratio just above a power of two down onto it.
    """
    m, a = torch.frexp(amax.double())
    n, b = torch.frexp(torch.tensor(max_value, dtype=torch.float64))
    return (a - b + (m > n).to(a.dtype)).to(torch.int32)


def fp8_scales(amax: torch.Tensor, fmt: ElementFormat, *, pow2_scale: bool) -> torch.Tensor:
    """Dequantisation scales (fp32) for per-block ``amax`` values."""
    amax = amax.float()
    zero = amax == 0
    safe = torch.where(zero, torch.ones_like(amax), amax)
    if pow2_scale:
        e = ceil_log2_ratio(safe, fmt.max_value).clamp(-126, 127)
        s = torch.ldexp(torch.ones_like(safe), e)
    else:
        s = safe / fmt.max_value
        # amax below max·2^-149 would give a zero scale; the smallest positive one keeps x/s finite
        s = torch.clamp(s, min=torch.finfo(torch.float32).tiny * 2**-23)
    return torch.where(zero, torch.ones_like(s), s)


def quantize_fp8(
    x: torch.Tensor,
    fmt: ElementFormat,
    granularity: Granularity,
    *,
    pow2_scale: bool = False,
    scale: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(codes uint8 of x.shape, fp32 scales)``. ``scale`` overrides the computed scales (it
    must have the scale shape of ``granularity``): delayed scaling passes last steps' amax."""
    block = BLOCKS[granularity]
    xf = x.float()
    if scale is None:
        amax, _ = block_amax(xf, block)
        scale = fp8_scales(amax, fmt, pow2_scale=pow2_scale)
    scale = scale.float()
    full = expand(scale, tuple(xf.shape), block)
    codes = encode(xf / full, fmt, saturate=True)
    return codes, scale


def dequantize_fp8(
    codes: torch.Tensor, scales: torch.Tensor, fmt: ElementFormat, granularity: Granularity
) -> torch.Tensor:
    """fp32 values ``value(code) · scale``."""
    full = expand(scales.float(), tuple(codes.shape), BLOCKS[granularity])
    return decode(codes, fmt) * full
