"""rms_norm: kernel vs reference, forward and backward (x and weight); opcheck; specials."""

from __future__ import annotations

import pytest
import torch
from tests.ops.opcases import KERNEL_DTYPES, ROW_SHAPES, check_op, make

from anyware import ops
from anyware.testing.tolerances import assert_close


def _k(x: torch.Tensor, w: torch.Tensor) -> torch.Tensor:
    return ops.rms_norm(x, w, 1e-6, impl="triton")


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("shape", ROW_SHAPES)
def test_kernel_matches_reference(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    x, w = make(shape, dtype), make(shape[-1:], dtype)
    check_op(_k, ops.rms_norm_reference, [x, w], grad=(0, 1), msg=str(shape))


@pytest.mark.filterwarnings(
    "ignore::RuntimeWarning"
)  # numpy reports the inf·0 and overflows we ask for
def test_special_values() -> None:
    x = torch.tensor(
        [
            [0.0, 0.0, 0.0],
            [float("inf"), 1.0, 2.0],
            [float("nan"), 1.0, 1.0],
            [1e-40, 2e-40, 0.0],
            [65504.0, -65504.0, 1.0],
        ]
    )
    w = torch.ones(3)
    assert_close(_k(x, w), ops.rms_norm_reference(x, w))
    xh = torch.tensor([[65504.0, -65504.0, 1.0], [6e-8, 0.0, 0.0]], dtype=torch.float16)
    assert_close(
        _k(xh, w.half()), ops.rms_norm_reference(xh.double(), w.double()), dtype=torch.float16
    )


def test_opcheck() -> None:
    torch.library.opcheck(
        torch.ops.anyware.rms_norm.default, (torch.randn(3, 8), torch.randn(8), 1e-6)
    )
    x, w = torch.randn(3, 8), torch.randn(8)
    rstd = torch.rsqrt(x.pow(2).mean(-1) + 1e-6)
    torch.library.opcheck(
        torch.ops.anyware.rms_norm_backward.default, (torch.randn(3, 8), x, w, rstd)
    )


def test_bf16_reference_path() -> None:
    x, w = make((4, 33), torch.bfloat16), make((33,), torch.bfloat16)
    assert_close(
        ops.rms_norm(x, w), ops.rms_norm_reference(x.double(), w.double()), dtype=torch.bfloat16
    )


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="weight has length"):
        ops.rms_norm(torch.ones(2, 4), torch.ones(5))
    with pytest.raises(ValueError, match="weight must be 1-D"):
        ops.rms_norm(torch.ones(2, 4), torch.ones(1, 4))
    with pytest.raises(ValueError, match="eps"):
        ops.rms_norm(torch.ones(2, 4), torch.ones(4), eps=-1.0)
