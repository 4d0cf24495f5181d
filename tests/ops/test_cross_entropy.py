"""cross_entropy: kernel vs reference (logits and fused LM head), reductions, ignore_index,
chunking, specials, opcheck, bad input."""

from __future__ import annotations

import pytest
import torch
from tests.ops.opcases import KERNEL_DTYPES, check_op, make

from anyware import ops
from anyware.testing.tolerances import assert_close


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize(("n", "v"), [(1, 1), (5, 17), (33, 1000), (3, 5000)])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_logits_match_reference(n: int, v: int, reduction: str, dtype: torch.dtype) -> None:
    x = make((n, v), dtype, scale=3)
    t = torch.randint(0, v, (n,))
    t[0] = -100  # one ignored row
    check_op(
        lambda x, t: ops.cross_entropy(x, t, reduction=reduction, impl="triton"),
        lambda x, t: ops.cross_entropy_reference(x, t, reduction=reduction),
        [x, t], grad=(0,), dtype=dtype, msg=f"{n}x{v} {reduction}",
    )  # fmt: skip


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("chunk", [7, 4096])
def test_fused_head_matches_reference(chunk: int, dtype: torch.dtype) -> None:
    h, w = make((2, 19, 24), dtype), make((300, 24), dtype, scale=0.3)
    t = torch.randint(0, 300, (2, 19))
    t[0, 3] = -100
    check_op(
        lambda h, w, t: ops.cross_entropy(h, t, w, chunk_size=chunk, impl="triton"),
        lambda h, w, t: ops.cross_entropy_reference(h, t, w),
        [h, w, t], grad=(0, 1), dtype=dtype,
    )  # fmt: skip


def test_special_values() -> None:
    x = torch.tensor(
        [[0.0, 0.0, 0.0], [-float("inf"), 2.0, 1.0], [1e4, -1e4, 0.0], [3e38, 3e38, 0.0]]
    )
    t = torch.tensor([0, 1, 1, 0])
    got = ops.cross_entropy(x, t, reduction="none", impl="triton")
    assert_close(
        got, ops.cross_entropy_reference(x.double(), t, reduction="none"), dtype=torch.float32
    )


def test_all_ignored_mean_is_nan_like_torch() -> None:
    x, t = torch.randn(3, 5), torch.full((3,), -100)
    assert torch.isnan(ops.cross_entropy(x, t, impl="triton"))
    assert torch.isnan(ops.cross_entropy_reference(x, t))


def test_opcheck() -> None:
    torch.library.opcheck(
        torch.ops.anyware.cross_entropy.default,
        (torch.randn(4, 9), torch.tensor([0, 8, -100, 3]), -100),
    )
    torch.library.opcheck(
        torch.ops.anyware.linear_cross_entropy.default,
        (torch.randn(5, 6), torch.randn(11, 6), torch.tensor([0, 1, 2, 3, 10]), -100, 2),
    )


def test_bf16_reference_path() -> None:
    x, t = make((4, 50), torch.bfloat16), torch.randint(0, 50, (4,))
    assert_close(
        ops.cross_entropy(x, t), ops.cross_entropy_reference(x.double(), t), dtype=torch.bfloat16
    )


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="target has shape"):
        ops.cross_entropy(torch.randn(3, 5), torch.zeros(4, dtype=torch.long))
    with pytest.raises(ValueError, match="outside"):
        ops.cross_entropy(torch.randn(3, 5), torch.tensor([0, 5, 1]))
    with pytest.raises(ValueError, match="reduction"):
        ops.cross_entropy(torch.randn(3, 5), torch.zeros(3, dtype=torch.long), reduction="avg")
    with pytest.raises(ValueError, match="head_weight has hidden size"):
        ops.cross_entropy(torch.randn(3, 5), torch.zeros(3, dtype=torch.long), torch.randn(7, 4))
