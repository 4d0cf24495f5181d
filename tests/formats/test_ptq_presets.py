"""PTQ presets: what each swaps, rotation invariance, the report, errors."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from anyware.formats import fake_quantize, quantize
from anyware.formats.ptq import Preset, QuantLinear
from anyware.testing.tolerances import assert_close, sqnr_db


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.a = nn.Linear(64, 128)
        self.b = nn.Linear(128, 64)
        self.head = nn.Linear(64, 8)
        self.emb = nn.Embedding(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.b(torch.relu(self.a(x))))


def test_presets_swap_linears_and_report() -> None:
    for preset in Preset:
        m = Net()
        report = quantize(m, preset.value)
        assert report.converted == ["a", "b"] and report.preset is preset
        assert {n for n, _, _ in report.skipped} == {"head", "emb"}
        assert isinstance(m.a, QuantLinear) and type(m.head) is nn.Linear


def test_weights_are_stored_in_the_preset_format() -> None:
    m = Net()
    w = m.a.weight.detach().clone()
    quantize(m, "w4a16", group_size=32)
    assert isinstance(m.a, QuantLinear)
    assert m.a.qweight.fmt.value == "int4" and m.a.qweight.scales.shape == (128, 2)
    assert torch.equal(m.a.weight, fake_quantize(w, "int4", group_size=32))
    x = torch.randn(5, 64)
    assert torch.equal(m.a(x), x @ m.a.weight.T + m.a.bias)  # w4a16: activations untouched


def test_w4a4_quantises_activations_per_token() -> None:
    m = Net()
    quantize(m, "w4a4")
    x = torch.randn(5, 64)
    want = fake_quantize(x, "int4", group_size=None) @ m.a.weight.T + m.a.bias
    assert torch.equal(m.a(x), want)


def test_rotation_is_exact_without_quantisation_and_helps_outliers() -> None:
    torch.manual_seed(0)
    lin = nn.Linear(64, 32)
    x = torch.randn(256, 64)
    x[:, 3] *= 50  # an outlier channel
    ref = lin(x).detach()
    outs = {}
    for rotate in (False, True):
        m = nn.Sequential(copy.deepcopy(lin))
        quantize(m, "w4a4", rotate=rotate, group_size=64)
        outs[rotate] = m(x).detach()
    assert sqnr_db(ref, outs[True]) > sqnr_db(ref, outs[False]) + 1  # measured +1.5 dB
    # the rotation itself is exact: fold + online transform with quantisation switched off
    m = nn.Sequential(copy.deepcopy(lin))
    quantize(m, "w8a8", rotate=True)
    q = m[0]
    assert isinstance(q, QuantLinear) and q.signs is not None
    from anyware.formats.hadamard import hadamard_transform

    w_rot = hadamard_transform(lin.weight.detach().double(), signs=q.signs)
    assert_close(
        hadamard_transform(x.double(), signs=q.signs) @ w_rot.T + lin.bias.double(),
        (x @ lin.weight.T + lin.bias).double().detach(),
        dtype="float32",
    )


def test_bad_preset_leaves_model_untouched() -> None:
    m = Net()
    with pytest.raises(ValueError, match="did you mean 'w4a4'"):
        quantize(m, "w4a3")
    assert type(m.a) is nn.Linear
    with pytest.raises(ValueError, match="group_size"):
        quantize(m, "w4a16", group_size=-1)


def test_calibrated_clip_search_never_loses_to_round_to_nearest() -> None:
    from anyware.formats.ptq import search_weight_clip

    torch.manual_seed(3)
    w = torch.randn(48, 64)
    w[:, 5] *= 8  # a heavy column: clipping it costs output error, clipping the rest gains
    x = torch.randn(300, 64)
    clipped = search_weight_clip(w, x, "int4", {"group_size": None})
    rtn = fake_quantize(w, "int4", group_size=None)
    err = ((fake_quantize(clipped, "int4", group_size=None) - w) @ x.T).pow(2).sum(-1)
    err_rtn = ((rtn - w) @ x.T).pow(2).sum(-1)
    assert (err <= err_rtn).all() and err.sum() < err_rtn.sum()  # 1.0 is in the grid


def test_act_clip_and_calibration_options() -> None:
    m = Net()
    x = torch.randn(5, 64)
    report = quantize(m, "w4a4", act_clip=0.5, calibration=[torch.randn(32, 64)])
    assert report.calibrated
    a = x.abs().amax(-1, keepdim=True) * 0.5
    want = fake_quantize(x.clamp(-a, a), "int4", group_size=None) @ m.a.weight.T + m.a.bias
    assert torch.equal(m.a(x), want)
    with pytest.raises(ValueError, match="act_clip applies to INT activations"):
        quantize(Net(), "w4a16", act_clip=0.9)
    with pytest.raises(ValueError, match="act_clip must be in"):
        quantize(Net(), "w4a4", act_clip=1.5)
    with pytest.raises(ValueError, match="not mxfp4"):
        quantize(Net(), "mxfp4", calibration=[torch.randn(4, 64)])
    with pytest.raises(ValueError, match="never reached 'a'"):
        quantize(Net(), "w4a4", calibration=[])
