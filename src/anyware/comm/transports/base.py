"""What every transport shares: the message header that catches mismatched calls, the
transport protocol, and the local steps of a round (copies, staging, reductions).

Every message carries a 64-byte header naming the collective, its sequence number, the reduce
op, the dtype, the tensor's element count and the message's element count. A receiver that
finds a header unlike its own expectation raises :class:`CommMismatchError` naming the peer and
both sides' values, instead of reducing garbage or waiting forever for bytes that will never
come.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Protocol

from anyware.comm.errors import CommMismatchError
from anyware.comm.reduce_ops import ReduceOp, combine
from anyware.comm.schedule import Buf, Copy, Round, view

if TYPE_CHECKING:
    import torch

    from anyware.comm.schedule import Schedule

HEADER_WORDS = 8
HEADER_BYTES = HEADER_WORDS * 8
_DTYPES = [
    "float32",
    "float16",
    "bfloat16",
    "float64",
    "int64",
    "int32",
    "int16",
    "int8",
    "uint8",
    "bool",
    "float8_e4m3fn",
    "float8_e5m2",
    "complex64",
]
DTYPE_CODE = {name: i + 1 for i, name in enumerate(_DTYPES)}
_SIZES = (4, 2, 2, 8, 8, 4, 2, 1, 1, 1, 1, 1, 8)
ITEMSIZE = {i + 1: n for i, n in enumerate(_SIZES)}
_DTYPE_NAME = {v: k for k, v in DTYPE_CODE.items()}
_COLL = ["allreduce", "reduce_scatter", "allgather", "broadcast", "reduce", "alltoall", "barrier"]


class TransportKind(StrEnum):
    P2P = "p2p"
    SHM = "shm"
    HYBRID = "hybrid"


_CODE_CACHE: dict[object, int] = {}


def dtype_code(dtype: torch.dtype) -> int:
    code = _CODE_CACHE.get(dtype)
    if code is None:
        code = _CODE_CACHE[dtype] = DTYPE_CODE.get(str(dtype).removeprefix("torch."), 99)
    return code


@dataclass(frozen=True, slots=True, kw_only=True)
class Header:
    """Who is calling what: identical on every rank of a well-formed collective."""

    seq: int
    collective: str
    op: ReduceOp
    dtype: int
    numel: int
    algo: int = 0

    def words(self, count: int) -> list[int]:
        coll = _COLL.index(self.collective) + 1 if self.collective in _COLL else 0
        op_code = list(ReduceOp).index(self.op) + 1
        return [self.seq, coll, op_code, self.dtype, self.numel, count, self.algo, 0x616E79]

    def check(self, got: list[int], count: int, *, me: int, peer: int) -> None:
        """Raise naming ``peer`` when ``got`` (its header) disagrees with ours."""
        want = self.words(count)
        if got == want:
            return
        if got[7] != want[7]:
            raise CommMismatchError(
                f"rank {me} received a corrupt message from rank {peer} (collective #{self.seq})",
                rank=peer,
            )
        names = [
            "call number",
            "collective",
            "reduce op",
            "dtype",
            "element count",
            "message size",
            "algorithm",
        ]
        show: dict[int, Callable[[int], str]] = {
            1: lambda v: _COLL[v - 1] if 0 < v <= len(_COLL) else str(v),
            2: lambda v: list(ReduceOp)[v - 1].value if 0 < v <= len(ReduceOp) else str(v),
            3: lambda v: _DTYPE_NAME.get(v, str(v)),
        }
        diffs = []
        for i in range(7):
            if got[i] != want[i]:
                f = show.get(i, str)
                diffs.append(f"{names[i]} {f(got[i])} on rank {peer} vs {f(want[i])} on rank {me}")
        raise CommMismatchError(
            f"mismatched {self.collective} across ranks: {'; '.join(diffs)} — every rank must "
            "call the same collective with tensors of the same shape, dtype and op",
            rank=peer,
        )


class Transport(Protocol):
    rank: int
    world: int
    kind: TransportKind

    def run(
        self, schedule: Schedule, buffers: dict[Buf, torch.Tensor], op: ReduceOp, header: Header
    ) -> None:
        """Execute ``schedule`` on ``buffers`` (flat, contiguous, one dtype)."""
        ...

    def close(self) -> None: ...


def copies(buffers: dict[Buf, torch.Tensor], ops: tuple[Copy, ...]) -> None:
    for c in ops:
        src, dst = view(buffers, c.src), view(buffers, c.dst)
        if c.src.buf == c.dst.buf and c.src.overlaps(c.dst):
            src = src.clone()
        dst.copy_(src)


def deliver(
    buffers: dict[Buf, torch.Tensor], rnd: Round, index: int, data: torch.Tensor, op: ReduceOp
) -> None:
    """Apply the ``index``-th receive of ``rnd`` with ``data`` (already the right dtype)."""
    rv = rnd.recvs[index]
    dst = view(buffers, rv.span)
    if rv.reduce:
        combine(op, dst, data)
    else:
        dst.copy_(data)
