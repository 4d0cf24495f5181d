"""Symmetric integer quantisation with one fp32 scale per group (INT4, INT8).

Weight-only INT4 (``w4a16``) and W4A4 store each group of ``group_size`` consecutive values of
the last (reduction) dimension as integers with one scale::

    s     = amax / qmax           (qmax = 7 for INT4, 127 for INT8; fp32 division)
    code  = clamp(round_half_even(x / s), -qmax, qmax)
    x'    = code · s

Symmetric codes (no zero point) keep the GEMM a plain integer dot product followed by one
multiply; an asymmetric zero point would use INT4's -8 and fit skewed groups better but adds a
correction term per group. Smaller groups track outliers better and cost one scale per group
(at g=128, 0.25 extra bits per INT4 weight). ``group_size=None`` means one group per row
(per-channel weights, per-token activations).

Special values: an all-zero group gets ``s = 1``; a group holding NaN or ±Inf gets ``s = NaN``
and dequantises to NaN (integers cannot carry them per element). INT4 codes are packed two per
byte like MX FP4: element ``2i`` in the low nibble, ``2i+1`` in the high nibble (two's
complement nibbles), the last dim padded with one zero nibble when odd.
"""

from __future__ import annotations

import torch

from anyware.formats._blocks import BlockShape, block_amax, expand
from anyware.formats.element import decode, encode_reference
from anyware.formats.spec import ElementFormat

#: Default INT4 group (GPTQ / AWQ convention).
DEFAULT_GROUP = 128


def group_block(group_size: int | None) -> BlockShape:
    return BlockShape(rows=1, cols=group_size)


def quantize_int(
    x: torch.Tensor, elem: ElementFormat, group_size: int | None
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(codes uint8 two's complement, fp32 scales of shape (..., ceil(K/group)))``."""
    block = group_block(group_size)
    xf = x.float()
    amax, bad = block_amax(xf, block)
    s = torch.where(amax == 0, torch.ones_like(amax), amax / elem.max_value)
    s = torch.clamp(s, min=torch.finfo(torch.float32).tiny * 2**-23)
    s = torch.where(bad, torch.full_like(s, float("nan")), s)
    full = expand(s, tuple(xf.shape), block)
    scaled = torch.where(torch.isnan(full), torch.zeros_like(xf), xf / full)
    return encode_reference(scaled, elem), s


def dequantize_int(
    codes: torch.Tensor, scales: torch.Tensor, elem: ElementFormat, group_size: int | None
) -> torch.Tensor:
    full = expand(scales.float(), tuple(codes.shape), group_block(group_size))
    return decode(codes, elem) * full
