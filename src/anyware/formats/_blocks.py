"""Scale blocks: reduce ``|x|`` to one amax per block and broadcast a per-block scale back.

Every scheme here shares one scale per block of the last one or two dimensions: a whole tensor,
a row (``1×K``), a tile (``1×128``, MX ``1×32``, INT4 ``1×group``) or a ``128×128`` block. A
ragged trailing block (K not a multiple of the block width) is allowed and behaves exactly as if
the tensor were zero-padded to the next multiple: zeros never change a block's amax, so the
scale is the same, and the padding is never stored.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch


@dataclass(frozen=True, slots=True, kw_only=True)
class BlockShape:
    """Block extent over the last two dims; ``None`` means "the whole dimension"."""

    rows: int | None
    """Block height (1 for row / 1-D tiles, None for the whole tensor)."""
    cols: int | None
    """Block width along the last dim (None: the whole row)."""

    def __post_init__(self) -> None:
        for name in ("rows", "cols"):
            v = getattr(self, name)
            if v is not None and v <= 0:
                raise ValueError(f"BlockShape.{name} must be positive, got {v}")

    @property
    def whole_tensor(self) -> bool:
        return self.rows is None and self.cols is None


def scale_shape(shape: tuple[int, ...], block: BlockShape) -> tuple[int, ...]:
    """Shape of the scale tensor for an input of ``shape``."""
    if block.whole_tensor:
        return ()
    k = shape[-1] if shape else 1
    bc = block.cols or k
    if block.rows in (None, 1):
        return (*shape[:-1], math.ceil(k / bc))
    if len(shape) < 2:
        raise ValueError(
            f"{block.rows}x{block.cols} blocks need a tensor with at least 2 dims, got shape {tuple(shape)}"
        )
    return (*shape[:-2], math.ceil(shape[-2] / block.rows), math.ceil(k / bc))


def block_amax(x: torch.Tensor, block: BlockShape) -> tuple[torch.Tensor, torch.Tensor]:
    """``(amax of the finite |x| per block, whether the block holds a NaN/Inf)`` in fp32."""
    scale_shape(tuple(x.shape), block)  # rejects shapes the block cannot tile
    a = x.float().abs()
    bad = ~torch.isfinite(a)
    a = torch.where(bad, torch.zeros_like(a), a)
    if block.whole_tensor:
        return a.amax() if a.numel() else a.new_zeros(()), bad.any()
    return _reduce(a, block, "amax"), _reduce(bad, block, "any")


def _reduce(a: torch.Tensor, block: BlockShape, how: str) -> torch.Tensor:
    shape = tuple(a.shape) or (1,)
    a = a.reshape(shape)
    k = shape[-1]
    bc = block.cols or k
    nk = math.ceil(k / bc)
    if block.rows in (None, 1):
        a = _pad_last(a, nk * bc).reshape(*shape[:-1], nk, bc)
        return a.amax(-1) if how == "amax" else a.any(-1)
    br = block.rows
    m = shape[-2]
    nm = math.ceil(m / br)
    a = _pad_last(a, nk * bc)
    a = _pad_last(a.transpose(-1, -2), nm * br).transpose(-1, -2)
    a = a.reshape(*shape[:-2], nm, br, nk, bc)
    return a.amax(dim=(-3, -1)) if how == "amax" else a.any(-1).any(-2)


def _pad_last(a: torch.Tensor, n: int) -> torch.Tensor:
    extra = n - a.shape[-1]
    if extra == 0:
        return a
    return torch.cat([a, a.new_zeros((*a.shape[:-1], extra))], dim=-1)


def expand(scales: torch.Tensor, shape: tuple[int, ...], block: BlockShape) -> torch.Tensor:
    """Broadcast per-block ``scales`` to the element ``shape``."""
    if block.whole_tensor:
        return scales.expand(shape) if shape else scales
    shape_ = shape or (1,)
    k = shape_[-1]
    bc = block.cols or k
    s = scales.repeat_interleave(bc, dim=-1)[..., :k]
    if block.rows not in (None, 1):
        s = s.repeat_interleave(block.rows, dim=-2)[..., : shape_[-2], :]
    return s.reshape(shape)
