"""ops.use() / enable(): unmodified models run on the ops, results unchanged, undone cleanly."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from anyware import ops
from anyware.models.gpt import GPT, GPTConfig
from anyware.ops import _registry


def _calls() -> int:
    return sum(_registry.CALLS.values())


def test_gpt_runs_on_the_ops_and_matches() -> None:
    model = GPT(GPTConfig(n_layers=1))
    x = torch.randint(0, 96, (2, 16))
    ref_logits, ref_loss = model(x, x)
    with ops.use(impl="triton") as usage:
        logits, loss = model(x, x)
        assert loss is not None
        loss.backward()
    assert set(usage.calls) == {"matmul", "cross_entropy", "embedding_bag"}
    assert usage.calls["matmul"] == {"triton": 7}  # qkv, proj, fc, out, q@kᵀ, att@v, head
    torch.testing.assert_close(logits, ref_logits, rtol=1e-4, atol=1e-5)
    assert ref_loss is not None
    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    assert model.tok.weight.grad is not None and torch.isfinite(model.tok.weight.grad).all()


def test_leaving_use_undoes_it() -> None:
    a, b = torch.randn(4, 5), torch.randn(5, 3)
    with ops.use():
        before = _calls()
        _ = a @ b
        assert _calls() == before + 1
    after = _calls()
    _ = a @ b
    _ = F.linear(a, b.t())
    assert _calls() == after


def test_enable_disable() -> None:
    a = torch.randn(3, 3)
    ops.enable(ops=["matmul"])
    try:
        assert ops.enabled()
        before = _calls()
        _ = torch.mm(a, a)
        _ = F.cross_entropy(a, torch.tensor([0, 1, 2]))  # not selected: untouched
        assert _calls() == before + 1
    finally:
        ops.disable()
    assert not ops.enabled()
    before = _calls()
    _ = torch.mm(a, a)
    assert _calls() == before


def test_calls_outside_the_contract_run_the_original() -> None:
    q = k = v = torch.randn(1, 2, 4, 8)
    mask = torch.ones(4, 4, dtype=torch.bool)
    with ops.use() as usage:
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask)
        ce = F.cross_entropy(torch.randn(3, 4), torch.tensor([0, 1, 2]), label_smoothing=0.1)
        ints = torch.ones(2, 2, dtype=torch.int64) @ torch.ones(2, 2, dtype=torch.int64)
        sdpa = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        norm = F.rms_norm(torch.randn(3, 8), (8,), torch.ones(8))
    assert out.shape == q.shape and ce.ndim == 0 and int(ints[0, 0]) == 2
    assert usage.calls["flash_attention"] == {"reference": 1}
    assert usage.calls["rms_norm"] == {"reference": 1}
    torch.testing.assert_close(sdpa, F.scaled_dot_product_attention(q, k, v, is_causal=True))
    assert norm.shape == (3, 8)
    assert "cross_entropy" not in usage.calls


def test_bad_arguments() -> None:
    with pytest.raises(KeyError, match="Did you mean"), ops.use(ops=["matmull"]):
        pass
    with pytest.raises(ValueError, match="no torch function"), ops.use(ops=["hadamard"]):
        pass
    with pytest.raises(ValueError, match="impl="), ops.use(impl="fast"):
        pass
