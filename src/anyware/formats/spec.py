"""The element formats and the names users pick them by.

A *minifloat* with ``E`` exponent bits, ``M`` mantissa bits and bias ``B`` stores
``(-1)^s · 2^(e-B) · (1 + m/2^M)`` for a biased exponent field ``e ≥ 1`` (normals) and
``(-1)^s · 2^(1-B) · (m/2^M)`` for ``e = 0`` (subnormals). Three things distinguish the
formats that matter for training and inference:

* **range vs precision**: E4M3 spends a bit on precision (3 mantissa bits, max 448), E5M2 on
  range (max 57344, but only 2 mantissa bits). Forward activations and weights need precision;
  gradients span a wider range, so FP8 recipes put them in E5M2.
* **special values**: E5M2 is IEEE-like (Inf and NaN). E4M3 "fn" ("finite, NaN") has no Inf
  and only one NaN pattern per sign (``S.1111.111``), which buys the top binade back (max 448
  instead of 240). FP6/FP4 and INT8 have no special values at all: in the MX formats a NaN is
  carried by the block's shared scale (E8M0 ``0xFF``).
* **the scale**: an element format alone covers a narrow range, so every scheme pairs it with a
  scale per tensor, row, tile or block. More scales track the data better and cost memory and
  a more complex GEMM epilogue.

``ElementFormat`` describes one element encoding; ``Format`` is the user-facing name of a
scaled scheme (element format + how scales are shared). ``info()`` feeds ``anyware formats
info``.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class Format(StrEnum):
    """Quantisation schemes accepted by ``quantize`` / ``dequantize`` / ``fake_quantize``."""

    FP8_E4M3 = "fp8_e4m3"
    FP8_E5M2 = "fp8_e5m2"
    MXFP8_E4M3 = "mxfp8_e4m3"
    MXFP8_E5M2 = "mxfp8_e5m2"
    MXFP6_E3M2 = "mxfp6_e3m2"
    MXFP6_E2M3 = "mxfp6_e2m3"
    MXFP4_E2M1 = "mxfp4_e2m1"
    MXINT8 = "mxint8"
    INT4 = "int4"
    INT8 = "int8"


class Granularity(StrEnum):
    """How FP8 scales are shared (the scale block over the last two dimensions)."""

    TENSOR = "tensor"
    ROW = "row"
    BLOCK1X128 = "block1x128"
    BLOCK128X128 = "block128x128"


class ScaleRounding(StrEnum):
    """How an MX block's E8M0 scale is rounded (see ``anyware.formats.mx``)."""

    FLOOR = "floor"
    RCEIL = "rceil"


@dataclass(frozen=True, slots=True, kw_only=True)
class ElementFormat:
    """One element encoding: a minifloat (``integer=False``) or a two's-complement integer."""

    name: str
    """Short name, e.g. ``e4m3``."""
    ebits: int
    """Exponent bits (0 for integers)."""
    mbits: int
    """Mantissa bits (for integers: value bits excluding the sign)."""
    bias: int = 0
    """Exponent bias."""
    has_inf: bool = False
    """Whether ``S.11..1.00..0`` encodes ±Inf (IEEE style)."""
    has_nan: bool = False
    """Whether the format has NaN encodings."""
    max_value: float
    """Largest finite magnitude."""
    integer: bool = False
    """Two's-complement integer codes (``max_value`` is the largest code times ``int_scale``)."""
    int_scale: float = 1.0
    """Integers only: value of one code step (MXINT8 uses 2^-6)."""

    def __post_init__(self) -> None:
        if self.ebits < 0 or self.mbits < 1 or self.bits > 8:
            raise ValueError(f"ElementFormat {self.name}: bad widths e{self.ebits} m{self.mbits}")
        if self.integer and self.ebits:
            raise ValueError(f"ElementFormat {self.name}: integers have no exponent bits")

    @property
    def bits(self) -> int:
        return 1 + self.ebits + self.mbits

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal (``1 - bias``)."""
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Exponent of the largest normal binade (the MX spec's ``emax_elem``)."""
        if self.integer and self.int_scale < 1:
            return 0  # MXINT8: codes are k·2^-6, the spec's emax_elem is 0
        return math.floor(math.log2(self.max_value))

    @property
    def min_normal(self) -> float:
        return self.int_scale if self.integer else 2.0**self.emin

    @property
    def min_subnormal(self) -> float:
        return self.int_scale if self.integer else 2.0 ** (self.emin - self.mbits)

    @property
    def max_code(self) -> int:
        """Largest positive code whose value is finite (sign bit clear)."""
        if self.integer:
            return round(self.max_value / self.int_scale)
        return _encode_positive_normal(self, self.max_value)

    @property
    def nan_code(self) -> int | None:
        """Positive NaN code (``0x7F`` for both FP8 formats), or None."""
        if not self.has_nan:
            return None
        return (1 << (self.ebits + self.mbits)) - 1

    @property
    def inf_code(self) -> int | None:
        if not self.has_inf:
            return None
        return ((1 << self.ebits) - 1) << self.mbits


def _encode_positive_normal(f: ElementFormat, v: float) -> int:
    e = math.floor(math.log2(v))
    m = round((v / 2.0**e - 1) * 2**f.mbits)
    return ((e + f.bias) << f.mbits) | m


E4M3 = ElementFormat(name="e4m3", ebits=4, mbits=3, bias=7, has_nan=True, max_value=448.0)
E5M2 = ElementFormat(
    name="e5m2", ebits=5, mbits=2, bias=15, has_inf=True, has_nan=True, max_value=57344.0
)
E3M2 = ElementFormat(name="e3m2", ebits=3, mbits=2, bias=3, max_value=28.0)
E2M3 = ElementFormat(name="e2m3", ebits=2, mbits=3, bias=1, max_value=7.5)
E2M1 = ElementFormat(name="e2m1", ebits=2, mbits=1, bias=1, max_value=6.0)
#: MXINT8: codes -128..127 times 2^-6 (the quantiser produces only -127..127, symmetric).
MX_INT8 = ElementFormat(
    name="int8", ebits=0, mbits=7, integer=True, max_value=127 / 64, int_scale=1 / 64
)
INT4_ELEM = ElementFormat(name="int4", ebits=0, mbits=3, integer=True, max_value=7.0)
INT8_ELEM = ElementFormat(name="int8", ebits=0, mbits=7, integer=True, max_value=127.0)

#: The element format of each scheme.
ELEMENT: dict[Format, ElementFormat] = {
    Format.FP8_E4M3: E4M3,
    Format.FP8_E5M2: E5M2,
    Format.MXFP8_E4M3: E4M3,
    Format.MXFP8_E5M2: E5M2,
    Format.MXFP6_E3M2: E3M2,
    Format.MXFP6_E2M3: E2M3,
    Format.MXFP4_E2M1: E2M1,
    Format.MXINT8: MX_INT8,
    Format.INT4: INT4_ELEM,
    Format.INT8: INT8_ELEM,
}

MX_FORMATS = frozenset(f for f in Format if f.value.startswith("mx"))
FP8_FORMATS = frozenset({Format.FP8_E4M3, Format.FP8_E5M2})
INT_FORMATS = frozenset({Format.INT4, Format.INT8})

#: Elements per MX block (OCP MX v1.0: 32 along the reduction dimension).
MX_BLOCK = 32
#: E8M0 scale: value 2^(code - 127); 0xFF is NaN.
E8M0_BIAS = 127
E8M0_NAN = 0xFF


def _closest(name: str, options: list[str]) -> str:
    near = difflib.get_close_matches(name, options, n=1)
    return f"; did you mean {near[0]!r}?" if near else ""


def parse_format(fmt: str | Format) -> Format:
    """``fmt`` as a ``Format``; an unknown name lists the known ones and the closest."""
    try:
        return Format(fmt)
    except ValueError:
        known = [f.value for f in Format]
        raise ValueError(
            f"unknown format {fmt!r}; known: {', '.join(known)}{_closest(str(fmt), known)}"
        ) from None


def parse_choice(kind: type[StrEnum], value: str, what: str) -> Any:
    try:
        return kind(value)
    except ValueError:
        known = [str(k.value) for k in kind]
        raise ValueError(
            f"unknown {what} {value!r}; known: {', '.join(known)}{_closest(str(value), known)}"
        ) from None


def info() -> list[dict[str, Any]]:
    """One row per scheme: bits, range, smallest normal/subnormal, precision, scale sharing."""
    rows: list[dict[str, Any]] = []
    for f in Format:
        el = ELEMENT[f]
        if f in FP8_FORMATS:
            scale = "fp32 per tensor | row | 1x128 | 128x128 (exact or power of two)"
        elif f in MX_FORMATS:
            scale = f"E8M0 per {MX_BLOCK} elements (floor | rceil)"
        else:
            scale = "fp32 per group (group_size along the last dim)"
        rows.append(
            {
                "format": f.value,
                "element": el.name,
                "bits": el.bits,
                "exponent_bits": el.ebits,
                "mantissa_bits": el.mbits,
                "max": el.max_value,
                "min_normal": el.min_normal,
                "min_subnormal": el.min_subnormal,
                # relative step between neighbouring values at the top of a binade (2^-M);
                # for integers, one code step relative to the largest value.
                "precision": (el.int_scale / el.max_value) if el.integer else 2.0**-el.mbits,
                "inf": el.has_inf,
                "nan": "per element"
                if el.has_nan
                else ("scale 0xFF" if f in MX_FORMATS else "scale NaN"),
                "scale": scale,
            }
        )
    return rows
