"""DeepSeek sparse attention: indexer scores and top-k selection, sparse attention over the
selected keys (GQA, padding slots, empty selections) — kernels vs references; and with every
key selected it is dense causal attention."""

from __future__ import annotations

import pytest
import torch
from tests.ops.opcases import KERNEL_DTYPES, make

from anyware import ops
from anyware.testing.tolerances import assert_close

B, S, T, HI, DI = 1, 9, 37, 4, 32


def _indexer(dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    return make((B, S, HI, DI), dtype), make((B, T, DI), dtype), torch.rand(B, S, HI)


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
def test_indexer_matches_reference(dtype: torch.dtype) -> None:
    qi, ki, w = _indexer(dtype)
    got = torch.ops.anyware.indexer_scores(qi, ki, w, True)
    ref = ops.indexer_scores_reference(qi.double(), ki.double(), w.double())
    assert torch.equal(torch.isfinite(got), torch.isfinite(ref))  # the causal mask is exact
    assert_close(
        got.nan_to_num(neginf=0),
        ref.nan_to_num(neginf=0),
        dtype=torch.float32 if dtype == torch.float32 else dtype,
    )
    # the selection agrees (scores are distinct, so there are no ties to break differently)
    assert torch.equal(ops.indexer_topk(qi, ki, w, 8, impl="triton"), ops.select_topk(ref, 8))


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
def test_sparse_attention_matches_reference(dtype: torch.dtype) -> None:
    qi, ki, w = _indexer(dtype)
    idx = ops.indexer_topk(qi, ki, w, 8)
    idx[0, 0] = -1  # a query with nothing selected attends to nothing: output 0
    q, k, v = make((B, 4, S, 64), dtype), make((B, 2, T, 64), dtype), make((B, 2, T, 64), dtype)
    got = ops.sparse_attention(q, k, v, idx, impl="triton")
    assert_close(
        got, ops.sparse_attention_reference(q.double(), k.double(), v.double(), idx), dtype=dtype
    )
    assert bool((got[:, :, 0] == 0).all())


def test_all_keys_selected_is_dense_causal_attention() -> None:
    qi, ki, w = _indexer(torch.float32)
    idx = ops.indexer_topk(qi, ki, w, T)
    q, k, v = (
        make((B, 2, S, 32), torch.float32),
        make((B, 1, T, 32), torch.float32),
        make((B, 1, T, 32), torch.float32),
    )
    dense = ops.flash_attention_reference(q.double(), k.double(), v.double(), causal=True)
    assert_close(ops.sparse_attention(q, k, v, idx, impl="triton"), dense, dtype=torch.float32)


def test_opcheck() -> None:
    qi, ki, w = _indexer(torch.float32)
    torch.library.opcheck(torch.ops.anyware.indexer_scores.default, (qi, ki, w, True))
    idx = torch.randint(-1, T, (B, S, 4))
    q, k = torch.randn(B, 2, S, 16), torch.randn(B, 1, T, 16)
    torch.library.opcheck(torch.ops.anyware.sparse_attention.default, (q, k, k, idx, 0.25))


def test_bad_input() -> None:
    q, k = torch.randn(1, 2, 4, 16), torch.randn(1, 1, 6, 16)
    with pytest.raises(ValueError, match="indices reach 6"):
        ops.sparse_attention(q, k, k, torch.full((1, 4, 2), 6))
    with pytest.raises(ValueError, match="indices has shape"):
        ops.sparse_attention(q, k, k, torch.zeros(1, 3, 2, dtype=torch.long))
    with pytest.raises(ValueError, match="topk must be"):
        ops.indexer_topk(torch.randn(1, 4, 2, 8), torch.randn(1, 6, 8), torch.rand(1, 4, 2), 0)
