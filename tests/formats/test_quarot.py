"""QuaRot's fused rotation: exact on the GPT (LayerNorm) and on an RMSNorm model, wired into the
PTQ presets, and a bad layout leaves the model untouched."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from anyware.formats import quantize
from anyware.formats.ptq import QuantLinear
from anyware.formats.quarot import ResidualLayout, fuse_rotation, layout_for
from anyware.models.gpt import GPT, GPTConfig
from anyware.testing.tolerances import assert_close


def _gpt() -> GPT:
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=40, seq_len=16, d_model=32, n_heads=2, n_layers=2))
    with torch.no_grad():  # trained-looking norms and biases, so the folds have work to do
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return m


def test_fuse_is_exact_on_the_gpt_and_rewrites_its_norms() -> None:
    m = _gpt().double()
    idx = torch.randint(0, 40, (3, 16))
    ref = m(idx)[0].detach()
    layout = layout_for(m)
    assert layout is not None and "blocks.1.mlp.out" in layout.online
    report = fuse_rotation(m, layout, seed=5)
    # float64 throughout: what is left is rounding of the folds, not the algebra
    assert_close(m(idx)[0].detach(), ref, dtype="float64")
    assert report.centred and report.untied == ["head"]
    assert set(report.norms) == {
        "blocks.0.ln1",
        "blocks.0.ln2",
        "blocks.1.ln1",
        "blocks.1.ln2",
        "ln_f",
    }
    assert isinstance(m.ln_f, nn.RMSNorm) and m.ln_f.weight is None
    assert m.head.weight is not m.tok.weight and m.head.bias is not None  # ln_f's β folded in


class _RmsNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.emb = nn.Embedding(10, 16)
        self.norm = nn.RMSNorm(16, eps=1e-6)
        self.up = nn.Linear(16, 32, bias=False)
        self.down = nn.Linear(32, 16)
        self.norm_f = nn.RMSNorm(16, eps=1e-6)
        self.out = nn.Linear(16, 10)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx)
        x = x + self.down(torch.relu(self.up(self.norm(x))))
        return self.out(self.norm_f(x))


_RMS_LAYOUT = ResidualLayout(
    embeddings=("emb",), writers=("down",), norms=(("norm", ("up",)), ("norm_f", ("out",))),
    online=("down",),
)  # fmt: skip


def test_fuse_is_exact_on_an_rmsnorm_model_without_centring() -> None:
    torch.manual_seed(1)
    m = _RmsNet().double()
    with torch.no_grad():
        m.norm.weight.uniform_(0.5, 2.0)
    idx = torch.randint(0, 10, (4, 7))
    ref = m(idx).detach()
    report = fuse_rotation(m, _RMS_LAYOUT, seed=0)
    assert not report.centred and report.untied == []
    assert_close(m(idx).detach(), ref, dtype="float64")


def test_bad_layout_is_rejected_before_anything_changes() -> None:
    m = _RmsNet()
    before = copy.deepcopy(m.state_dict())
    bad = ResidualLayout(embeddings=("emb",), writers=("down",), norms=(("norm", ("nope",)),))
    with pytest.raises(ValueError, match="'nope'"):
        fuse_rotation(m, bad)
    wide = ResidualLayout(embeddings=("emb",), writers=("up",), norms=(("norm", ("out",)),))
    with pytest.raises(ValueError, match="writer 'up' has out_features=32"):
        fuse_rotation(m, wide)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    assert isinstance(m.norm, nn.RMSNorm) and m.norm.weight is not None
    with pytest.raises(ValueError, match="more than once"):
        ResidualLayout(embeddings=("emb",), writers=("down",), norms=(("norm", ("down",)),))
    with pytest.raises(ValueError, match="read the rotated stream"):
        ResidualLayout(embeddings=("emb",), norms=(("norm", ("up",)),), writers=(), online=("up",))


def test_ptq_uses_the_fused_rotation_when_the_layout_is_known() -> None:
    m = _gpt()
    idx = torch.randint(0, 40, (3, 16))
    ref = m(idx)[0].detach()
    # w8a8 barely perturbs the function, so a wrong fold would show as a large error
    report = quantize(m, "w8a8", rotate=True)
    assert report.rotation == "quarot" and report.fused is not None
    assert report.online == [f"blocks.{i}.{n}" for i in range(2) for n in ("attn.proj", "mlp.out")]
    qkv, proj = m.blocks[0].attn.qkv, m.blocks[0].attn.proj
    assert isinstance(qkv, QuantLinear) and qkv.signs is None  # reads the rotated stream
    assert isinstance(proj, QuantLinear) and proj.signs is not None  # online Hadamard
    rel = (m(idx)[0].detach() - ref).norm() / ref.norm()
    assert rel < 0.02, rel


def test_ptq_falls_back_to_online_rotation_for_unknown_models() -> None:
    m = _RmsNet()
    report = quantize(m, "w4a4", rotate=True, skip=())
    assert report.rotation == "online" and report.fused is None
    assert report.online == ["up", "down", "out"]
    m2 = _RmsNet()
    report = quantize(m2, "w4a4", rotate=True, skip=(), layout=_RMS_LAYOUT)
    assert report.rotation == "quarot" and report.online == ["down"]
    with pytest.raises(ValueError, match="rotate=True"):
        quantize(_RmsNet(), "w4a4", layout=_RMS_LAYOUT)
    assert quantize(_RmsNet(), "w4a4").rotation == "none"
