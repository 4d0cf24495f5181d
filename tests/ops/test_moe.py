"""MoE ops: routing (sigmoid/softmax, bias, group-limited), permute/unpermute (block-aligned),
grouped GEMM forward and backward — kernels vs references; the pieces compose into an MoE."""

from __future__ import annotations

import pytest
import torch
from tests.ops.opcases import KERNEL_DTYPES, check_op, gemm_atol, make

from anyware import ops
from anyware.testing.tolerances import assert_close

ROUTES = [
    {"top_k": 2},
    {"top_k": 3, "score": "softmax"},
    {"top_k": 4, "n_groups": 4, "topk_groups": 2},
    {"top_k": 8, "n_groups": 8, "topk_groups": 4, "route_scale": 2.5},
]


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("kw", ROUTES)
def test_route_matches_reference(kw: dict[str, object], dtype: torch.dtype) -> None:
    logits, bias = make((37, 64), dtype), make((64,), torch.float32, scale=0.1)
    w, ids = ops.moe_route(logits, bias=bias, impl="triton", **kw)  # type: ignore[arg-type]
    w_ref, ids_ref = ops.moe_route_reference(logits.double(), bias=bias.double(), **kw)  # type: ignore[arg-type]
    assert torch.equal(ids, ids_ref)
    assert_close(w, w_ref, dtype=torch.float32)


def test_route_bias_changes_choice_not_weight() -> None:
    logits = torch.zeros(1, 8)
    logits[0, 0] = 2.0
    bias = torch.zeros(8)
    bias[5] = 10.0  # expert 5 is chosen first because of the bias ...
    w, ids = ops.moe_route(logits, 2, bias=bias, normalize=False, impl="triton")
    assert ids.tolist() == [[5, 0]]
    # ... but weighs its unbiased affinity σ(0) = 0.5
    assert_close(w, torch.tensor([[0.5, float(torch.sigmoid(torch.tensor(2.0)))]]))


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("block_size", [1, 16])
def test_permute_unpermute_match_reference(block_size: int, dtype: torch.dtype) -> None:
    x = make((13, 40), dtype)
    ids = torch.stack([torch.randperm(6)[:2] for _ in range(13)])
    check_op(
        lambda x: ops.moe_permute(x, ids, 7, block_size, impl="triton")[0],
        lambda x: ops.moe_permute_reference(x, ids, 7, block_size)[0],
        [x], grad=(0,),
    )  # fmt: skip
    _, row_map, sizes = ops.moe_permute(x, ids, 7, block_size, impl="triton")
    assert (
        int(sizes.sum()) == row_map.numel()
        and bool((sizes % block_size == 0).all())
        and int(sizes[6]) == 0
    )
    y, w = make((row_map.numel(), 40), dtype), make((13, 2), dtype).abs()
    check_op(
        lambda y, w: ops.moe_unpermute(y, row_map, w, impl="triton"),
        lambda y, w: ops.moe_unpermute_reference(y, row_map, w),
        [y, w], grad=(0, 1),
    )  # fmt: skip


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("sizes", [[5], [0, 7, 0, 33, 1], [17, 64, 3]])
def test_grouped_matmul_matches_reference(sizes: list[int], dtype: torch.dtype) -> None:
    gs = torch.tensor(sizes)
    x, w = make((sum(sizes), 24), dtype), make((len(sizes), 24, 40), dtype)
    check_op(
        lambda x, w: ops.grouped_matmul(x, w, gs, impl="triton"),
        lambda x, w: ops.grouped_matmul_reference(x, w, gs),
        [x, w], grad=(0, 1), atol=gemm_atol(dtype, max([*sizes, 40])),
    )  # fmt: skip


def test_pieces_compose_into_an_moe_layer() -> None:
    tokens, hidden, experts, k = 11, 16, 4, 2
    x, gate = make((tokens, hidden), torch.float32), make((hidden, experts), torch.float32)
    w = make((experts, hidden, hidden), torch.float32)
    weights, ids = ops.moe_route(x @ gate, k, impl="triton")
    xp, row_map, sizes = ops.moe_permute(x, ids, experts, 16, impl="triton")
    out = ops.moe_unpermute(
        ops.grouped_matmul(xp, w, sizes, impl="triton"), row_map, weights, impl="triton"
    )
    expected = sum(
        weights[:, j, None] * torch.einsum("th,thn->tn", x, w[ids[:, j]]) for j in range(k)
    )
    torch.testing.assert_close(out, expected, rtol=1e-5, atol=1e-5)


def test_opcheck() -> None:
    torch.library.opcheck(
        torch.ops.anyware.grouped_matmul.default,
        (torch.randn(9, 8), torch.randn(3, 8, 5), [2, 0, 7]),
    )
    torch.library.opcheck(
        torch.ops.anyware.moe_route.default, (torch.randn(5, 8), None, 2, False, 2, 1, 1.0, True)
    )
    row_map, _ = ops.moe_align(torch.tensor([[0, 1], [1, 2]]), 3, 4)
    torch.library.opcheck(torch.ops.anyware.moe_permute.default, (torch.randn(2, 6), row_map, 2))


def test_bad_input() -> None:
    with pytest.raises(ValueError, match=r"top_k=5 must be in 1\.\.4"):
        ops.moe_route(torch.randn(3, 8), 5, n_groups=4, topk_groups=2)
    with pytest.raises(ValueError, match="n_groups=3 must be"):
        ops.moe_route(torch.randn(3, 8), 2, n_groups=3)
    with pytest.raises(ValueError, match="sum to x's 5 rows"):
        ops.grouped_matmul(torch.randn(5, 4), torch.randn(2, 4, 3), torch.tensor([2, 2]))
    with pytest.raises(ValueError, match=r"ids must lie in \[0, 4\)"):
        ops.moe_permute(torch.randn(2, 4), torch.tensor([[0, 4], [1, 2]]), 4)
