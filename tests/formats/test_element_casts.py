"""Element casts: bit-exact against torch's FP8 casts and against hand-computed golden codes."""

from __future__ import annotations

import pytest
import torch

from anyware.formats.element import code_values, decode, encode, encode_reference
from anyware.formats.spec import E2M1, E2M3, E3M2, E4M3, E5M2, ElementFormat

TORCH_DT = {"e4m3": torch.float8_e4m3fn, "e5m2": torch.float8_e5m2}
NAN, INF = float("nan"), float("inf")


def _first_mismatch(a: torch.Tensor, b: torch.Tensor, x: torch.Tensor) -> str:
    bad = (a != b).nonzero().flatten()
    if not len(bad):
        return ""
    i = int(bad[0])
    return f"{len(bad)} mismatches; first at {i}: x={float(x[i])!r} ours={int(a[i]):#04x} expected={int(b[i]):#04x}"


def _hard_inputs(fmt: ElementFormat) -> torch.Tensor:
    """Every value of the format, every midpoint between neighbours, and one fp32 ulp around
    each midpoint: the inputs where a rounding bug shows."""
    vals = code_values(fmt).double()
    vals = vals[torch.isfinite(vals)].unique()
    mids = (vals[1:] + vals[:-1]) / 2
    top = torch.tensor([fmt.max_value * 1.0625, fmt.max_value * 1.07, fmt.max_value * 2, 1e30])
    base = torch.cat([vals, mids, top, -top]).float()
    up = torch.nextafter(base, torch.tensor(INF))
    down = torch.nextafter(base, torch.tensor(-INF))
    return torch.cat([base, up, down, torch.tensor([INF, -INF, NAN, -NAN, 0.0, -0.0])])


@pytest.mark.parametrize("fmt", [E4M3, E5M2], ids=lambda f: f.name)
def test_encode_matches_torch_on_hard_values_and_random_bits(fmt: ElementFormat) -> None:
    g = torch.Generator().manual_seed(1)
    rand = torch.randint(-(2**31), 2**31 - 1, (200_000,), generator=g, dtype=torch.int64)
    scaled = torch.randn(100_000, generator=g) * torch.exp2(
        torch.randint(-24, 18, (100_000,), generator=g).float()
    )
    x = torch.cat([_hard_inputs(fmt), rand.to(torch.int32).view(torch.float32), scaled])
    theirs = x.to(TORCH_DT[fmt.name]).view(torch.uint8)
    ours = encode_reference(x, fmt, saturate=False)
    assert torch.equal(ours, theirs), _first_mismatch(ours, theirs, x)
    assert torch.equal(encode(x, fmt, saturate=False), theirs)


@pytest.mark.parametrize("fmt", [E4M3, E5M2], ids=lambda f: f.name)
def test_decode_table_matches_torch(fmt: ElementFormat) -> None:
    codes = torch.arange(256, dtype=torch.uint8)
    theirs = codes.view(TORCH_DT[fmt.name]).float()
    ours = code_values(fmt)
    assert torch.equal(ours.isnan(), theirs.isnan())
    assert torch.equal(ours.nan_to_num(0.0), theirs.nan_to_num(0.0))
    assert torch.equal(decode(codes, fmt).nan_to_num(0.0), theirs.nan_to_num(0.0))


# (input, expected code) hand-computed from the format definitions.
GOLDEN = {
    "e4m3": [
        (1.0625, 0x38),  # tie 1.0 | 1.125 → even mantissa 000
        (1.1875, 0x3A),  # tie 1.125 | 1.25 → 1.25 (mantissa 010)
        (1.9375, 0x40),  # tie 1.875 | 2.0 → 2.0: carry into the exponent
        (448.0, 0x7E),
        (464.0, 0x7E),  # tie 448 | (480 is NaN's pattern) → 448
        (465.0, 0x7E),  # above the tie: E4M3fn has no Inf, saturates like torch
        (1e6, 0x7E),
        (INF, 0x7E),
        (-INF, 0xFE),
        (NAN, 0x7F),
        (-0.0, 0x80),
        (2.0**-9, 0x01),  # smallest subnormal
        (2.0**-10, 0x00),  # tie 0 | 2^-9 → 0
        (3 * 2.0**-10, 0x02),  # tie 1 | 2 quanta → 2
        (7.5 * 2.0**-9, 0x08),  # tie 7 quanta | smallest normal → normal (carry)
        (2.0**-6, 0x08),  # smallest normal
        (-240.0, 0xF7),
    ],
    "e5m2": [
        (1.125, 0x3C),  # tie 1.0 | 1.25 → 1.0
        (1.375, 0x3E),  # tie 1.25 | 1.5 → 1.5
        (1.875, 0x40),  # tie 1.75 | 2.0 → 2.0 (carry)
        (57344.0, 0x7B),
        (61439.0, 0x7B),
        (61440.0, 0x7C),  # tie max | Inf → Inf (IEEE overflow)
        (INF, 0x7C),
        (-INF, 0xFC),
        (NAN, 0x7F),
        (2.0**-16, 0x01),
        (2.0**-17, 0x00),
        (2.0**-14, 0x04),  # smallest normal
    ],
    "e3m2": [
        (28.0, 0x1F),
        (30.0, 0x1F),
        (100.0, 0x1F),
        (0.0625, 0x01),
        (0.03125, 0x00),
        (1.125, 0x0C),
        (1.375, 0x0E),
        (-1.0, 0x2C),
        (INF, 0x1F),
        (NAN, 0x00),
    ],
    "e2m3": [
        (7.5, 0x1F),
        (8.0, 0x1F),
        (0.125, 0x01),
        (0.0625, 0x00),
        (0.1875, 0x02),
        (1.0625, 0x08),
        (1.9375, 0x10),
        (-7.5, 0x3F),
    ],
    "e2m1": [
        (0.25, 0x0),
        (0.75, 0x2),
        (1.25, 0x2),
        (1.75, 0x4),
        (2.5, 0x4),
        (3.5, 0x6),
        (5.0, 0x6),
        (5.5, 0x7),
        (7.0, 0x7),
        (100.0, 0x7),
        (-6.0, 0xF),
        (-0.5, 0x9),
        (INF, 0x7),
        (-INF, 0xF),
        (NAN, 0x0),
    ],
}
FORMATS = {f.name: f for f in (E4M3, E5M2, E3M2, E2M3, E2M1)}


@pytest.mark.parametrize("name", list(GOLDEN))
def test_golden_codes(name: str) -> None:
    fmt = FORMATS[name]
    x = torch.tensor([v for v, _ in GOLDEN[name]], dtype=torch.float32)
    want = torch.tensor([c for _, c in GOLDEN[name]], dtype=torch.uint8)
    got = encode_reference(x, fmt, saturate=False)
    assert torch.equal(got, want), _first_mismatch(got, want, x)


def test_e5m2_saturating_mode_clamps_finite_overflow_only() -> None:
    x = torch.tensor([61440.0, 1e9, INF, -1e9])
    got = encode_reference(x, E5M2, saturate=True)
    assert got.tolist() == [0x7B, 0x7B, 0x7C, 0xFB]


def test_fp4_and_fp6_tables() -> None:
    assert code_values(E2M1)[:8].tolist() == [0, 0.5, 1, 1.5, 2, 3, 4, 6]
    assert float(code_values(E3M2)[0x1F]) == 28.0
    assert float(code_values(E2M3)[0x1F]) == 7.5
    assert float(code_values(E3M2)[1]) == E3M2.min_subnormal == 2.0**-4


@pytest.mark.parametrize("fmt", [E3M2, E2M3, E2M1], ids=lambda f: f.name)
def test_small_formats_round_trip_every_value(fmt: ElementFormat) -> None:
    codes = torch.arange(1 << fmt.bits, dtype=torch.uint8)
    vals = decode(codes, fmt)
    back = encode_reference(vals, fmt)
    zero_neg = (vals == 0) & torch.signbit(vals)
    assert torch.equal(back[~zero_neg], codes[~zero_neg])


def test_decode_rejects_non_uint8() -> None:
    with pytest.raises(TypeError, match="uint8"):
        decode(torch.zeros(3, dtype=torch.int32), E4M3)
