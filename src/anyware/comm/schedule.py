"""Collectives as plain data: a schedule is, for one rank, a list of rounds of sends, receives
and local copies over three flat buffers (the input, the output and a scratch buffer).

Every algorithm in :mod:`anyware.comm.algorithms` is a function that *builds* such a schedule
and nothing else; every transport in :mod:`anyware.comm.transports` *runs* any schedule. That
split is what lets one ring or tree serve gloo, shared memory and the simulator alike, and lets
tests check every algorithm at every world size in-process (:func:`run_local`) before a single
process is spawned.

Semantics of one round, identical in every transport:

1. ``pre`` copies run (packing blocks for a send);
2. every send reads its span *as it is now*;
3. every receive writes (``reduce=False``) or combines (``reduce=True``) into its span. When a
   receive overlaps a send span or another receive (``Round.staged``), the data is staged and
   applied after all sends finished, in the listed order, so results never depend on timing;
4. ``post`` copies run (unpacking).

Messages between two ranks are matched first-in first-out; within a round, sends to one peer
and receives from one peer are ordered by ``tag``, so builders that merge two trees into one
round stay unambiguous.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from enum import StrEnum
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Sequence

    import torch


class Buf(StrEnum):
    IN = "in"
    OUT = "out"
    TMP = "tmp"


@dataclass(frozen=True, slots=True)
class Span:
    """``count`` elements of ``buf`` from element ``offset``."""

    buf: Buf
    offset: int
    count: int

    def __post_init__(self) -> None:
        assert self.offset >= 0 and self.count >= 0, self

    def overlaps(self, other: Span) -> bool:
        return (
            self.buf == other.buf
            and self.count > 0
            and other.count > 0
            and self.offset < other.offset + other.count
            and other.offset < self.offset + self.count
        )


@dataclass(frozen=True, slots=True)
class Send:
    peer: int
    span: Span
    tag: int = 0


@dataclass(frozen=True, slots=True)
class Recv:
    peer: int
    span: Span
    reduce: bool = False
    tag: int = 0


@dataclass(frozen=True, slots=True)
class Copy:
    src: Span
    dst: Span

    def __post_init__(self) -> None:
        assert self.src.count == self.dst.count, self


@dataclass(frozen=True, slots=True, kw_only=True)
class Round:
    sends: tuple[Send, ...] = ()
    recvs: tuple[Recv, ...] = ()
    pre: tuple[Copy, ...] = ()
    post: tuple[Copy, ...] = ()
    staged: bool = field(init=False, default=False)
    """True when a receive overlaps a send or another receive (see the module docstring)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "sends", tuple(sorted(self.sends, key=lambda s: (s.peer, s.tag))))
        object.__setattr__(self, "recvs", tuple(sorted(self.recvs, key=lambda r: (r.peer, r.tag))))
        staged = False
        for i, r in enumerate(self.recvs):
            if any(r.span.overlaps(s.span) for s in self.sends) or any(
                r.span.overlaps(o.span) for o in self.recvs[i + 1 :]
            ):
                staged = True
                break
        object.__setattr__(self, "staged", staged)


@dataclass(frozen=True, slots=True, kw_only=True)
class Schedule:
    """What one rank does in one collective."""

    rank: int
    world: int
    rounds: tuple[Round, ...]
    tmp_count: int = 0
    """Elements of scratch space the schedule needs."""

    def __post_init__(self) -> None:
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} is outside a world of {self.world}")
        for rnd in self.rounds:
            ops: list[Send | Recv] = [*rnd.sends, *rnd.recvs]
            for op in ops:
                if not 0 <= op.peer < self.world or op.peer == self.rank:
                    raise ValueError(f"rank {self.rank}: bad peer {op.peer} in {op}")

    @property
    def messages(self) -> int:
        return sum(len(r.sends) for r in self.rounds)


class Builder:
    """Collects a rank's operations by round index, so algorithms compose by offsetting rounds
    (``hierarchical`` = an intra-host schedule, then an inter-host one, then intra again)."""

    def __init__(self, rank: int, world: int) -> None:
        self.rank, self.world = rank, world
        self._ops: dict[int, dict[str, list[object]]] = defaultdict(lambda: defaultdict(list))
        self.tmp_count = 0
        self.length = 0

    def _at(self, rnd: int, kind: str, op: object) -> None:
        self._ops[rnd][kind].append(op)
        self.length = max(self.length, rnd + 1)

    def send(self, rnd: int, peer: int, span: Span, tag: int = 0) -> None:
        self._at(rnd, "sends", Send(peer, span, tag))

    def recv(self, rnd: int, peer: int, span: Span, *, reduce: bool = False, tag: int = 0) -> None:
        self._at(rnd, "recvs", Recv(peer, span, reduce, tag))

    def copy(self, rnd: int, src: Span, dst: Span, *, post: bool = False) -> None:
        if src != dst and src.count:
            self._at(rnd, "post" if post else "pre", Copy(src, dst))

    def need_tmp(self, count: int) -> None:
        self.tmp_count = max(self.tmp_count, count)

    def build(self) -> Schedule:
        rounds = []
        for i in range(self.length):
            ops = self._ops.get(i, {})
            rounds.append(
                Round(
                    sends=tuple(ops.get("sends", ())),  # type: ignore[arg-type]
                    recvs=tuple(ops.get("recvs", ())),  # type: ignore[arg-type]
                    pre=tuple(ops.get("pre", ())),  # type: ignore[arg-type]
                    post=tuple(ops.get("post", ())),  # type: ignore[arg-type]
                )
            )
        # Drop trailing empty rounds; keep inner ones so ranks stay aligned round by round.
        while rounds and not (
            rounds[-1].sends or rounds[-1].recvs or rounds[-1].pre or rounds[-1].post
        ):
            rounds.pop()
        return Schedule(
            rank=self.rank, world=self.world, rounds=tuple(rounds), tmp_count=self.tmp_count
        )


def bounds(count: int, parts: int) -> list[int]:
    """Split ``count`` elements into ``parts`` contiguous blocks whose sizes differ by at most
    one (so primes and counts smaller than ``parts`` work): block i is
    ``[b[i], b[i + 1])``."""
    return [(i * count) // parts for i in range(parts + 1)]


def view(
    buffers: dict[Buf, torch.Tensor], span: Span
) -> torch.Tensor:  # the one place spans meet tensors
    return buffers[span.buf][span.offset : span.offset + span.count]


def run_local(
    schedules: Sequence[Schedule], buffers: Sequence[dict[Buf, torch.Tensor]], op: object = "sum"
) -> None:
    """Run one schedule per rank in this process (the reference transport): every message is
    matched, sized and applied exactly as a real transport must, so tests check algorithms at
    any world size without processes."""
    import torch

    from anyware.comm.reduce_ops import combine, parse_op

    rop = parse_op(op)
    world = len(schedules)
    for r, (s, b) in enumerate(zip(schedules, buffers, strict=True)):
        assert s.rank == r and s.world == world
        b.setdefault(Buf.TMP, torch.empty(s.tmp_count, dtype=b[Buf.IN].dtype))
    n_rounds = max((len(s.rounds) for s in schedules), default=0)
    empty = Round()
    for i in range(n_rounds):
        rounds = [s.rounds[i] if i < len(s.rounds) else empty for s in schedules]
        for rnd, b in zip(rounds, buffers, strict=True):
            for c in rnd.pre:
                view(b, c.dst).copy_(view(b, c.src).clone())
        wire: dict[tuple[int, int], list[torch.Tensor]] = defaultdict(list)
        for src, (rnd, b) in enumerate(zip(rounds, buffers, strict=True)):
            for snd in rnd.sends:
                wire[(src, snd.peer)].append(view(b, snd.span).clone())
        for dst, (rnd, b) in enumerate(zip(rounds, buffers, strict=True)):
            for rv in rnd.recvs:
                queue = wire[(rv.peer, dst)]
                if not queue:
                    raise AssertionError(
                        f"round {i}: rank {dst} waits for {rv.peer}, who sent nothing"
                    )
                data = queue.pop(0)
                if data.numel() != rv.span.count:
                    raise AssertionError(
                        f"round {i}: {rv.peer}->{dst} sent {data.numel()}, expected {rv.span.count}"
                    )
                if rv.reduce:
                    combine(rop, view(b, rv.span), data)
                else:
                    view(b, rv.span).copy_(data)
        left = {k: len(v) for k, v in wire.items() if v}
        if left:
            raise AssertionError(f"round {i}: unreceived messages {left}")
        for rnd, b in zip(rounds, buffers, strict=True):
            for c in rnd.post:
                view(b, c.dst).copy_(view(b, c.src).clone())
