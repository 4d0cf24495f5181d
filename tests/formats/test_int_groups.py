"""INT4 / INT8 per-group symmetric quantisation."""

from __future__ import annotations

import torch

from anyware.formats import dequantize, fake_quantize, quantize


def test_int4_golden_group() -> None:
    x = torch.tensor([[7.0, -7.0, 3.5, 0.5, 1.5, 2.5, -0.4, 0.0]])  # amax 7 → scale 1
    q = quantize(x, "int4", group_size=8)
    assert q.scales.tolist() == [[1.0]]
    # round half to even: 3.5 → 4, 0.5 → 0, 1.5 → 2, 2.5 → 2; -7 is 0x9 as a two's-complement nibble
    assert dequantize(q).tolist() == [[7.0, -7.0, 4.0, 0.0, 2.0, 2.0, -0.0, 0.0]]
    assert q.codes.tolist() == [[0x97, 0x04, 0x22, 0x00]]


def test_groups_and_ragged_tail() -> None:
    x = torch.randn(6, 200)
    q = quantize(x, "int4", group_size=64)
    assert q.scales.shape == (6, 4) and q.codes.shape == (6, 100)
    padded = torch.cat([x, torch.zeros(6, 56)], dim=1)
    assert torch.equal(
        fake_quantize(x, "int4", group_size=64),
        fake_quantize(padded, "int4", group_size=64)[:, :200],
    )
    assert quantize(x, "int8").scales.shape == (6, 1)  # int8 default: one group per row


def test_codes_stay_in_symmetric_range_and_nan_poisons_group() -> None:
    x = torch.randn(4, 128) * 100
    y = fake_quantize(x, "int4", group_size=32)
    s = x.reshape(4, 4, 32).abs().amax(-1, keepdim=True) / 7
    steps = (y.reshape(4, 4, 32) / s).round()
    assert steps.abs().max() <= 7
    x[1, 5] = float("nan")
    y = fake_quantize(x, "int4", group_size=32)
    assert (
        torch.isnan(y[1, :32]).all()
        and not torch.isnan(y[1, 32:]).any()
        and not torch.isnan(y[0]).any()
    )


def test_all_zero_group() -> None:
    q = quantize(torch.zeros(2, 16), "int4", group_size=8)
    assert torch.equal(q.scales, torch.ones(2, 2)) and not dequantize(q).any()
