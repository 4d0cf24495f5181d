"""FP8 training: the swap, its report, each recipe's GEMMs against fp32, delayed scaling state,
scaled_mm against emulation."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from anyware.formats import convert_to_fp8_training
from anyware.formats.training import Float8Linear, Recipe
from anyware.testing.tolerances import assert_close, sqnr_db

RECIPES = [r.value for r in Recipe]


class Toy(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.fc1 = nn.Linear(64, 256)
        self.norm = nn.LayerNorm(256)
        self.conv = nn.Conv1d(4, 4, 3)
        self.odd = nn.Linear(256, 30)
        self.head = nn.Linear(30, 10, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.odd(self.norm(self.fc1(x))))


class MyLinear(nn.Linear):
    pass


def test_report_lists_converted_and_skipped() -> None:
    m = Toy()
    m.extra = MyLinear(4, 4)
    w_before = m.fc1.weight
    report = convert_to_fp8_training(m, recipe="rowwise", keep_first=0)
    assert report.converted == ["fc1", "odd"]
    skipped = {n: reason for n, _, reason in report.skipped}
    assert set(skipped) == {"norm", "conv", "head", "extra"}
    assert "skip list" in skipped["head"] and "subclass" in skipped["extra"]
    assert isinstance(m.fc1, Float8Linear) and m.fc1.weight is w_before  # parameters are shared
    assert "converted 2" in report.summary()


def test_scaled_mm_skips_dims_it_cannot_take_and_rejects_block_recipes() -> None:
    m = Toy()
    report = convert_to_fp8_training(m, recipe="tensorwise-current", gemm="scaled_mm", keep_first=0)
    assert report.converted == ["fc1"]
    assert any(n == "odd" and "multiples of 16" in r for n, _, r in report.skipped)
    with pytest.raises(ValueError, match="gemm='emulate'"):
        convert_to_fp8_training(Toy(), recipe="mxfp8", gemm="scaled_mm")


def test_default_keeps_first_linear_head_and_router_in_high_precision() -> None:
    class Moe(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.emb = nn.Embedding(8, 16)
            self.wqkv = nn.Linear(16, 48)
            self.gate = nn.Linear(16, 4)
            self.router = nn.Linear(16, 4)
            self.down = nn.Linear(16, 16)
            self.head = nn.Linear(16, 8)

    report = convert_to_fp8_training(Moe(), recipe="tensorwise-current")
    assert report.converted == ["down"]
    skipped = {n: reason for n, _, reason in report.skipped}
    assert "first linear" in skipped["wqkv"]
    assert all("skip list" in skipped[n] for n in ("gate", "router", "head"))
    assert "not a linear" in skipped["emb"]
    report = convert_to_fp8_training(Moe(), recipe="rowwise", keep_first=2, skip=())
    assert report.converted == ["router", "down", "head"]
    with pytest.raises(ValueError, match="keep_first"):
        convert_to_fp8_training(Moe(), keep_first=-1)


def test_bad_recipe_changes_nothing() -> None:
    m = Toy()
    with pytest.raises(ValueError, match="did you mean 'rowwise'"):
        convert_to_fp8_training(m, recipe="rowwse")
    assert type(m.fc1) is nn.Linear


@pytest.mark.parametrize("recipe", RECIPES)
def test_recipe_gemms_track_fp32(recipe: str) -> None:
    torch.manual_seed(0)
    ref = nn.Linear(256, 128)
    fp8 = nn.Sequential(nn.Linear(256, 128))
    fp8[0].load_state_dict(ref.state_dict())
    convert_to_fp8_training(fp8, recipe=recipe, skip=(), keep_first=0)
    x = torch.randn(192, 256)
    x1, x2 = x.clone().requires_grad_(), x.clone().requires_grad_()
    g = torch.randn(192, 128)
    ref(x1).backward(g)
    y = fp8(x2)
    y.backward(g)
    # one E4M3 rounding per operand: ≥ 25 dB; gradients carry E5M2 (DeepSeek: E4M3) noise too
    assert sqnr_db(ref(x1).detach(), y.detach()) > 25
    assert sqnr_db(x1.grad, x2.grad) > 20, "dgrad"
    assert sqnr_db(ref.weight.grad, fp8[0].weight.grad) > 20, "wgrad"
    assert torch.equal(ref.bias.grad, fp8[0].bias.grad)


def test_emulated_gemm_is_exactly_the_dequantised_product() -> None:
    from anyware.formats import fake_quantize

    torch.manual_seed(1)
    m = nn.Sequential(nn.Linear(128, 64, bias=False))
    convert_to_fp8_training(m, recipe="rowwise", skip=(), keep_first=0)
    x = torch.randn(32, 128)
    want = (
        fake_quantize(x, "fp8_e4m3", granularity="row")
        @ fake_quantize(m[0].weight.detach(), "fp8_e4m3", granularity="row").T
    )
    assert torch.equal(m(x).detach(), want)


@pytest.mark.parametrize("recipe", ["tensorwise-current", "rowwise", "tensorwise-delayed"])
def test_scaled_mm_matches_emulation(recipe: str) -> None:
    torch.manual_seed(2)
    a = nn.Sequential(nn.Linear(64, 32))
    b = nn.Sequential(nn.Linear(64, 32))
    b.load_state_dict(a.state_dict())
    convert_to_fp8_training(a, recipe=recipe, skip=(), keep_first=0)
    convert_to_fp8_training(b, recipe=recipe, skip=(), keep_first=0, gemm="scaled_mm")
    x = torch.randn(48, 64)
    xa, xb = x.clone().requires_grad_(), x.clone().requires_grad_()
    ya, yb = a(xa), b(xb)
    # same quantised operands, fp32 accumulation in a different order
    assert_close(yb, ya)
    g = torch.randn(48, 32)
    ya.backward(g)
    yb.backward(g)
    assert_close(xb.grad, xa.grad)
    assert_close(b[0].weight.grad, a[0].weight.grad)


def test_delayed_scaling_uses_history_and_saturates_a_jump() -> None:
    m = nn.Sequential(nn.Linear(32, 16, bias=False))
    convert_to_fp8_training(
        m, recipe="tensorwise-delayed", skip=(), keep_first=0, amax_history_len=4
    )
    layer = m[0]
    assert isinstance(layer, Float8Linear)
    x = torch.ones(4, 32)
    m(x)
    assert float(layer.amax_history[0, 0]) == 1.0  # act amax recorded
    big = torch.full((4, 32), 10.0)
    y = m(big)  # scale still from amax 1: activations saturate at 1.0 this step
    assert layer.amax_history[0, :2].tolist() == [10.0, 1.0]  # newest first
    w = layer.weight.detach()
    from anyware.formats import fake_quantize

    saturated = torch.ones(4, 32) @ fake_quantize(w, "fp8_e4m3").T
    assert torch.equal(y.detach(), saturated)


def test_training_step_runs_for_every_recipe_on_the_gpt() -> None:
    from anyware.models.gpt import GPT, GPTConfig

    for recipe in RECIPES:
        torch.manual_seed(0)
        model = GPT(GPTConfig(vocab_size=32, seq_len=16, d_model=32, n_heads=2, n_layers=1))
        report = convert_to_fp8_training(model, recipe=recipe)
        assert report.converted == ["blocks.0.attn.proj", "blocks.0.mlp.fc", "blocks.0.mlp.out"]
        assert {"head", "blocks.0.attn.qkv"} <= {n for n, _, _ in report.skipped}
        idx = torch.randint(0, 32, (2, 16))
        _, loss = model(idx, idx)
        assert loss is not None
        loss.backward()
        assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in model.parameters())
