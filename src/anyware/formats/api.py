"""The public contract: ``quantize`` → ``QuantizedTensor`` → ``dequantize``; ``fake_quantize``.

``fake_quantize(x, fmt, ...)`` is ``dequantize(quantize(x, fmt, ...))``: the values ``x`` takes
after a round trip through the format, with ``x``'s shape and dtype. It is how training and
PTQ emulate a low-precision GEMM exactly on any device: quantise both operands, multiply the
dequantised values in fp32. ``quantize`` gives the stored form (codes + scales) that a real
kernel consumes.

Options by format (an option that does not apply is an error, not silently ignored):

=====================  =====================================================================
``fp8_e4m3/e5m2``      ``granularity`` (tensor | row | block1x128 | block128x128, default
                       tensor), ``pow2_scale`` (default False), ``scale`` (precomputed
                       dequantisation scales, e.g. from an amax history)
``mx*``                ``scale_rounding`` (floor | rceil, default floor as in the spec)
``int4 / int8``        ``group_size`` (default 128 for int4, one group per row for int8)
=====================  =====================================================================
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, overload

import torch

from anyware.formats import fp8, intq, mx
from anyware.formats.spec import (
    ELEMENT,
    FP8_FORMATS,
    INT_FORMATS,
    MX_FORMATS,
    Format,
    Granularity,
    ScaleRounding,
    parse_choice,
    parse_format,
)

if TYPE_CHECKING:
    from torch import nn

    from anyware.formats.ptq import PTQReport


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantizedTensor:
    """Codes and scales of one tensor in one format."""

    fmt: Format
    """The scheme."""
    codes: torch.Tensor
    """uint8 element codes, shape of the input; FP4/INT4 packed two per byte along the last dim."""
    scales: torch.Tensor
    """fp32 dequantisation scales (FP8, INT) or uint8 E8M0 codes (MX), one per block."""
    shape: tuple[int, ...]
    """Shape of the original tensor."""
    dtype: torch.dtype
    """dtype of the original tensor (``dequantize`` returns it)."""
    granularity: Granularity | None = None
    """FP8 only."""
    scale_rounding: ScaleRounding | None = None
    """MX only."""
    group_size: int | None = None
    """INT only (None: one group per row)."""
    packed: bool = False
    """Whether ``codes`` hold two 4-bit codes per byte."""

    def __post_init__(self) -> None:
        if self.codes.dtype != torch.uint8:
            raise ValueError(f"QuantizedTensor.codes must be uint8, got {self.codes.dtype}")

    def fp8_view(self) -> torch.Tensor:
        """The codes as a torch float8 tensor (FP8 / MXFP8 formats), e.g. for ``_scaled_mm``."""
        el = ELEMENT[self.fmt]
        if el.name == "e4m3":
            return self.codes.view(torch.float8_e4m3fn)
        if el.name == "e5m2":
            return self.codes.view(torch.float8_e5m2)
        raise ValueError(f"format {self.fmt} has no torch float8 dtype")


def _check_options(fmt: Format, **given: Any) -> None:
    allowed = {
        "granularity": FP8_FORMATS,
        "pow2_scale": FP8_FORMATS,
        "scale": FP8_FORMATS,
        "scale_rounding": MX_FORMATS,
        "group_size": INT_FORMATS,
    }
    for name, value in given.items():
        if value is not None and value is not False and fmt not in allowed[name]:
            raise ValueError(f"option {name}={value!r} does not apply to format {fmt.value}")


@overload
def quantize(x: torch.Tensor, fmt: str | Format, **options: Any) -> QuantizedTensor: ...
@overload
def quantize(x: nn.Module, fmt: str, **options: Any) -> PTQReport: ...
def quantize(x: Any, fmt: Any, **options: Any) -> Any:
    """Quantise a tensor (→ ``QuantizedTensor``), or a model with a PTQ preset (→ ``PTQReport``,
    see ``anyware.formats.ptq.quantize_model``)."""
    if isinstance(x, torch.Tensor):
        return quantize_tensor(x, fmt, **options)
    from torch import nn

    if isinstance(x, nn.Module):
        from anyware.formats.ptq import quantize_model

        return quantize_model(x, fmt, **options)
    raise TypeError(f"quantize expects a tensor or an nn.Module, got {type(x).__name__}")


def quantize_tensor(
    x: torch.Tensor,
    fmt: str | Format,
    *,
    granularity: str | Granularity | None = None,
    scale_rounding: str | ScaleRounding | None = None,
    group_size: int | None = None,
    pow2_scale: bool = False,
    scale: torch.Tensor | None = None,
) -> QuantizedTensor:
    """Codes and scales of ``x`` in ``fmt`` (see the module docstring for the options)."""
    f = parse_format(fmt)
    _check_options(
        f,
        granularity=granularity,
        scale_rounding=scale_rounding,
        group_size=group_size,
        pow2_scale=pow2_scale,
        scale=scale,
    )
    if not x.is_floating_point():
        raise TypeError(f"quantize expects a floating-point tensor, got {x.dtype}")
    el = ELEMENT[f]
    shape = tuple(x.shape)
    if f in FP8_FORMATS:
        g = parse_choice(Granularity, granularity or "tensor", "granularity")
        codes, scales = fp8.quantize_fp8(x, el, g, pow2_scale=pow2_scale, scale=scale)
        return QuantizedTensor(
            fmt=f, codes=codes, scales=scales, shape=shape, dtype=x.dtype, granularity=g
        )
    if f in MX_FORMATS:
        r = parse_choice(ScaleRounding, scale_rounding or "floor", "scale_rounding")
        codes, scales = mx.quantize_mx(x, el, r)
        packed = el.bits == 4
        if packed:
            codes = mx.pack_fp4(codes)
        return QuantizedTensor(
            fmt=f, codes=codes, scales=scales, shape=shape, dtype=x.dtype,
            scale_rounding=r, packed=packed,
        )  # fmt: skip
    gs = (
        group_size if group_size is not None else (intq.DEFAULT_GROUP if f is Format.INT4 else None)
    )
    if gs is not None and gs <= 0:
        raise ValueError(f"group_size must be positive, got {gs}")
    codes, scales = intq.quantize_int(x, el, gs)
    packed = f is Format.INT4
    if packed:
        codes = mx.pack_fp4(codes)
    return QuantizedTensor(
        fmt=f, codes=codes, scales=scales, shape=shape, dtype=x.dtype, group_size=gs, packed=packed
    )


def dequantize(q: QuantizedTensor, *, dtype: torch.dtype | None = None) -> torch.Tensor:
    """Values of ``q`` in ``dtype`` (default: the original tensor's dtype)."""
    el = ELEMENT[q.fmt]
    codes = mx.unpack_fp4(q.codes, q.shape[-1] if q.shape else 1) if q.packed else q.codes
    codes = codes.reshape(q.shape)
    if q.fmt in FP8_FORMATS:
        assert q.granularity is not None
        out = fp8.dequantize_fp8(codes, q.scales, el, q.granularity)
    elif q.fmt in MX_FORMATS:
        out = mx.dequantize_mx(codes, q.scales, el, q.shape)
    else:
        out = intq.dequantize_int(codes, q.scales, el, q.group_size)
    return out.to(dtype or q.dtype)


def fake_quantize(
    x: torch.Tensor,
    fmt: str | Format,
    *,
    granularity: str | Granularity | None = None,
    scale_rounding: str | ScaleRounding | None = None,
    group_size: int | None = None,
    pow2_scale: bool = False,
    scale: torch.Tensor | None = None,
) -> torch.Tensor:
    """``x`` after a round trip through ``fmt`` (same shape and dtype as ``x``)."""
    q = quantize_tensor(
        x,
        fmt,
        granularity=granularity,
        scale_rounding=scale_rounding,
        group_size=group_size,
        pow2_scale=pow2_scale,
        scale=scale,
    )
    return dequantize(q)
