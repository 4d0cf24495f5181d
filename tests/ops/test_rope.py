"""rope: kernel vs reference, forward and backward; opcheck; bad input."""

from __future__ import annotations

import pytest
import torch
from tests.ops.opcases import KERNEL_DTYPES, check_op, make

from anyware import ops


def _tables(seq: int, d: int, dtype: torch.dtype) -> tuple[torch.Tensor, torch.Tensor]:
    angles = (
        torch.arange(seq, dtype=torch.float64)[:, None]
        * 10000 ** (-torch.arange(0, d, 2) / d)[None]
    )
    return angles.cos().to(dtype), angles.sin().to(dtype)


def _k(x: torch.Tensor, c: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return ops.rope(x, c, s, impl="triton")


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("shape", [(1, 2), (3, 17, 6), (2, 3, 33, 64), (1, 2, 5, 128)])
def test_kernel_matches_reference(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    cos, sin = _tables(shape[-2], shape[-1], dtype)
    check_op(_k, ops.rope_reference, [make(shape, dtype), cos, sin], grad=(0,), msg=str(shape))


def test_opcheck() -> None:
    cos, sin = _tables(5, 8, torch.float32)
    torch.library.opcheck(torch.ops.anyware.rope.default, (torch.randn(2, 5, 8), cos, sin))


def test_rotation_keeps_norm() -> None:
    x = make((2, 9, 16), torch.float32)
    cos, sin = _tables(9, 16, torch.float32)
    y = _k(x, cos, sin)
    torch.testing.assert_close(y.norm(dim=-1), x.norm(dim=-1), rtol=1e-5, atol=1e-6)


def test_bad_input() -> None:
    cos, sin = _tables(4, 8, torch.float32)
    with pytest.raises(ValueError, match="even"):
        ops.rope(torch.ones(4, 7), cos, sin)
    with pytest.raises(ValueError, match=r"cos has shape \(4, 4\), expected"):
        ops.rope(torch.ones(5, 8), cos, sin)
