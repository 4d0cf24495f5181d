"""The learned (SpinQuant-style) stream rotation: orthogonal, exact when folded, lowers the
calibration loss it is trained on, and rejects inputs it cannot use."""

from __future__ import annotations

import copy
from collections.abc import Iterator

import pytest
import torch
from torch import nn

from anyware.formats import quantize
from anyware.formats.ptq import PTQConfig, RotateMode
from anyware.formats.quarot import fuse_rotation, layout_for
from anyware.formats.spinquant import cayley, rotate_stream
from anyware.models.gpt import GPT, GPTConfig
from anyware.testing.tolerances import assert_close


@pytest.fixture(autouse=True)
def single_thread() -> Iterator[None]:
    # tiny GEMMs in a 20-step loop: on a loaded 2-core machine, torch's thread pool made the
    # learning test 25x slower (32 s vs 1.3 s measured)
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(n)


def _gpt() -> GPT:
    torch.manual_seed(0)
    m = GPT(GPTConfig(vocab_size=40, seq_len=16, d_model=32, n_heads=2, n_layers=2))
    with torch.no_grad():  # trained-looking weights, so the quantisers have work to do
        for p in m.parameters():
            p.add_(torch.randn_like(p) * 0.2)
    return m


def _calib(n: int = 2) -> list[tuple[torch.Tensor]]:
    g = torch.Generator().manual_seed(1)
    return [(torch.randint(0, 40, (8, 16), generator=g),) for _ in range(n)]


def test_cayley_is_orthogonal_for_any_parameter() -> None:
    torch.manual_seed(0)
    for scale in (0.0, 0.1, 3.0):
        u = cayley(torch.randn(32, 32, dtype=torch.float64) * scale)
        err = (u.T @ u - torch.eye(32, dtype=torch.float64)).abs().max()
        assert err < 1e-10, (scale, err)
    assert torch.equal(cayley(torch.zeros(4, 4)), torch.eye(4))


def test_folding_a_learned_rotation_keeps_the_float_function() -> None:
    m = _gpt().double()
    idx = torch.randint(0, 40, (3, 16))
    ref = m(idx)[0].detach()
    layout = layout_for(m)
    assert layout is not None
    fuse_rotation(m, layout, seed=3)
    torch.manual_seed(1)
    rotate_stream(m, layout, cayley(torch.randn(32, 32, dtype=torch.float64)))
    assert_close(m(idx)[0].detach(), ref, dtype="float64")


def test_learned_rotation_lowers_the_calibration_loss_and_stays_orthogonal() -> None:
    m = _gpt()
    calib = _calib()
    report = quantize(
        m, "w4a4", rotate="learned", calibration=calib, act_clip=0.9, rotation_steps=20,
        rotation_lr=1e-3,
    )  # fmt: skip
    assert report.rotation == "learned" and report.rotate and report.fused is not None
    learned = report.learned
    assert learned is not None and learned.iterations == 20 and len(learned.losses) == 20
    assert learned.loss_after < learned.loss_before, learned
    u = learned.u
    assert u is not None and u.dtype == torch.float64
    err = (u.T @ u - torch.eye(32, dtype=torch.float64)).abs().max()
    assert err < 1e-5, err
    assert (u - torch.eye(32, dtype=torch.float64)).abs().max() > 1e-4  # it did move
    # and that U is the one folded in: the stream rotation is Q0 U
    ref = _gpt()
    fuse_rotation(ref, layout_for(ref), seed=0)  # type: ignore[arg-type]
    want = ref.tok.weight.detach().double() @ u
    assert_close(m.tok.weight.detach().double(), want, dtype="float32")


def test_learned_rotation_with_gptq_weights_runs_the_same_weight_quantiser() -> None:
    m = _gpt()
    report = quantize(
        m, "w4a4", rotate="learned", calibration=_calib(1), weights="gptq", rotation_steps=3
    )
    assert report.rotation == "learned" and report.weights.value == "gptq" and report.calibrated
    assert report.learned is not None and report.learned.iterations == 3


def test_learned_rotation_rejects_bad_input_before_touching_the_model() -> None:
    m = _gpt()
    before = copy.deepcopy(m.state_dict())
    with pytest.raises(ValueError, match="needs calibration= inputs"):
        quantize(m, "w4a4", rotate="learned")
    with pytest.raises(ValueError, match="needs calibration= inputs"):
        quantize(m, "w4a4", rotate="learned", calibration=[])
    with pytest.raises(ValueError, match=r"unknown PTQ rotate 'lerned'.*learned"):
        quantize(m, "w4a4", rotate="lerned", calibration=_calib(1))
    with pytest.raises(ValueError, match="apply to rotate='learned' only"):
        quantize(m, "w4a4", rotate=True, rotation_steps=5)
    assert all(torch.equal(before[k], v) for k, v in m.state_dict().items())
    net = nn.Sequential(nn.Linear(8, 8), nn.Linear(8, 8))
    with pytest.raises(ValueError, match="no layout is registered for Sequential"):
        quantize(net, "w4a4", rotate="learned", calibration=[torch.randn(2, 8)], skip=())


def test_rotate_option_keeps_its_boolean_meaning() -> None:
    assert PTQConfig(preset="w4a4", rotate=True).mode is RotateMode.HADAMARD
    assert PTQConfig(preset="w4a4", rotate="hadamard").rotate is True
    assert PTQConfig(preset="w4a4").mode is RotateMode.NONE
    assert PTQConfig(preset="w4a4", rotate="none").rotate is False


class _Tiny(nn.Module):
    """Embedding → norm → MLP → norm → head: returns logits, or their mean over the sequence
    (no per-token logits, so no next-token loss can be formed)."""

    def __init__(self, pooled: bool) -> None:
        super().__init__()
        self.pooled = pooled
        self.emb = nn.Embedding(10, 16)
        self.norm = nn.RMSNorm(16)
        self.up = nn.Linear(16, 32)
        self.down = nn.Linear(32, 16)
        self.norm_f = nn.RMSNorm(16)
        self.out = nn.Linear(16, 10)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        x = self.emb(idx)
        x = x + self.down(torch.relu(self.up(self.norm(x))))
        logits = self.out(self.norm_f(x))
        return logits.mean(1) if self.pooled else logits


def test_learned_rotation_takes_next_token_loss_from_ids_or_says_what_it_needs() -> None:
    from anyware.formats.quarot import ResidualLayout

    layout = ResidualLayout(
        embeddings=("emb",),
        writers=("down",),
        norms=(("norm", ("up",)), ("norm_f", ("out",))),
        online=("down",),
    )
    ids = [torch.randint(0, 10, (4, 12), generator=torch.Generator().manual_seed(0))]
    torch.manual_seed(0)
    report = quantize(
        _Tiny(pooled=False), "w4a4", rotate="learned", calibration=ids, layout=layout, skip=(),
        rotation_steps=2,
    )  # fmt: skip
    assert report.learned is not None and report.learned.loss_before > 0
    with pytest.raises(ValueError, match="needs a task loss"):
        quantize(
            _Tiny(pooled=True), "w4a4", rotate="learned", calibration=ids, layout=layout,
            skip=(), rotation_steps=2,
        )  # fmt: skip
