"""Scaled FP8: scale shapes per granularity, bit-exactness against torch's cast of x/s, pow2
scales, ragged blocks, special values and the SQNR floor."""

from __future__ import annotations

import math

import pytest
import torch

from anyware.formats import dequantize, fake_quantize, quantize
from anyware.testing.tolerances import SQNR_FLOOR_DB, sqnr_db

TORCH_DT = {"fp8_e4m3": torch.float8_e4m3fn, "fp8_e5m2": torch.float8_e5m2}
FMAX = {"fp8_e4m3": 448.0, "fp8_e5m2": 57344.0}


@pytest.mark.parametrize(
    ("granularity", "shape", "scale_shape"),
    [
        ("tensor", (40, 300), ()),
        ("row", (40, 300), (40, 1)),
        ("block1x128", (40, 300), (40, 3)),
        ("block128x128", (300, 260), (3, 3)),
        ("block1x128", (2, 5, 129), (2, 5, 2)),
    ],
)
def test_scale_shapes(
    granularity: str, shape: tuple[int, ...], scale_shape: tuple[int, ...]
) -> None:
    x = torch.randn(shape)
    q = quantize(x, "fp8_e4m3", granularity=granularity)
    assert tuple(q.scales.shape) == scale_shape
    assert tuple(q.codes.shape) == shape


@pytest.mark.parametrize("fmt", ["fp8_e4m3", "fp8_e5m2"])
@pytest.mark.parametrize("granularity", ["tensor", "row", "block1x128", "block128x128"])
def test_bit_exact_against_torch_cast_of_scaled_values(fmt: str, granularity: str) -> None:
    g = torch.Generator().manual_seed(3)
    x = torch.randn(200, 300, generator=g) * torch.exp2(
        torch.randint(-8, 8, (200, 1), generator=g).float()
    )
    q = quantize(x, fmt, granularity=granularity)
    if granularity == "tensor":
        s = q.scales.expand(x.shape)
        assert float(q.scales) == float(x.abs().max() / FMAX[fmt])
    else:
        bc = 300 if granularity == "row" else 128
        s = q.scales.repeat_interleave(bc, -1)[..., :300]
        if granularity == "block128x128":
            s = s.repeat_interleave(128, 0)[:200]
    theirs = (x / s).clamp(-FMAX[fmt], FMAX[fmt]).to(TORCH_DT[fmt])
    assert torch.equal(q.codes, theirs.view(torch.uint8))
    assert torch.equal(dequantize(q), theirs.float() * s)


def test_ragged_block_equals_zero_padding() -> None:
    x = torch.randn(130, 200)
    padded = torch.zeros(256, 256)
    padded[:130, :200] = x
    for g in ("block1x128", "block128x128"):
        small = fake_quantize(x, "fp8_e4m3", granularity=g)
        big = fake_quantize(padded, "fp8_e4m3", granularity=g)
        assert torch.equal(small, big[:130, :200]), g


def test_pow2_scales_are_powers_of_two_and_never_overflow() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 256, generator=g) * 37.0
    x[0, 0] = 448.0 * 4  # amax exactly a power of two times max: ratio 4 → scale 4, no rounding up
    q = quantize(x, "fp8_e4m3", granularity="row", pow2_scale=True)
    m, _ = torch.frexp(q.scales)
    assert torch.all(m == 0.5), "pow2 scales must be exact powers of two"
    assert float(q.scales[0, 0]) == 4.0
    amax = x.abs().amax(-1, keepdim=True)
    assert torch.all(amax / q.scales <= 448.0)
    assert torch.all(amax / (q.scales / 2) > 448.0), "the scale must be the smallest such power"


def test_all_zero_and_special_values() -> None:
    x = torch.zeros(4, 256)
    q = quantize(x, "fp8_e4m3", granularity="block1x128")
    assert torch.equal(q.scales, torch.ones(4, 2)) and not q.codes.any()
    y = torch.tensor([[1.0, float("nan"), float("inf"), -float("inf"), 2.0]])
    e4 = fake_quantize(y, "fp8_e4m3", granularity="row")
    # scale from the finite amax (2): NaN stays NaN, Inf saturates in E4M3fn, stays Inf in E5M2
    assert math.isnan(float(e4[0, 1])) and e4[0, 2] == 2.0 and e4[0, 3] == -2.0 and e4[0, 4] == 2.0
    e5 = fake_quantize(y, "fp8_e5m2", granularity="row")
    assert e5[0, 2] == float("inf") and e5[0, 3] == -float("inf") and math.isnan(float(e5[0, 1]))


def test_explicit_scale_saturates_values_above_it() -> None:
    x = torch.tensor([1.0, 3.0, -5.0])
    y = fake_quantize(x, "fp8_e4m3", scale=torch.tensor(2.0 / 448))
    assert y.tolist() == [1.0, 2.0, -2.0]


@pytest.mark.parametrize("fmt", ["fp8_e4m3", "fp8_e5m2"])
@pytest.mark.parametrize("granularity", ["tensor", "row", "block1x128", "block128x128"])
@pytest.mark.parametrize("dist", ["gaussian", "heavy"])
def test_sqnr_floor(fmt: str, granularity: str, dist: str) -> None:
    from anyware.formats.evidence import heavy_tailed

    g = torch.Generator().manual_seed(5)
    x = (
        torch.randn(128, 256, generator=g)
        if dist == "gaussian"
        else heavy_tailed(128 * 256, seed=5).reshape(128, 256)
    )
    got = sqnr_db(x, fake_quantize(x, fmt, granularity=granularity))
    assert got >= SQNR_FLOOR_DB[fmt], f"{fmt} {granularity} {dist}: {got:.1f} dB"


def test_dtype_and_shape_preserved() -> None:
    x = torch.randn(3, 4, 130, dtype=torch.bfloat16)
    y = fake_quantize(x, "fp8_e4m3", granularity="block1x128")
    assert y.dtype == torch.bfloat16 and y.shape == x.shape
    with pytest.raises(ValueError, match="at least 2 dims"):
        fake_quantize(torch.randn(10), "fp8_e4m3", granularity="block128x128")
