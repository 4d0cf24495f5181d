"""MX: E8M0 scales with FLOOR and RCEIL, NaN/zero blocks, ragged K, FP4 nibble order, MXINT8."""

from __future__ import annotations

import math

import pytest
import torch

from anyware.formats import dequantize, fake_quantize, quantize
from anyware.formats.mx import e8m0_value, pack_fp4, unpack_fp4
from anyware.testing.tolerances import sqnr_db


def _block(amax: float) -> torch.Tensor:
    x = torch.linspace(-1, 1, 32)
    x[7] = amax
    return x.reshape(1, 32)


def test_floor_overflows_at_500_and_rceil_does_not() -> None:
    x = _block(500.0)
    fl = quantize(x, "mxfp8_e4m3", scale_rounding="floor")
    rc = quantize(x, "mxfp8_e4m3", scale_rounding="rceil")
    # FLOOR: 2^(floor(log2 500) - 8) = 2^0 → 500 saturates to 448
    assert int(fl.scales[0, 0]) == 127
    assert float(dequantize(fl)[0, 7]) == 448.0
    # RCEIL: 2^ceil(log2(500/448)) = 2^1 → 250 → rounds to 256 (quantum 16) → 512
    assert int(rc.scales[0, 0]) == 128
    assert float(dequantize(rc)[0, 7]) == 512.0


@pytest.mark.parametrize(
    ("amax", "floor_exp", "rceil_exp"),
    [
        (448.0, 0, 0),
        (449.0, 0, 1),
        (256.0, 0, 0),
        (255.9, -1, 0),
        (896.0, 1, 1),
        (896.5, 1, 2),
        (1.0, -8, -8),
    ],
)
def test_scale_exponents(amax: float, floor_exp: int, rceil_exp: int) -> None:
    x = _block(amax)
    for rounding, want in (("floor", floor_exp), ("rceil", rceil_exp)):
        q = quantize(x, "mxfp8_e4m3", scale_rounding=rounding)
        assert int(q.scales[0, 0]) - 127 == want, (amax, rounding)


def test_rceil_is_exact_where_fp32_division_is_not() -> None:
    # amax = 448·(1 + 2^-23): the fp32 quotient amax/448 rounds to exactly 1.0, whose ceil-log2 is
    # 0; the exact ratio is above 1, so RCEIL must pick 2^1 and never saturate.
    amax = torch.nextafter(torch.tensor(448.0), torch.tensor(1e9))
    assert float(amax / 448.0) == 1.0 or float(amax / 448.0) > 1.0
    q = quantize(_block(float(amax)), "mxfp8_e4m3", scale_rounding="rceil")
    assert int(q.scales[0, 0]) == 128


def test_zero_block_nan_block_and_clamped_exponents() -> None:
    x = torch.zeros(1, 96)
    x[0, 40] = float("nan")
    x[0, 64:] = 2.0**-140  # floor(log2) - 8 = -148: clamped to E8M0's -127
    q = quantize(x, "mxfp8_e4m3")
    assert q.scales.tolist() == [[0, 255, 0]]
    y = dequantize(q)
    assert not y[0, :32].any()
    assert torch.isnan(y[0, 32:64]).all()
    assert float(e8m0_value(torch.tensor([255], dtype=torch.uint8))[0]) != float(
        e8m0_value(torch.tensor([255], dtype=torch.uint8))[0]
    )
    assert float(e8m0_value(torch.tensor([0], dtype=torch.uint8))[0]) == 2.0**-127


def test_inf_poisons_only_its_block() -> None:
    x = torch.ones(1, 64)
    x[0, 3] = float("inf")
    y = fake_quantize(x, "mxfp4_e2m1")
    assert torch.isnan(y[0, :32]).all() and torch.equal(y[0, 32:], torch.ones(32))


def test_ragged_k_equals_zero_padding() -> None:
    x = torch.randn(5, 45)
    big = torch.cat([x, torch.zeros(5, 19)], dim=1)
    for fmt in ("mxfp8_e4m3", "mxfp6_e3m2", "mxfp4_e2m1", "mxint8"):
        assert torch.equal(fake_quantize(x, fmt), fake_quantize(big, fmt)[:, :45]), fmt
        assert quantize(x, fmt).scales.shape == (5, 2)


def test_fp4_nibble_order() -> None:
    codes = torch.tensor([[0x1, 0x2, 0x3, 0xF, 0x7]], dtype=torch.uint8)
    packed = pack_fp4(codes)
    assert packed.tolist() == [[0x21, 0xF3, 0x07]]  # element 2i low nibble, 2i+1 high nibble
    assert torch.equal(unpack_fp4(packed, 5), codes)
    x = torch.tensor([[0.5, 1.0, 6.0, -0.5]])  # amax 6 → FLOOR scale 2^(2-2) = 1
    q = quantize(x, "mxfp4_e2m1")
    assert q.packed and q.codes.tolist() == [[0x21, 0x97]]


def test_mx_elements_on_gaussian_data() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 256, generator=g)
    floors = {
        "mxfp8_e4m3": 28,
        "mxfp8_e5m2": 22,
        "mxfp6_e2m3": 25,
        "mxfp6_e3m2": 20,
        "mxfp4_e2m1": 12,
        "mxint8": 38,
    }
    for fmt, floor in floors.items():
        for rounding in ("floor", "rceil"):
            got = sqnr_db(x, fake_quantize(x, fmt, scale_rounding=rounding))
            assert got > floor, (fmt, rounding, got)


def test_mxint8_codes_are_symmetric_twos_complement() -> None:
    x = torch.tensor([[1.0, -1.0, 0.5] + [0.0] * 29])  # amax 1 → scale 2^0; codes k/64
    q = quantize(x, "mxint8")
    assert q.codes[0, :3].tolist() == [64, 192, 32]
    y = fake_quantize(torch.tensor([[1.999, -2.5] + [0.0] * 30]), "mxint8")
    assert math.isclose(float(y[0, 1]), -2.5, rel_tol=0.01)
