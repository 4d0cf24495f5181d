"""hadamard: kernel vs the formats butterfly and the explicit matrix; orthogonality; opcheck."""

from __future__ import annotations

import pytest
import torch
from tests.ops.opcases import KERNEL_DTYPES, check_op, make

from anyware import ops
from anyware.formats.hadamard import hadamard_reference as matrix_reference
from anyware.testing.tolerances import assert_close


def _k(x: torch.Tensor) -> torch.Tensor:
    return ops.hadamard(x, impl="triton")


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize("shape", [(3, 1), (5, 2), (4, 12), (7, 64), (3, 96), (2, 256)])
def test_kernel_matches_reference(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    check_op(_k, ops.hadamard_reference, [make(shape, dtype)], grad=(0,), msg=str(shape))


def test_two_level_kronecker_path() -> None:
    x = make((3, 1024), torch.float32)  # 1024 = 8 × 128: the two-GEMM path
    assert_close(_k(x), matrix_reference(x.double()), dtype=torch.float32)


def test_is_its_own_inverse() -> None:
    x = make((4, 128), torch.float32)
    assert_close(_k(_k(x)), x.double(), dtype=torch.float32)


def test_opcheck() -> None:
    torch.library.opcheck(torch.ops.anyware.hadamard.default, (torch.randn(3, 32),))


def test_bad_input() -> None:
    with pytest.raises(ValueError, match="last dim"):
        ops.hadamard(torch.ones(3, 0))
