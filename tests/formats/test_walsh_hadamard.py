"""The Walsh–Hadamard butterfly against the explicit matrix; orthogonality; outlier spreading."""

from __future__ import annotations

import pytest
import torch

from anyware.formats import fake_quantize, hadamard_transform
from anyware.formats.hadamard import (
    hadamard_block,
    hadamard_matrix,
    hadamard_reference,
    random_signs,
)
from anyware.testing.tolerances import assert_close, sqnr_db


@pytest.mark.parametrize("n", [1, 2, 8, 64, 96, 256])
def test_butterfly_matches_matrix(n: int) -> None:
    x = torch.randn(4, 3, n, dtype=torch.float64)
    s = random_signs(n, seed=n)
    assert_close(hadamard_transform(x, signs=s), hadamard_reference(x, signs=s))


def test_orthogonal_and_self_inverse() -> None:
    h = hadamard_matrix(64, dtype=torch.float64)
    assert_close(h @ h.T, torch.eye(64, dtype=torch.float64))
    assert set((h * 8).round().unique().tolist()) == {-1.0, 1.0}
    x = torch.randn(5, 64, dtype=torch.float64)
    assert_close(hadamard_transform(hadamard_transform(x)), x)
    assert hadamard_block(96) == 32 and hadamard_block(64) == 64


def test_rotation_leaves_a_linear_layer_unchanged() -> None:
    w, x = torch.randn(16, 64, dtype=torch.float64), torch.randn(8, 64, dtype=torch.float64)
    s = random_signs(64, seed=1)
    y = hadamard_transform(x, signs=s) @ hadamard_transform(w, signs=s).T
    assert_close(y, x @ w.T)


def test_rotation_tames_an_outlier_channel_for_int4() -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 128, generator=g)
    x[:, 7] *= 60  # one outlier channel
    plain = sqnr_db(x, fake_quantize(x, "int4", group_size=None))
    s = random_signs(128, seed=0)
    r = hadamard_transform(x, signs=s)
    rotated = sqnr_db(r, fake_quantize(r, "int4", group_size=None))
    assert rotated > plain + 6, (plain, rotated)


def test_bad_signs_shape() -> None:
    with pytest.raises(ValueError, match="signs must have shape"):
        hadamard_transform(torch.ones(2, 8), signs=torch.ones(4))
