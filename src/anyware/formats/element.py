"""Bit-exact element casts: real numbers to minifloat / integer codes and back.

Rounding a real ``a > 0`` to a minifloat with ``M`` mantissa bits is one line of math once the
*quantum* (the spacing of representable values around ``a``) is known::

    e = max(floor(log2 a), emin)        # subnormals share the quantum of the lowest binade
    q = 2^(e - M)
    a' = round_half_even(a / q) · q

``a / q`` is a multiplication by a power of two, so it is exact in binary floating point, and
``torch.round`` rounds halves to even: the only rounding happens where the specification says.
Rounding can carry into the next binade (``1.1111·2^e → 2^(e+1)``); ``a'`` is still the right
value and the code is derived from it afterwards. The reference works in float64 so that the
inputs (fp32, bf16, fp16, or fp32 values pre-scaled exactly by a power of two) are held exactly.

Overflow and special values, per format (all documented in ``docs/formats.md``):

* finite overflow: ``saturate=True`` clamps to ±max. With ``saturate=False`` E5M2 overflows to
  ±Inf (IEEE: a value rounds to Inf once it reaches ``max + q/2``, so 61440 → Inf, ties to
  even); formats without Inf (E4M3fn, FP6, FP4) always saturate, as torch's own E4M3fn cast does.
* ±Inf: ±Inf where the format has it, otherwise ±max (torch's E4M3fn rule).
* NaN: the format's NaN code with the input's sign (``0x7F``/``0xFF`` for both FP8 formats).
  FP6/FP4/INT have no NaN: the element becomes +0 and the MX / INT quantisers mark the whole
  block NaN through its scale.

The Triton kernel in ``triton_cast.py`` implements the same cast with integer bit manipulation
on the fp32 encoding; the two are tested bit-exactly against each other and against torch.
"""

from __future__ import annotations

import torch

from anyware.formats.spec import ElementFormat

_LUT_CACHE: dict[str, torch.Tensor] = {}
_TORCH_FP8: dict[str, torch.dtype] = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}


def encode_reference(x: torch.Tensor, fmt: ElementFormat, *, saturate: bool = True) -> torch.Tensor:
    """Codes (uint8, one per element; the sign is bit ``fmt.bits - 1``) for the values ``x``."""
    v = x.double()
    if fmt.integer:
        return _encode_int(v, fmt)
    sign = torch.signbit(v)
    a = v.abs()
    nan = torch.isnan(a)
    inf = torch.isinf(a)
    a = torch.where(nan | inf, torch.zeros_like(a), a)

    _, exp = torch.frexp(a)  # a = m·2^exp with m in [0.5, 1): floor(log2 a) = exp - 1
    e = torch.clamp(exp - 1, min=fmt.emin)
    q = torch.ldexp(torch.ones_like(a), (e - fmt.mbits).to(torch.int32))
    r = torch.round(a / q) * q  # exact scaling, one round-half-even

    over = r > fmt.max_value
    mag_code = _positive_code(r, fmt)
    max_code = torch.full_like(mag_code, fmt.max_code)
    if fmt.has_inf and not saturate:
        over_code = torch.full_like(mag_code, fmt.inf_code or 0)
    else:
        over_code = max_code
    code = torch.where(over, over_code, mag_code)
    if fmt.has_inf:
        code = torch.where(inf, torch.full_like(code, fmt.inf_code or 0), code)
    else:
        code = torch.where(inf, max_code, code)
    if fmt.has_nan:
        code = torch.where(nan, torch.full_like(code, fmt.nan_code or 0), code)
    else:
        code = torch.where(nan, torch.zeros_like(code), code)
        sign = sign & ~nan
    code = code | (sign.to(code.dtype) << (fmt.bits - 1))
    return code.to(torch.uint8)


def _positive_code(r: torch.Tensor, fmt: ElementFormat) -> torch.Tensor:
    """Code of an exactly representable magnitude ``r`` (values above max are clamped)."""
    r = torch.clamp(r, max=fmt.max_value)
    _, exp = torch.frexp(r)
    e = exp - 1
    normal = e >= fmt.emin
    # subnormal (and zero): mantissa counts quanta of the lowest binade, exponent field 0
    sub = torch.round(r * 2.0 ** (fmt.mbits - fmt.emin)).to(torch.int64)
    frac = torch.ldexp(r, (fmt.mbits - e).to(torch.int32)) - 2**fmt.mbits
    nrm = ((e + fmt.bias).to(torch.int64) << fmt.mbits) | frac.to(torch.int64)
    return torch.where(normal & (r > 0), nrm, sub)


def _encode_int(v: torch.Tensor, fmt: ElementFormat) -> torch.Tensor:
    """Symmetric two's-complement integer: round half to even, saturate to ±max code."""
    lim = fmt.max_code
    n = torch.round(torch.nan_to_num(v, nan=0.0) / fmt.int_scale).clamp(-lim, lim)
    return (n.to(torch.int64) & ((1 << fmt.bits) - 1)).to(torch.uint8)


def encode(x: torch.Tensor, fmt: ElementFormat, *, saturate: bool = True) -> torch.Tensor:
    """``encode_reference``, through torch's own FP8 casts where torch has the dtype.

    torch's E4M3fn cast saturates and its E5M2 cast overflows to Inf, as documented above; both
    are tested bit-exact against the reference. A float64 input is first rounded to fp32, which
    is exact for every caller here (fp32 values scaled by a power of two whose result is either
    an fp32 normal or far below the format's smallest subnormal).
    """
    dt = _TORCH_FP8.get(fmt.name)
    if dt is None:
        return encode_reference(x, fmt, saturate=saturate)
    y = x.float()
    if saturate and fmt.has_inf:
        y = torch.where(torch.isinf(y), y, y.clamp(-fmt.max_value, fmt.max_value))
    return y.to(dt).view(torch.uint8)


def code_values(fmt: ElementFormat) -> torch.Tensor:
    """fp32 value of every code ``0 .. 2^bits - 1`` (the decode table)."""
    cached = _LUT_CACHE.get(fmt.name + str(fmt.int_scale))
    if cached is not None:
        return cached
    vals = [_decode_one(c, fmt) for c in range(1 << fmt.bits)]
    lut = torch.tensor(vals, dtype=torch.float64).float()
    _LUT_CACHE[fmt.name + str(fmt.int_scale)] = lut
    return lut


def _decode_one(c: int, fmt: ElementFormat) -> float:
    if fmt.integer:
        n = c - (1 << fmt.bits) if c >> (fmt.bits - 1) else c
        return n * fmt.int_scale
    s = -1.0 if c >> (fmt.bits - 1) else 1.0
    mag = c & ((1 << (fmt.bits - 1)) - 1)
    if fmt.has_nan and mag == fmt.nan_code:
        return float("nan")
    if fmt.has_inf and mag == fmt.inf_code:
        return s * float("inf")
    if fmt.has_inf and mag > (fmt.inf_code or 0):
        return float("nan")  # E5M2: S.11111.01..11 are NaNs
    e, m = mag >> fmt.mbits, mag & ((1 << fmt.mbits) - 1)
    if e == 0:
        return s * m * 2.0 ** (fmt.emin - fmt.mbits)
    return s * (1 + m / 2**fmt.mbits) * 2.0 ** (e - fmt.bias)


def decode(codes: torch.Tensor, fmt: ElementFormat) -> torch.Tensor:
    """fp32 values of the uint8 ``codes`` (a table lookup: every format has ≤ 256 codes)."""
    if codes.dtype != torch.uint8:
        raise TypeError(f"decode expects uint8 codes, got {codes.dtype}")
    dt = _TORCH_FP8.get(fmt.name)
    if dt is not None:  # torch's widening cast is exact; the table is tested equal to it
        return codes.view(dt).float()
    lut = code_values(fmt).to(codes.device)
    return lut[codes.long() & ((1 << fmt.bits) - 1)]


def cast_reference(x: torch.Tensor, fmt: ElementFormat, *, saturate: bool = True) -> torch.Tensor:
    """Round ``x`` to the nearest value of ``fmt`` (fp32 result): decode(encode(x))."""
    return decode(encode(x, fmt, saturate=saturate), fmt)
