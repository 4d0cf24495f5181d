"""flash_attention: kernel vs reference forward and backward — causal, GQA, head dims 64/128,
unequal lengths, packed variable-length sequences; opcheck; bad input."""

from __future__ import annotations

import pytest
import torch
from tests.ops.opcases import KERNEL_DTYPES, check_op, make

from anyware import ops
from anyware.testing.tolerances import assert_close

# (batch, heads, kv_heads, seq_q, seq_k, head_dim, causal)
CASES = [
    (1, 2, 2, 5, 5, 64, False),
    (2, 4, 2, 70, 70, 64, True),  # GQA, a tail past one 64-row tile
    (1, 2, 1, 1, 130, 128, True),  # MQA decode: one query against a cache
    (1, 3, 3, 33, 100, 128, False),
]


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize(("b", "h", "kvh", "lq", "lk", "d", "causal"), CASES)
def test_kernel_matches_reference(
    b: int, h: int, kvh: int, lq: int, lk: int, d: int, causal: bool, dtype: torch.dtype
) -> None:
    q, k, v = make((b, h, lq, d), dtype), make((b, kvh, lk, d), dtype), make((b, kvh, lk, d), dtype)
    check_op(
        lambda q, k, v: ops.flash_attention(q, k, v, causal, impl="triton"),
        lambda q, k, v: ops.flash_attention_reference(q, k, v, causal),
        [q, k, v], grad=(0, 1, 2), msg=f"{b}x{h}/{kvh}x{lq}x{lk}x{d} causal={causal}",
    )  # fmt: skip


@pytest.mark.parametrize("causal", [False, True])
def test_varlen_matches_reference(causal: bool) -> None:
    cu = torch.tensor([0, 1, 40, 40, 100])  # includes an empty sequence
    q, k, v = (make((1, 2, 100, 64), torch.float32) for _ in range(3))
    k, v = k[:, :1], v[:, :1]
    check_op(
        lambda q, k, v: ops.flash_attention(q, k, v, causal, cu_seqlens_q=cu, impl="triton"),
        lambda q, k, v: ops.flash_attention_reference(q, k, v, causal, cu_seqlens_q=cu),
        [q, k, v], grad=(0, 1, 2),
    )  # fmt: skip


def test_large_scores_are_stable() -> None:
    q, k, v = (make((1, 1, 20, 64), torch.float32) for _ in range(3))
    got = ops.flash_attention(q * 100, k, v, scale=1.0, impl="triton")
    assert torch.isfinite(got).all()
    ref = ops.flash_attention_reference(q.double() * 100, k.double(), v.double(), scale=1.0)
    # Scores reach ~1e3 here, so rounding one fp32 score (|s|·2⁻²⁴ ≈ 6e-5) shifts its
    # probability by that relative amount: the table's fp32 rtol (1e-5) is for |s| ≲ 100.
    torch.testing.assert_close(got.double(), ref, rtol=5e-4, atol=5e-4)


def test_opcheck() -> None:
    q, k, v = torch.randn(1, 2, 9, 16), torch.randn(1, 1, 9, 16), torch.randn(1, 1, 9, 16)
    torch.library.opcheck(
        torch.ops.anyware.flash_attention.default, (q, k, v, True, 0.25, None, None)
    )


def test_bf16_reference_path() -> None:
    q, k, v = (make((1, 2, 9, 32), torch.bfloat16) for _ in range(3))
    ref = ops.flash_attention_reference(q.double(), k.double(), v.double(), True)
    assert_close(ops.flash_attention(q, k, v, True), ref, dtype=torch.bfloat16)


def test_bad_input() -> None:
    q = torch.randn(1, 4, 8, 16)
    with pytest.raises(ValueError, match="must divide"):
        ops.flash_attention(q, torch.randn(1, 3, 8, 16), torch.randn(1, 3, 8, 16))
    with pytest.raises(ValueError, match="head dim"):
        ops.flash_attention(q, torch.randn(1, 2, 8, 32), torch.randn(1, 2, 8, 32))
    with pytest.raises(ValueError, match="4-D"):
        ops.flash_attention(q[0], q[0], q[0])
    with pytest.raises(ValueError, match="seq_q ≤ seq_k"):
        ops.flash_attention(q, q[:, :, :4], q[:, :, :4], causal=True)
    with pytest.raises(ValueError, match="cu_seqlens_q must start at 0"):
        ops.flash_attention(q, q, q, cu_seqlens_q=torch.tensor([0, 5]))
