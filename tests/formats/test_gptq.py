"""GPTQ: beats round-to-nearest on calibration data, equals it for a diagonal Hessian, blocking
matches the unblocked loop, storage round-trips, the PTQ option, clear errors."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch import nn

from anyware.formats import dequantize, fake_quantize, ptq, quantize, quantize_tensor
from anyware.formats.gptq import gptq_quantize, gptq_reference, hessian
from anyware.formats.hadamard import hadamard_transform
from anyware.formats.ptq import QuantLinear, WeightRounding


def _layer(k: int = 96, out: int = 40, n: int = 400, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(out, k, generator=g)
    # correlated inputs with uneven channel scales: what makes error feedback pay
    mix = torch.randn(k, k, generator=g) / k**0.5 + torch.eye(k)
    x = (torch.randn(n, k, generator=g) @ mix) * (0.2 + 3 * torch.rand(k, generator=g))
    return w, x


def _out_err(wq: torch.Tensor, w: torch.Tensor, x: torch.Tensor) -> float:
    return float(((wq - w) @ x.T).pow(2).sum())


@pytest.mark.parametrize(
    ("fmt", "group_size", "act_order"),
    [("int4", None, False), ("int4", 32, False), ("int4", 32, True), ("int4", 40, False),
     ("int8", None, False), ("int8", None, True)],
)  # fmt: skip
def test_gptq_output_error_below_round_to_nearest(
    fmt: str, group_size: int | None, act_order: bool
) -> None:
    w, x = _layer()
    q = gptq_quantize(w, hessian(x), fmt, group_size=group_size, act_order=act_order)
    rtn = fake_quantize(w, fmt, group_size=group_size)
    # measured: 0.70-0.83 of RTN's error; 0.9 leaves room for the seed, not for a broken update
    assert _out_err(dequantize(q), w, x) < 0.9 * _out_err(rtn, w, x)


@pytest.mark.parametrize("group_size", [None, 16, 24, 128])
def test_diagonal_hessian_gives_round_to_nearest_exactly(group_size: int | None) -> None:
    w, _ = _layer(k=64)
    h = torch.diag(torch.rand(64, generator=torch.Generator().manual_seed(1)) + 0.1)
    for act_order in (False, True):
        q = gptq_quantize(w, h, "int4", group_size=group_size, act_order=act_order)
        ref = quantize_tensor(w, "int4", group_size=group_size)
        assert torch.equal(q.codes, ref.codes) and torch.equal(q.scales, ref.scales)
        assert q.packed and q.group_size == ref.group_size and q.shape == ref.shape


@pytest.mark.parametrize(
    ("k", "group_size", "block_size", "act_order"),
    [(100, 7, 64, False), (100, 32, 48, False), (100, None, 40, False), (100, 20, 32, True),
     (33, 128, 128, False), (64, 64, 1, False)],
)  # fmt: skip
def test_blocked_equals_unblocked_loop(
    k: int, group_size: int | None, block_size: int, act_order: bool
) -> None:
    # groups that straddle blocks must see the block's pending updates (k=100, g=7, B=64)
    w, x = _layer(k=k, out=24)
    h = hessian(x)
    q = gptq_quantize(w, h, "int4", group_size=group_size, block_size=block_size,
                      act_order=act_order)  # fmt: skip
    r = gptq_reference(w, h, "int4", group_size=group_size, act_order=act_order)
    assert torch.equal(q.codes, r.codes) and torch.equal(q.scales, r.scales)


def test_storage_edge_cases() -> None:
    # odd K (a padded nibble), a ragged last group, a dead input channel, one output row
    w, x = _layer(k=37, out=1)
    x[:, 4] = 0.0
    q = gptq_quantize(w, hessian(x), "int4", group_size=16)
    assert q.codes.shape == (1, 19) and q.scales.shape == (1, 3)
    d = dequantize(q)
    assert d.shape == w.shape and d[0, 4] == 0.0  # the dead channel's weight is dropped
    # every value is an integer code in -7..7 times its group's scale
    full = q.scales.repeat_interleave(16, dim=1)[:, :37]
    codes = (d / full).round()
    assert torch.equal(codes * full, d) and codes.abs().max() <= 7
    # fewer tokens than channels: rank-deficient H, dampening keeps it factorisable
    w2, x2 = _layer(k=64, out=8, n=10)
    assert torch.isfinite(dequantize(gptq_quantize(w2, hessian(x2), "int4"))).all()


def test_bad_input_errors() -> None:
    w, x = _layer(k=32, out=4)
    h = hessian(x)
    with pytest.raises(ValueError, match=r"INT weights .* not mxfp4_e2m1"):
        gptq_quantize(w, h, "mxfp4_e2m1")
    with pytest.raises(ValueError, match="unknown format 'int5'"):
        gptq_quantize(w, h, "int5")
    with pytest.raises(ValueError, match=r"must be \(32, 32\)"):
        gptq_quantize(w, h[:8, :8])
    with pytest.raises(ValueError, match="2-D floating-point"):
        gptq_quantize(w[0], h)
    bad = w.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="weight contains NaN"):
        gptq_quantize(bad, h)
    with pytest.raises(ValueError, match="block_size must be positive"):
        gptq_quantize(w, h, block_size=0)
    with pytest.raises(ValueError, match="damp"):
        gptq_quantize(w, h, damp=float("nan"))
    with pytest.raises(ValueError, match="group_size must be positive"):
        gptq_quantize(w, h, group_size=0)
    with pytest.raises(ValueError, match="not positive definite"):
        gptq_quantize(w, -torch.eye(32, dtype=torch.float64))
    with pytest.raises(ValueError, match="NaN or Inf"):
        hessian(torch.full((3, 4), float("inf")))


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(64, 96)
        self.b = nn.Linear(96, 64)
        self.head = nn.Linear(64, 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.b(torch.relu(self.a(x))))


def test_ptq_gptq_option_uses_each_layers_hessian() -> None:
    torch.manual_seed(0)
    net = _Net()
    _, x = _layer(k=64, n=256, seed=2)
    for rotate in (False, True):  # the online rotation's layers see rotated inputs
        m = _Net()
        m.load_state_dict(net.state_dict())
        report = quantize(m, "w4a16", rotate=rotate, calibration=[x], weights="gptq")
        assert report.weights is WeightRounding.GPTQ and report.calibrated
        assert isinstance(m.a, QuantLinear) and isinstance(m.b, QuantLinear)
        xa, wa = x, net.a.weight.detach()
        if m.a.signs is not None:
            xa = hadamard_transform(x, signs=m.a.signs)
            wa = hadamard_transform(wa, signs=m.a.signs)
        want = gptq_quantize(wa, hessian(xa), "int4", group_size=128)
        assert torch.equal(m.a.qweight.codes, want.codes)
        assert torch.equal(m.a.weight, dequantize(want, dtype=torch.float32))
        rtn = fake_quantize(wa, "int4", group_size=128)
        assert _out_err(m.a.weight, wa, xa) < _out_err(rtn, wa, xa)


@pytest.mark.parametrize("sequential", [True, False])
def test_sequential_gptq_calibrates_on_quantised_earlier_layers(sequential: bool) -> None:
    torch.manual_seed(1)
    net = _Net()
    _, x = _layer(k=64, n=256, seed=4)
    m = _Net()
    m.load_state_dict(net.state_dict())
    quantize(m, "w4a4", calibration=[x], weights="gptq", sequential=sequential)
    assert isinstance(m.a, QuantLinear) and isinstance(m.b, QuantLinear)
    # b's input: a's output with quantised weights (sequential) or the original ones, and with
    # full-precision activations either way (GPTQ calibrates weights only)
    a_w = m.a.weight if sequential else net.a.weight.detach()
    xb = torch.relu(x @ a_w.T + net.a.bias.detach())
    want = gptq_quantize(net.b.weight.detach(), hessian(xb), "int4", group_size=128)
    assert torch.equal(m.b.qweight.codes, want.codes)
    # activations are quantised again once every layer is in
    assert m.a.quantize_acts and m.b.quantize_acts
    assert torch.equal(m.a(x), fake_quantize(x, "int4", group_size=None) @ m.a.weight.T + m.a.bias)


def test_ptq_gptq_option_errors_leave_model_untouched(monkeypatch: pytest.MonkeyPatch) -> None:
    m = _Net()
    with pytest.raises(ValueError, match="needs calibration= inputs"):
        quantize(m, "w4a4", weights="gptq")
    with pytest.raises(ValueError, match="rounds INT weights, not mxfp8"):
        quantize(m, "mxfp8", weights="gptq", calibration=[torch.randn(4, 64)])
    with pytest.raises(ValueError, match="did you mean 'gptq'"):
        quantize(m, "w4a4", weights="gtpq", calibration=[torch.randn(4, 64)])
    with pytest.raises(ValueError, match="act_order applies to weights='gptq'"):
        quantize(m, "w4a4", act_order=True)
    with pytest.raises(ValueError, match="sequential=False applies to weights='gptq'"):
        quantize(m, "w4a4", sequential=False)
    # a failure half-way through sequential GPTQ puts the swapped linears back
    with pytest.raises(ValueError, match="NaN or Inf"):
        quantize(m, "w4a4", weights="gptq", calibration=[torch.full((4, 64), float("inf"))])
    assert type(m.a) is nn.Linear and type(m.b) is nn.Linear
    calls: list[str] = []

    def fail_second(*args: Any, **kwargs: Any) -> Any:
        calls.append("x")
        if len(calls) == 2:  # b fails after a has been swapped in
            raise ValueError("second layer failed")
        return gptq_quantize(*args, **kwargs)

    monkeypatch.setattr(ptq, "gptq_quantize", fail_second)
    with pytest.raises(ValueError, match="second layer failed"):
        quantize(m, "w4a4", weights="gptq", calibration=[torch.randn(8, 64)])
    assert len(calls) == 2 and type(m.a) is nn.Linear and type(m.b) is nn.Linear
