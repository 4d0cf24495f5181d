"""The collectives, in place like their ``torch.distributed`` twins, ``algo=None`` meaning
"let the cost model choose" (see :mod:`anyware.comm.select`).

Each function validates its input on this rank (contiguity is handled, dtype/op pairs and
split sizes are checked), flattens the tensors into the schedule's buffers and runs the chosen
schedule on the group's transport. Mismatches *across* ranks are caught by the message headers
and raised as :class:`~anyware.comm.errors.CommMismatchError` naming the other rank.
"""

from __future__ import annotations

import concurrent.futures
import functools
import math
from collections.abc import Callable, Sequence
from typing import Any

import torch
import torch.distributed as dist

from anyware.comm.algorithms import Args, Collective
from anyware.comm.reduce_ops import ReduceOp, check_dtype, parse_op
from anyware.comm.schedule import Buf
from anyware.comm.state import Communicator

_COMMS: dict[int, Communicator] = {}


def communicator(group: Any = None, **kwargs: Any) -> Communicator:
    """The group's communicator, created on first use (every rank must reach this together).
    ``kwargs`` (transport, timeout_s, hosts, cost, calibrate) apply only on creation."""
    key = id(group) if group is not None else 0
    comm = _COMMS.get(key)
    if comm is None:
        comm = _COMMS[key] = Communicator(group, **kwargs)
    return comm


def destroy(group: Any = None) -> None:
    """Close the group's communicator (its shared memory goes with the last mapping)."""
    comm = _COMMS.pop(id(group) if group is not None else 0, None)
    if comm is not None:
        comm.close()


class Work:
    """What ``async_op=True`` returns: ``wait()``, ``is_completed()``, ``get_future()``."""

    def __init__(self, fut: concurrent.futures.Future[Any], result: Any) -> None:
        self._fut, self._result = fut, result

    def wait(self, timeout: float | None = None) -> bool:
        self._fut.result(timeout)
        return True

    def is_completed(self) -> bool:
        return self._fut.done()

    def get_future(self) -> torch.futures.Future[Any]:
        out: torch.futures.Future[Any] = torch.futures.Future()

        def done(f: concurrent.futures.Future[Any]) -> None:
            err = f.exception()
            if err is not None:
                out.set_exception(err)
            else:
                out.set_result(self._result)

        self._fut.add_done_callback(done)
        return out


def _flat(t: torch.Tensor, name: str) -> tuple[torch.Tensor, Callable[[], None]]:
    """A flat view (or contiguous copy) of ``t`` and how to write results back."""
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
    if t.is_contiguous():
        return t.view(-1), _nothing
    flat = t.contiguous().view(-1)

    def back() -> None:
        t.copy_(flat.view_as(t))

    return flat, back


@functools.lru_cache(maxsize=1024)
def _args(rank: int, world: int, count: int, itemsize: int, ranks_per_host: int) -> Args:
    """Arguments are validated once per shape, not on every call (the latency path)."""
    return Args(
        rank=rank, world=world, count=count, itemsize=itemsize, ranks_per_host=ranks_per_host
    )


def _launch(
    comm: Communicator,
    async_op: bool,
    kind: Collective,
    args: Args,
    bufs: dict[Buf, torch.Tensor],
    op: ReduceOp,
    algo: str | None,
    numel: int,
    result: Any,
    finish: Callable[[], None],
) -> Work | None:
    """Run (or queue) one collective, then ``finish`` (scale an average, copy results back)."""

    def body() -> str:
        name = comm.execute(kind, args, bufs, op, algo=algo, numel=numel)
        finish()
        return name

    out = comm.submit(body, async_op)
    return Work(out, result) if async_op else None


def _nothing() -> None:
    return None


def _finisher(
    back: Callable[[], None], rop: ReduceOp, t: torch.Tensor, world: int
) -> Callable[[], None]:
    """Divide ``t`` by the world size for an average, then copy results back."""
    if rop is not ReduceOp.AVG:
        return back

    def finish() -> None:
        t.div_(world)
        back()

    return finish


def all_reduce(
    tensor: torch.Tensor,
    op: Any = "sum",
    algo: str | None = None,
    *,
    group: Any = None,
    async_op: bool = False,
) -> Work | None:
    """Reduce ``tensor`` across the group in place."""
    rop = parse_op(op)
    check_dtype(rop, tensor.dtype)
    comm = communicator(group)
    flat, back = _flat(tensor, "tensor")
    args = _args(comm.rank, comm.world, flat.numel(), flat.element_size(), comm.ranks_per_host)

    bufs = {Buf.IN: flat, Buf.OUT: flat}
    finish = _finisher(back, rop, flat, comm.world)
    return _launch(
        comm, async_op, Collective.ALLREDUCE, args, bufs, rop, algo, flat.numel(), tensor, finish
    )


def reduce(
    tensor: torch.Tensor,
    dst: int = 0,
    op: Any = "sum",
    algo: str | None = None,
    *,
    group: Any = None,
    async_op: bool = False,
) -> Work | None:
    """Reduce into ``tensor`` on rank ``dst``; other ranks' tensors are left unchanged."""
    rop = parse_op(op)
    check_dtype(rop, tensor.dtype)
    comm = communicator(group)
    _check_root(dst, comm.world, "dst")
    flat, back = _flat(tensor, "tensor")
    args = Args(
        rank=comm.rank, world=comm.world, count=flat.numel(), root=dst, itemsize=flat.element_size()
    )

    bufs = {Buf.IN: flat, Buf.OUT: flat}
    # Only the root holds the result; the other ranks' buffers are scratch.
    finish = _finisher(back, rop, flat, comm.world) if comm.rank == dst else _nothing
    return _launch(
        comm, async_op, Collective.REDUCE, args, bufs, rop, algo, flat.numel(), tensor, finish
    )


def broadcast(
    tensor: torch.Tensor,
    src: int = 0,
    algo: str | None = None,
    *,
    group: Any = None,
    async_op: bool = False,
) -> Work | None:
    """Copy rank ``src``'s ``tensor`` into every rank's ``tensor``."""
    comm = communicator(group)
    _check_root(src, comm.world, "src")
    flat, back = _flat(tensor, "tensor")
    args = Args(
        rank=comm.rank, world=comm.world, count=flat.numel(), root=src, itemsize=flat.element_size()
    )

    bufs = {Buf.IN: flat, Buf.OUT: flat}
    return _launch(
        comm,
        async_op,
        Collective.BROADCAST,
        args,
        bufs,
        ReduceOp.SUM,
        algo,
        flat.numel(),
        tensor,
        back,
    )


def _check_root(root: int, world: int, name: str) -> None:
    if not isinstance(root, int) or not 0 <= root < world:
        raise ValueError(f"{name}={root!r} is not a rank of this group (0..{world - 1})")


def _gather_out(
    output: torch.Tensor | Sequence[torch.Tensor],
    world: int,
    block: int,
    like: torch.Tensor,
    name: str,
) -> tuple[torch.Tensor, Callable[[], None]]:
    """(flat world×block buffer, write-back) for a tensor or a list of ``world`` tensors."""
    if isinstance(output, torch.Tensor):
        if output.numel() != world * block or output.dtype != like.dtype:
            raise ValueError(
                f"{name} must hold world_size × {block} = {world * block} elements of {like.dtype}, "
                f"got {output.numel()} of {output.dtype}"
            )
        return _flat(output, name)
    parts = list(output)
    if len(parts) != world or any(p.numel() != block or p.dtype != like.dtype for p in parts):
        raise ValueError(
            f"{name} must be {world} tensors of {block} elements of {like.dtype}, got "
            f"{[(tuple(p.shape), str(p.dtype)) for p in parts]}"
        )
    flat = torch.empty(world * block, dtype=like.dtype, device=like.device)

    def back() -> None:
        for i, p in enumerate(parts):
            p.copy_(flat[i * block : (i + 1) * block].view_as(p))

    return flat, back


def all_gather(
    output: torch.Tensor | Sequence[torch.Tensor],
    input: torch.Tensor,
    algo: str | None = None,
    *,
    group: Any = None,
    async_op: bool = False,
) -> Work | None:
    """Gather every rank's ``input`` into ``output`` (one tensor of world × input elements,
    like ``all_gather_into_tensor``, or a list of world tensors, like ``all_gather``)."""
    comm = communicator(group)
    inp, _ = _flat(input, "input")
    out, back = _gather_out(output, comm.world, inp.numel(), input, "output")
    args = Args(rank=comm.rank, world=comm.world, count=inp.numel(), itemsize=inp.element_size())

    bufs = {Buf.IN: inp, Buf.OUT: out}
    return _launch(
        comm,
        async_op,
        Collective.ALLGATHER,
        args,
        bufs,
        ReduceOp.SUM,
        algo,
        inp.numel(),
        output,
        back,
    )


def reduce_scatter(
    output: torch.Tensor,
    input: torch.Tensor | Sequence[torch.Tensor],
    op: Any = "sum",
    algo: str | None = None,
    *,
    group: Any = None,
    async_op: bool = False,
) -> Work | None:
    """Reduce ``input`` (world blocks: one tensor, like ``reduce_scatter_tensor``, or a
    list) across ranks; rank i's ``output`` gets block i."""
    rop = parse_op(op)
    check_dtype(rop, output.dtype)
    comm = communicator(group)
    out, back = _flat(output, "output")
    block, p = out.numel(), comm.world
    parts = [input] if isinstance(input, torch.Tensor) else list(input)
    want = [p * block] if isinstance(input, torch.Tensor) else [block] * p
    if [t.numel() for t in parts] != want or any(t.dtype != output.dtype for t in parts):
        raise ValueError(
            f"input must be world_size × {block} elements of {output.dtype} (one tensor or "
            f"{p} tensors), got {[(tuple(t.shape), str(t.dtype)) for t in parts]}"
        )
    inp = (
        _flat(parts[0], "input")[0]
        if len(parts) == 1 and want == [p * block]
        else (torch.cat([t.reshape(-1) for t in parts]))
    )
    args = Args(rank=comm.rank, world=comm.world, count=out.numel(), itemsize=out.element_size())

    bufs = {Buf.IN: inp, Buf.OUT: out}
    finish = _finisher(back, rop, out, comm.world)
    return _launch(
        comm,
        async_op,
        Collective.REDUCE_SCATTER,
        args,
        bufs,
        rop,
        algo,
        out.numel(),
        output,
        finish,
    )


def all_to_all(
    output: torch.Tensor,
    input: torch.Tensor,
    output_split_sizes: Sequence[int] | None = None,
    input_split_sizes: Sequence[int] | None = None,
    algo: str | None = None,
    *,
    group: Any = None,
    async_op: bool = False,
) -> Work | None:
    """``all_to_all_single``: split ``input`` along dim 0 (equally, or by
    ``input_split_sizes``), send piece j to rank j, and concatenate what arrives into
    ``output`` (equally, or by ``output_split_sizes``)."""
    comm = communicator(group)
    inp, _ = _flat(input, "input")
    out, back = _flat(output, "output")
    if input.dtype != output.dtype:
        raise ValueError(f"input is {input.dtype} but output is {output.dtype}; use one dtype")
    args = _a2a_shape(
        comm.rank,
        comm.world,
        comm.ranks_per_host,
        inp.element_size(),
        input.shape,
        output.shape,
        None if input_split_sizes is None else tuple(int(s) for s in input_split_sizes),
        None if output_split_sizes is None else tuple(int(s) for s in output_split_sizes),
    )
    given = input_split_sizes is not None or output_split_sizes is not None
    chosen = algo if algo is not None or not given else "pairwise"  # ranks must agree

    bufs = {Buf.IN: inp, Buf.OUT: out}
    return _launch(
        comm, async_op, Collective.ALLTOALL, args, bufs, ReduceOp.SUM, chosen, 0, output, back
    )


@functools.lru_cache(maxsize=1024)
def _a2a_shape(
    rank: int,
    p: int,
    rph: int,
    itemsize: int,
    in_shape: torch.Size,
    out_shape: torch.Size,
    in_splits: tuple[int, ...] | None,
    out_splits: tuple[int, ...] | None,
) -> Args:
    """Validate an all-to-all's shapes and splits once per call shape (the latency path):
    element counts per peer, or a ``ValueError`` naming the bad argument."""
    row_in = math.prod(in_shape[1:]) if in_shape else 1
    row_out = math.prod(out_shape[1:]) if out_shape else 1
    send = _splits(in_splits, in_shape, p, "input")
    recv = _splits(out_splits, out_shape, p, "output")
    if in_shape and out_shape and in_shape[1:] != out_shape[1:]:
        raise ValueError(
            f"input rows {tuple(in_shape[1:])} differ from output rows {tuple(out_shape[1:])}"
        )
    return Args(
        rank=rank,
        world=p,
        itemsize=itemsize,
        send_counts=tuple(s * row_in for s in send),
        recv_counts=tuple(r * row_out for r in recv),
        ranks_per_host=rph,
    )


def _splits(sizes: tuple[int, ...] | None, shape: torch.Size, p: int, name: str) -> list[int]:
    rows = shape[0] if shape else 1
    if sizes is None:
        if rows % p:
            raise ValueError(
                f"{name} has {rows} rows, not divisible by the world size {p}; pass {name}_split_sizes"
            )
        return [rows // p] * p
    if len(sizes) != p or any(s < 0 for s in sizes) or sum(sizes) != rows:
        raise ValueError(
            f"{name}_split_sizes {list(sizes)} must be {p} non-negative sizes summing to {rows} (the rows of {name})"
        )
    return list(sizes)


def barrier(group: Any = None) -> None:
    """A zero-byte allreduce: returns once every rank arrived."""
    t = torch.zeros(1, dtype=torch.int64)
    all_reduce(t, group=group)


def is_initialized() -> bool:
    return dist.is_available() and dist.is_initialized()
