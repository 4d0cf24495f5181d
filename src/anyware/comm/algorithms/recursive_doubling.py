"""Recursive-doubling allreduce: log2(p) steps, each exchanging the *whole* buffer with the
partner at distance 2^k and reducing.

    T = ⌈log2 p⌉·(α + n·β)        (plus two full-size steps to fold a non-power-of-two world)

Fewest rounds of any allreduce, so it wins whenever latency dominates (small messages, and
especially the shared-memory transport, where one round costs a few microseconds); its
bandwidth term grows with log p, so it loses to the ring and to halving-doubling for large n.
Both partners compute ``a + b`` and ``b + a``, which IEEE addition makes bit-identical, so
every rank ends with the same bits.
"""

from __future__ import annotations

from anyware.comm.algorithms import Algorithm, Args, Collective, Links, register
from anyware.comm.algorithms.halving_doubling import (
    fold,
    fold_in,
    fold_out,
    survivor,
    survivor_rank,
)
from anyware.comm.schedule import Buf, Builder, Schedule, Span


def build_allreduce(a: Args) -> Schedule:
    b = Builder(a.rank, a.world)
    p, i = a.world, a.rank
    p2, _ = fold(p)
    j = survivor(i, p)
    whole = Span(Buf.OUT, 0, a.count)
    r = fold_in(b, i, p, whole)
    mask = 1
    while mask < p2:
        if j >= 0:
            peer = survivor_rank(j ^ mask, p)
            b.send(r, peer, whole)
            b.recv(r, peer, whole, reduce=True)
        r, mask = r + 1, mask << 1
    fold_out(b, r, i, p, whole)
    return b.build()


def cost_allreduce(p: int, n: float, links: Links) -> float:
    al, be = links.flat(p)
    p2, e = fold(p)
    steps = (p2.bit_length() - 1) + (2 if e else 0)
    return steps * (al + n * be) + (p2.bit_length() - 1) * n * links.gamma  # staged rounds


register(
    Algorithm(
        collective=Collective.ALLREDUCE,
        name="recursive_doubling",
        build=build_allreduce,
        cost=cost_allreduce,
        doc="log2(p) whole-buffer exchanges; fewest rounds, best for small messages",
    )
)
