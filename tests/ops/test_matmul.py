"""matmul: kernel vs reference (fp64), forward and backward, odd shapes; opcheck; bad input."""

from __future__ import annotations

import math

import pytest
import torch
from tests.ops.opcases import KERNEL_DTYPES, MATMUL_SHAPES, check_op, gemm_atol, make

from anyware import ops
from anyware.testing.tolerances import assert_close


def _mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return ops.matmul(a, b, impl="triton")


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize(("m", "k", "n"), MATMUL_SHAPES)
def test_kernel_matches_reference(m: int, k: int, n: int, dtype: torch.dtype) -> None:
    # forward reduces over K, the gradients over N and M: the longest sum sets the error
    atol = gemm_atol(dtype, max(m, k, n))
    check_op(
        _mm,
        ops.matmul_reference,
        [make((m, k), dtype), make((k, n), dtype)],
        grad=(0, 1),
        atol=atol,
        msg=f"{m}x{k}x{n}",
    )


@pytest.mark.parametrize(
    ("sa", "sb"), [((2, 5, 33, 17), (17, 9)), ((2, 1, 5, 9), (3, 9, 4)), ((3, 20, 16), (3, 16, 18))]
)
def test_batched_and_broadcast(sa: tuple[int, ...], sb: tuple[int, ...]) -> None:
    # b's gradient sums over every broadcast batch row as well
    atol = gemm_atol(torch.float32, max(sa[-1], sb[-1], math.prod(sa[:-1])))
    check_op(
        _mm,
        ops.matmul_reference,
        [make(sa, torch.float32), make(sb, torch.float32)],
        grad=(0, 1),
        atol=atol,
    )


def test_non_contiguous_and_empty_k() -> None:
    a = make((40, 24), torch.float32).t()  # strided view, no copy
    b = make((40, 19), torch.float32)
    assert_close(_mm(a, b), ops.matmul_reference(a.double(), b.double()), dtype=torch.float32)
    z = _mm(torch.ones(3, 0), torch.ones(0, 4))
    assert z.shape == (3, 4) and bool((z == 0).all())


@pytest.mark.filterwarnings(
    "ignore::RuntimeWarning"
)  # numpy reports the inf·0 and overflows we ask for
def test_special_values() -> None:
    a = torch.tensor([[float("inf"), 1.0], [0.0, float("nan")], [1e-40, 3e38]], dtype=torch.float32)
    b = torch.tensor([[1.0, 0.0], [2.0, 1.0]], dtype=torch.float32)
    # inf·0 is NaN in both; NaN rows stay NaN; subnormals and near-max values keep their size
    assert_close(_mm(a, b), ops.matmul_reference(a, b))


def test_opcheck() -> None:
    torch.library.opcheck(
        torch.ops.anyware.matmul.default, (torch.randn(1, 5, 7), torch.randn(1, 7, 3))
    )


def test_bf16_reference_path() -> None:
    a, b = make((9, 33), torch.bfloat16), make((33, 5), torch.bfloat16)
    assert_close(
        ops.matmul(a, b), ops.matmul_reference(a.double(), b.double()), dtype=torch.bfloat16
    )


@pytest.mark.parametrize(
    ("a", "b", "match"),
    [
        (torch.ones(3, 4), torch.ones(5, 2), "inner dimensions"),
        (torch.ones(3, 4), torch.ones(4, 2, dtype=torch.float16), "dtype"),
        (torch.ones(4), torch.ones(4, 2), "at least 2-D"),
        (torch.ones(2, 3, 4), torch.ones(3, 4, 2), "broadcast"),
    ],
)
def test_bad_input(a: torch.Tensor, b: torch.Tensor, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        ops.matmul(a, b)
