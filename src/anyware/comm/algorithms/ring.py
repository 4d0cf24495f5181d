"""Ring algorithms: reduce-scatter, allgather and allreduce = reduce-scatter + allgather.

Each of the p-1 steps moves one block of n/p bytes to the next rank, so a ring is
bandwidth-optimal (every rank sends 2(p-1)/p·n bytes for an allreduce, the lower bound) but
pays p-1 latencies per phase:

    T_allreduce = 2(p-1)·α + 2(p-1)/p·n·β        T_rs = T_ag = (p-1)·α + (p-1)/p·n·β

That makes it the choice for large messages and the loser for small ones, where the
log-depth algorithms in ``tree``/``recursive_doubling`` win. Blocks differ in size by at most
one element (:func:`~anyware.comm.schedule.bounds`), so any count works with any world size.
"""

from __future__ import annotations

from collections.abc import Sequence

from anyware.comm.algorithms import Algorithm, Args, Collective, Links, register
from anyware.comm.schedule import Buf, Builder, Schedule, Span, bounds


def reduce_scatter_rounds(
    b: Builder, r0: int, group: Sequence[int], me: int, buf: Buf, off: int, bnds: Sequence[int]
) -> int:
    """Ring reduce-scatter among ``group`` (global ranks; this rank is ``group[me]``) over
    blocks ``bnds`` of ``buf`` starting at ``off``: afterwards block ``me`` is reduced."""
    p = len(group)
    nxt, prv = group[(me + 1) % p], group[(me - 1) % p]
    for s in range(p - 1):
        sb, rb = (me - s - 1) % p, (me - s - 2) % p
        b.send(r0 + s, nxt, Span(buf, off + bnds[sb], bnds[sb + 1] - bnds[sb]))
        b.recv(r0 + s, prv, Span(buf, off + bnds[rb], bnds[rb + 1] - bnds[rb]), reduce=True)
    return max(p - 1, 0)


def allgather_rounds(
    b: Builder, r0: int, group: Sequence[int], me: int, buf: Buf, off: int, bnds: Sequence[int]
) -> int:
    """Ring allgather: block ``me`` is this rank's; afterwards every block is everyone's."""
    p = len(group)
    nxt, prv = group[(me + 1) % p], group[(me - 1) % p]
    for s in range(p - 1):
        sb, rb = (me - s) % p, (me - s - 1) % p
        b.send(r0 + s, nxt, Span(buf, off + bnds[sb], bnds[sb + 1] - bnds[sb]))
        b.recv(r0 + s, prv, Span(buf, off + bnds[rb], bnds[rb + 1] - bnds[rb]))
    return max(p - 1, 0)


def build_allreduce(a: Args) -> Schedule:
    b = Builder(a.rank, a.world)
    group = range(a.world)
    bnds = bounds(a.count, a.world)
    n = reduce_scatter_rounds(b, 0, group, a.rank, Buf.OUT, 0, bnds)
    allgather_rounds(b, n, group, a.rank, Buf.OUT, 0, bnds)
    return b.build()


def build_reduce_scatter(a: Args) -> Schedule:
    b = Builder(a.rank, a.world)
    p, c = a.world, a.count
    b.need_tmp(p * c)
    b.copy(0, Span(Buf.IN, 0, p * c), Span(Buf.TMP, 0, p * c))
    n = reduce_scatter_rounds(b, 0, range(p), a.rank, Buf.TMP, 0, [i * c for i in range(p + 1)])
    b.copy(max(n - 1, 0), Span(Buf.TMP, a.rank * c, c), Span(Buf.OUT, 0, c), post=True)
    return b.build()


def build_allgather(a: Args) -> Schedule:
    b = Builder(a.rank, a.world)
    p, c = a.world, a.count
    b.copy(0, Span(Buf.IN, 0, c), Span(Buf.OUT, a.rank * c, c))
    allgather_rounds(b, 0, range(p), a.rank, Buf.OUT, 0, [i * c for i in range(p + 1)])
    return b.build()


def cost_allreduce(p: int, n: float, links: Links) -> float:
    al, be = links.flat(p)
    # The reduce-scatter half receives (p-1)/p of the buffer with reduce=True: staged and
    # added, γ per byte, as recursive doubling's rounds are charged.
    return 2 * (p - 1) * (al + n / p * be) + links.gamma * n * (p - 1) / p


def cost_half(p: int, n: float, links: Links) -> float:
    al, be = links.flat(p)
    return (p - 1) * (al + n / p * be) + links.gamma * n * (1 + 1 / p)


register(
    Algorithm(
        collective=Collective.ALLREDUCE,
        name="ring",
        build=build_allreduce,
        cost=cost_allreduce,
        doc="reduce-scatter then allgather around a ring; bandwidth-optimal",
    )
)
register(
    Algorithm(
        collective=Collective.REDUCE_SCATTER,
        name="ring",
        build=build_reduce_scatter,
        cost=cost_half,
        doc="p-1 steps around a ring, one block each",
    )
)
register(
    Algorithm(
        collective=Collective.ALLGATHER,
        name="ring",
        build=build_allgather,
        cost=cost_half,
        doc="p-1 steps around a ring, one block each",
    )
)
