"""Reduction operators and the dtypes each one accepts.

A collective combines a received block into a local one with ``combine(op, dst, src)``, always
in the tensor's own dtype (like gloo, which also sums fp16 in fp16), so every rank computes the
same bits from the same operands. ``avg`` is a sum followed by one division at the end, which
keeps the rounding identical on every rank; it is defined for floating dtypes only.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class ReduceOp(StrEnum):
    SUM = "sum"
    PROD = "prod"
    MIN = "min"
    MAX = "max"
    AVG = "avg"
    BAND = "band"
    BOR = "bor"
    BXOR = "bxor"


_BITWISE = {ReduceOp.BAND, ReduceOp.BOR, ReduceOp.BXOR}
_BY_VALUE = {o.value: o for o in ReduceOp}
#: Stable small integers for the wire header (shape/op checks across ranks).
OP_CODE: dict[ReduceOp, int] = {op: i + 1 for i, op in enumerate(ReduceOp)}


def parse_op(op: object) -> ReduceOp:
    """Accept ``"sum"``, :class:`ReduceOp` or ``torch.distributed.ReduceOp.SUM``."""
    if isinstance(op, ReduceOp):
        return op
    if isinstance(op, str) and op in _BY_VALUE:
        return _BY_VALUE[op]
    name = str(op).rsplit(".", 1)[-1].lower()
    name = {"product": "prod", "premul_sum": "premul_sum"}.get(name, name)
    try:
        return ReduceOp(name)
    except ValueError:
        raise ValueError(
            f"unknown reduce op {op!r}; use one of {', '.join(o.value for o in ReduceOp)}"
        ) from None


_CHECKED: set[tuple[ReduceOp, object]] = set()


def check_dtype(op: ReduceOp, dtype: torch.dtype) -> None:
    """Raise ``TypeError`` for op/dtype pairs that have no meaning (bitwise on floats, avg on
    integers, anything on complex)."""
    if (op, dtype) in _CHECKED:
        return
    _check(op, dtype)
    _CHECKED.add((op, dtype))


def _check(op: ReduceOp, dtype: torch.dtype) -> None:
    if dtype.is_complex:
        raise TypeError(f"reduce op {op.value!r} does not support complex dtype {dtype}")
    if op in _BITWISE and dtype.is_floating_point:
        raise TypeError(
            f"reduce op {op.value!r} needs an integer or bool tensor, got {dtype}; use sum/min/max"
        )
    if op is ReduceOp.AVG and not dtype.is_floating_point:
        raise TypeError(f"reduce op 'avg' needs a floating tensor, got {dtype}; use 'sum'")


def combine(op: ReduceOp, dst: torch.Tensor, src: torch.Tensor) -> None:
    """``dst = op(dst, src)`` in place."""
    import torch

    if op is ReduceOp.SUM or op is ReduceOp.AVG:
        if dst.dtype == torch.bool:
            dst.logical_or_(src)
        else:
            dst.add_(src)
    elif op is ReduceOp.PROD:
        if dst.dtype == torch.bool:
            dst.logical_and_(src)
        else:
            dst.mul_(src)
    elif op is ReduceOp.MIN:
        torch.minimum(dst, src, out=dst)
    elif op is ReduceOp.MAX:
        torch.maximum(dst, src, out=dst)
    elif op is ReduceOp.BAND:
        dst.bitwise_and_(src)
    elif op is ReduceOp.BOR:
        dst.bitwise_or_(src)
    else:
        dst.bitwise_xor_(src)


def torch_op(op: ReduceOp) -> object:
    """The matching ``torch.distributed.ReduceOp`` (for comparisons against gloo)."""
    import torch.distributed as dist

    return {
        ReduceOp.SUM: dist.ReduceOp.SUM,
        ReduceOp.PROD: dist.ReduceOp.PRODUCT,
        ReduceOp.MIN: dist.ReduceOp.MIN,
        ReduceOp.MAX: dist.ReduceOp.MAX,
        ReduceOp.AVG: dist.ReduceOp.AVG,
        ReduceOp.BAND: dist.ReduceOp.BAND,
        ReduceOp.BOR: dist.ReduceOp.BOR,
        ReduceOp.BXOR: dist.ReduceOp.BXOR,
    }[op]
