"""The Walsh–Hadamard transform, the rotation behind QuaRot / SpinQuant W4A4.

A Sylvester Hadamard matrix ``H_n`` (n a power of two) has entries ±1 and ``H Hᵀ = n I``, so
``H / sqrt(n)`` is orthogonal. Rotating a vector by it spreads every coordinate over all
others: an activation channel that is 100× larger than the rest (the outliers that wreck 4-bit
per-token quantisation) becomes a bump of ~100/sqrt(n) on every channel, and the block's amax,
hence its quantisation step, shrinks accordingly. Because the rotation is orthogonal it is free
in exact arithmetic::

    y = W x = (W Hᵀ)(H x)      (H orthonormal)

so the weight side ``W Hᵀ`` is computed once offline ("folded") and only ``H x`` runs at
inference time, in O(n log n) with the butterfly below (``log2 n`` passes of adds and
subtracts: no multiplications, no matrix).

``signs`` (a random ±1 per channel, QuaRot's randomised Hadamard ``H·diag(s)``) decorrelates the
rotation from any structure the data happen to share with the Sylvester pattern.

For a width that is not a power of two, ``n = 2^k · m``, the transform is block-diagonal: an
independent Hadamard on each of the ``m`` consecutive blocks of ``2^k`` (still orthogonal, less
mixing; SpinQuant uses Kronecker products with small non-power-of-two Hadamards instead).
"""

from __future__ import annotations

import math

import torch


def hadamard_block(n: int) -> int:
    """Largest power of two dividing ``n`` (the block the transform mixes)."""
    if n <= 0:
        raise ValueError(f"Hadamard width must be positive, got {n}")
    return n & -n


def hadamard_transform(
    x: torch.Tensor, *, signs: torch.Tensor | None = None, normalize: bool = True
) -> torch.Tensor:
    """``x @ (diag(signs) · H)ᵀ`` along the last dim, in place of a matmul: ``y = H (s ⊙ x)``.

    ``normalize`` divides by ``sqrt(block)`` so the transform is orthogonal (then it is its own
    inverse when ``signs`` is None). The computation runs in fp32 (fp64 stays fp64).
    """
    n = x.shape[-1]
    b = hadamard_block(n)
    work = x.double() if x.dtype == torch.float64 else x.float()
    if signs is not None:
        if signs.shape != (n,):
            raise ValueError(f"signs must have shape ({n},), got {tuple(signs.shape)}")
        work = work * signs.to(work.dtype)
    lead = work.shape[:-1]
    y = work.reshape(-1, n // b, b)
    h = 1
    while h < b:
        # pair element i with i+h inside every group of 2h: (a, c) → (a + c, a - c)
        y = y.reshape(-1, n // b, b // (2 * h), 2, h)
        a, c = y[..., 0, :], y[..., 1, :]
        y = torch.stack((a + c, a - c), dim=-2)
        h *= 2
    y = y.reshape(*lead, n)
    if normalize:
        y = y / math.sqrt(b)
    return y.to(x.dtype)


def hadamard_matrix(n: int, *, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """The orthonormal (block-diagonal when n is not a power of two) matrix ``H`` with
    ``hadamard_transform(x) == x @ H.T``."""
    return hadamard_transform(torch.eye(n, dtype=torch.float64)).T.to(dtype).contiguous()


def random_signs(n: int, *, seed: int) -> torch.Tensor:
    """A seeded ±1 vector (fp32) for the randomised Hadamard ``H·diag(s)``."""
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 2, (n,), generator=g).float() * 2 - 1


def hadamard_reference(x: torch.Tensor, *, signs: torch.Tensor | None = None) -> torch.Tensor:
    """The same transform as an explicit matmul (the specification the butterfly must match)."""
    n = x.shape[-1]
    h = hadamard_matrix(n, dtype=torch.float64)
    xd = x.double() if signs is None else x.double() * signs.double()
    return (xd @ h.T).to(x.dtype)
