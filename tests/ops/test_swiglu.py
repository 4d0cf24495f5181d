"""swiglu: kernel vs reference, forward and backward; opcheck; specials."""

from __future__ import annotations

import pytest
import torch
from tests.ops.opcases import FLAT_SHAPES, KERNEL_DTYPES, check_op, make

from anyware import ops
from anyware.testing.tolerances import assert_close


def _k(g: torch.Tensor, u: torch.Tensor) -> torch.Tensor:
    return ops.swiglu(g, u, impl="triton")


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("shape", FLAT_SHAPES)
def test_kernel_matches_reference(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    check_op(
        _k, ops.swiglu_reference, [make(shape, dtype, scale=3), make(shape, dtype)], grad=(0, 1)
    )


@pytest.mark.filterwarnings(
    "ignore::RuntimeWarning"
)  # numpy reports the inf·0 and overflows we ask for
def test_special_values() -> None:
    g = torch.tensor([0.0, float("inf"), -float("inf"), float("nan"), 1e-40, 80.0, -80.0, 3e38])
    u = torch.tensor([1.0, 2.0, 2.0, 1.0, 1.0, 1.0, 1.0, 2.0])
    assert_close(_k(g, u), ops.swiglu_reference(g, u))


def test_opcheck() -> None:
    torch.library.opcheck(torch.ops.anyware.swiglu.default, (torch.randn(4, 5), torch.randn(4, 5)))


def test_bf16_reference_path() -> None:
    g, u = make((3, 40), torch.bfloat16), make((3, 40), torch.bfloat16)
    assert_close(
        ops.swiglu(g, u), ops.swiglu_reference(g.double(), u.double()), dtype=torch.bfloat16
    )


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="up has shape"):
        ops.swiglu(torch.ones(2, 3), torch.ones(3, 2))
    with pytest.raises(ValueError, match=r"gate must be a torch\.Tensor"):
        ops.swiglu([1.0], torch.ones(1))  # type: ignore[arg-type]
