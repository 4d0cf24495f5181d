"""FP8 for the MoE experts (``anyware.formats.grouped``), the balance loss and the overlap timer."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from anyware.formats.grouped import Fp8GroupedMatmul, fp8_grouped_matmul_reference
from anyware.formats.training import Fp8TrainingConfig
from anyware.models.moe import (
    MoEConfig,
    MoETransformer,
    convert_experts_to_fp8,
    sequence_balance_loss,
)
from anyware.models.moe_parallel import Flight, FlightRecorder
from anyware.testing.tolerances import assert_close, sqnr_db

RECIPES = ("tensorwise-delayed", "tensorwise-current", "rowwise", "deepseek-blockwise", "mxfp8")
# odd sizes: ragged 32- and 128-element blocks, a one-row group, and rows ≥ 128 (full tiles)
SIZES = torch.tensor([1, 37, 0, 150])


def _grouped(recipe: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(int(SIZES.sum()), 40, requires_grad=True)
    w = (
        torch.randn(4, 40, 24) * torch.tensor([1.0, 30.0, 1.0, 1e-3])[:, None, None]
    ).requires_grad_()
    y = Fp8GroupedMatmul(Fp8TrainingConfig(recipe=recipe), 4)(x, w, SIZES)
    g = torch.randn_like(y)
    y.backward(g)
    assert x.grad is not None and w.grad is not None
    return y.detach(), x.grad.clone(), w.grad.clone(), g


@pytest.mark.parametrize("recipe", RECIPES)
def test_grouped_fp8_equals_one_float8_linear_per_expert(recipe: str) -> None:
    y, dx, dw, g = _grouped(recipe)
    torch.manual_seed(0)
    x = torch.randn(int(SIZES.sum()), 40, requires_grad=True)
    w = (
        torch.randn(4, 40, 24) * torch.tensor([1.0, 30.0, 1.0, 1e-3])[:, None, None]
    ).requires_grad_()
    keep = (SIZES > 0).nonzero().flatten()
    ref = fp8_grouped_matmul_reference(x, w[keep], SIZES[keep], Fp8TrainingConfig(recipe=recipe))
    ref.backward(g)
    assert x.grad is not None and w.grad is not None
    # Same quantised operands, fp32 products: only the order of the wgrad product differs.
    assert_close(y, ref.detach(), dtype=torch.float32)
    assert_close(dx, x.grad, dtype=torch.float32)
    assert_close(dw[keep], w.grad[keep], dtype=torch.float32)
    assert bool((dw[2] == 0).all())  # the expert without tokens gets a zero gradient


@pytest.mark.parametrize("recipe", RECIPES)
def test_grouped_fp8_is_close_to_fp32_with_per_expert_scales(recipe: str) -> None:
    y, _, _, _ = _grouped(recipe)
    torch.manual_seed(0)
    x = torch.randn(int(SIZES.sum()), 40)
    w = torch.randn(4, 40, 24) * torch.tensor([1.0, 30.0, 1.0, 1e-3])[:, None, None]
    exact = torch.cat([r @ w[i] for i, r in enumerate(torch.split(x, SIZES.tolist()))])
    # Expert 3's weights are 3e4× smaller than expert 1's: one scale across experts would put
    # them in E4M3's subnormals; with a scale per expert each keeps its full precision.
    last = slice(int(SIZES[:3].sum()), None)
    assert sqnr_db(exact[last], y[last]) > 25.0
    assert sqnr_db(exact, y) > 25.0


def _grads(
    recipe: str, x: torch.Tensor, w: torch.Tensor, sizes: list[int], g: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    x, w = x.clone().requires_grad_(), w.clone().requires_grad_()
    y = Fp8GroupedMatmul(Fp8TrainingConfig(recipe=recipe), len(sizes))(x, w, torch.tensor(sizes))
    y.backward(g)
    assert x.grad is not None and w.grad is not None
    return y.detach(), x.grad, w.grad


@pytest.mark.parametrize("recipe", RECIPES)
def test_no_scale_block_straddles_two_experts(recipe: str) -> None:
    # 200 + 200 tokens (not multiples of 128 or 32): a block running on from expert 0 into
    # expert 1 would carry expert 0's 1e4× outliers into expert 1's scales
    torch.manual_seed(1)
    x, w, g = torch.randn(400, 64), torch.randn(2, 64, 48), torch.randn(400, 48)
    calm = _grads(recipe, x, w, [200, 200], g)
    x2, g2 = x.clone(), g.clone()
    x2[:200] *= 1e4
    g2[:200] *= 1e4
    loud = _grads(recipe, x2, w, [200, 200], g2)
    for a, b in zip(calm, loud, strict=True):
        assert torch.equal(a[200:] if a.dim() == 2 else a[1], b[200:] if b.dim() == 2 else b[1])


def test_blockwise_wgrad_tiles_run_along_each_experts_tokens() -> None:
    # deepseek-blockwise's wgrad reduces over tokens, so its 1×128 tiles run along them: one
    # expert's 256 tokens are two independent tiles, and the weight gradient is the sum of the
    # two halves computed as separate experts. Tiles along channels (the forward's layout)
    # would let the loud token 0 set the scale of its whole row.
    torch.manual_seed(2)
    x, g = torch.randn(256, 64), torch.randn(256, 48)
    x[0] *= 300.0
    g[0] *= 300.0
    w = torch.randn(1, 64, 48)
    _, _, dw = _grads("deepseek-blockwise", x, w, [256], g)
    _, _, halves = _grads("deepseek-blockwise", x, w.expand(2, -1, -1), [128, 128], g)
    assert_close(dw[0], halves.sum(0), dtype=torch.float32)
    # rowwise has one scale per row over all 256 tokens: the same split changes its result,
    # so the equality above is a real test of the layout
    _, _, row = _grads("rowwise", x, w, [256], g)
    _, _, row_halves = _grads("rowwise", x, w.expand(2, -1, -1), [128, 128], g)
    assert (row[0] - row_halves.sum(0)).abs().max() > 0.01 * row_halves[1].abs().max()


def test_grouped_fp8_rejects_bad_groups() -> None:
    mod = Fp8GroupedMatmul(Fp8TrainingConfig(recipe="rowwise"), 2)
    with pytest.raises(ValueError, match="sum to x's 5 rows"):
        mod(torch.randn(5, 4), torch.randn(2, 4, 3), torch.tensor([2, 2]))
    with pytest.raises(ValueError, match="built for 2 groups"):
        mod(torch.randn(5, 4), torch.randn(3, 4, 3), torch.tensor([2, 2, 1]))
    with pytest.raises(ValueError, match="emulated"):
        Fp8GroupedMatmul(Fp8TrainingConfig(recipe="rowwise", gemm="scaled_mm"), 2)


def test_convert_experts_keeps_router_in_high_precision_and_trains() -> None:
    torch.manual_seed(0)
    cfg = MoEConfig(seq_len=16, d_model=32, n_heads=2, n_layers=2, n_routed_experts=4, d_expert=16)
    model = MoETransformer(cfg)
    fp32 = MoETransformer(cfg)
    fp32.load_state_dict(model.state_dict())
    assert convert_experts_to_fp8(model, "rowwise") == ["layers.1.ffn"]
    (moe,) = model.moe_layers()
    assert type(moe.gate) is nn.Linear and moe.expert_gemms is not None
    x = torch.randint(0, cfg.vocab_size, (2, 16))
    _, loss = model(x, x)
    _, ref = fp32(x, x)
    assert loss is not None and ref is not None
    assert loss.item() != ref.item()  # the experts really ran in FP8
    assert abs(loss.item() - ref.item()) < 1e-2 * ref.item()
    loss.backward()
    assert moe.w_gate_up.grad is not None and moe.w_gate_up.grad.abs().sum() > 0


def test_sequence_balance_loss_matches_the_formula_and_pushes_overused_experts_down() -> None:
    cfg = MoEConfig(n_routed_experts=4, top_k=1, aux_loss_alpha=0.5)
    logits = torch.tensor([[2.0, 0.0, 0.0, 0.0], [1.0, 0.0, 0.0, 0.0]], requires_grad=True)
    experts = torch.tensor([[0], [0]])  # one sequence of 2 tokens, both on expert 0
    loss = sequence_balance_loss(logits, experts, 1, cfg)
    s = torch.sigmoid(logits.detach())
    p = (s / s.sum(-1, keepdim=True)).mean(0)
    f = torch.tensor([4.0, 0.0, 0.0, 0.0])  # E/(K·T)·count = 4/2·2
    assert loss.item() == pytest.approx(0.5 * float((f * p).sum()), rel=1e-6)
    loss.backward()
    assert logits.grad is not None
    assert bool((logits.grad[:, 0] > 0).all())  # descent lowers the over-used expert's logit


def test_flight_overlap_arithmetic() -> None:
    rec = FlightRecorder()
    # in flight 0–10, compute 2–6, wait returns at 12: 4 overlapped, 6 exposed
    rec.flights.append(
        Flight(issued=0, compute=(2_000_000, 6_000_000), done=10_000_000, waited=12_000_000)
    )
    # the exchange finished before the compute did: all of it overlapped
    rec.flights.append(Flight(issued=0, compute=(0, 8_000_000), done=5_000_000, waited=8_000_000))
    s = rec.summary()
    assert s["in_flight_ms"] == pytest.approx(15.0)
    assert s["overlapped_ms"] == pytest.approx(9.0)
    assert s["exposed_wait_ms"] == pytest.approx(6.0)
    assert s["overlap_fraction"] == pytest.approx(9 / 15)
