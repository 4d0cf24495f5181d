"""Rabenseifner's allreduce: reduce-scatter by recursive halving, allgather by recursive
doubling (MPICH's and HCCL's "H-D"; gloo's ``halving_doubling``).

With p a power of two, step k exchanges n/2^(k+1) bytes with the partner at distance
p/2^(k+1), so

    T = 2·log2(p)·α + 2(p-1)/p·n·β

— the ring's bandwidth term with only log-many latencies: the best of both for medium and
large messages. Other world sizes fold first (Thakur, Rabenseifner & Gropp 2005): with
p' = 2^⌊log2 p⌋ and e = p - p', each even rank below 2e hands its data to its odd neighbour,
the p' survivors run the power-of-two algorithm, and the odd ranks hand the result back,
costing two extra full-size steps.
"""

from __future__ import annotations

from collections.abc import Sequence

from anyware.comm.algorithms import Algorithm, Args, Collective, Links, register
from anyware.comm.schedule import Buf, Builder, Schedule, Span, bounds


def fold(p: int) -> tuple[int, int]:
    """(p', e): the largest power of two ≤ p and the number of extra ranks."""
    p2 = 1 << (p.bit_length() - 1)
    return p2, p - p2


def survivor(i: int, p: int) -> int:
    """Index among the p' survivors of rank ``i``, or -1 for a folded-away even rank."""
    _, e = fold(p)
    if i < 2 * e:
        return i // 2 if i % 2 else -1
    return i - e


def survivor_rank(j: int, p: int) -> int:
    _, e = fold(p)
    return 2 * j + 1 if j < e else j + e


def fold_in(b: Builder, i: int, p: int, span: Span) -> int:
    """Round 0 of a non-power-of-two world: each folded-away rank sends ``span`` to its odd
    neighbour, which reduces it in. Returns the rounds used (0 or 1)."""
    _, e = fold(p)
    if not e:
        return 0
    if i < 2 * e:
        if survivor(i, p) < 0:
            b.send(0, i + 1, span)
        else:
            b.recv(0, i - 1, span, reduce=True)
    return 1


def fold_out(b: Builder, r: int, i: int, p: int, span: Span) -> None:
    """The last round: each survivor that absorbed a neighbour sends it the result."""
    _, e = fold(p)
    if e and i < 2 * e:
        if survivor(i, p) < 0:
            b.recv(r, i + 1, span)
        else:
            b.send(r, i - 1, span)


def super_bounds(rank_bounds: Sequence[int], p: int) -> list[int]:
    """Survivor j's block is the union of the per-rank blocks of the ranks it stands for
    (2j and 2j+1 when it absorbed a neighbour), which is contiguous."""
    p2, e = fold(p)
    return [rank_bounds[2 * j] if j < e else rank_bounds[j + e] for j in range(p2)] + [
        rank_bounds[p]
    ]


def halving_rounds(
    b: Builder, r0: int, group: Sequence[int], j: int, buf: Buf, sb: Sequence[int]
) -> int:
    """Recursive-halving reduce-scatter among survivors ``group`` (power-of-two long):
    afterwards survivor ``j`` holds block ``j`` of ``sb`` reduced."""
    p2 = len(group)
    lo, hi, k, mask = 0, p2, 0, p2 >> 1
    while mask:
        mid = (lo + hi) // 2
        keep, give = ((mid, hi), (lo, mid)) if j & mask else ((lo, mid), (mid, hi))
        peer = group[j ^ mask]
        b.send(r0 + k, peer, Span(buf, sb[give[0]], sb[give[1]] - sb[give[0]]))
        b.recv(r0 + k, peer, Span(buf, sb[keep[0]], sb[keep[1]] - sb[keep[0]]), reduce=True)
        lo, hi = keep
        k, mask = k + 1, mask >> 1
    return k


def doubling_rounds(
    b: Builder, r0: int, group: Sequence[int], j: int, buf: Buf, sb: Sequence[int]
) -> int:
    """Recursive-doubling allgather among survivors: block ``j`` is survivor j's."""
    p2 = len(group)
    lo, hi, k, mask = j, j + 1, 0, 1
    while mask < p2:
        peer = group[j ^ mask]
        plo, phi = (lo + mask, hi + mask) if not j & mask else (lo - mask, hi - mask)
        b.send(r0 + k, peer, Span(buf, sb[lo], sb[hi] - sb[lo]))
        b.recv(r0 + k, peer, Span(buf, sb[plo], sb[phi] - sb[plo]))
        lo, hi = min(lo, plo), max(hi, phi)
        k, mask = k + 1, mask << 1
    return k


def build_allreduce(a: Args) -> Schedule:
    b = Builder(a.rank, a.world)
    p, i = a.world, a.rank
    p2, _ = fold(p)
    j = survivor(i, p)
    whole = Span(Buf.OUT, 0, a.count)
    r = fold_in(b, i, p, whole)
    if j >= 0:
        group = [survivor_rank(x, p) for x in range(p2)]
        sb = bounds(a.count, p2)
        r += halving_rounds(b, r, group, j, Buf.OUT, sb)
        r += doubling_rounds(b, r, group, j, Buf.OUT, sb)
    else:
        r += 2 * (p2.bit_length() - 1)
    fold_out(b, r, i, p, whole)
    return b.build()


def build_reduce_scatter(a: Args) -> Schedule:
    b = Builder(a.rank, a.world)
    p, i, c = a.world, a.rank, a.count
    p2, e = fold(p)
    j = survivor(i, p)
    b.need_tmp(p * c)
    b.copy(0, Span(Buf.IN, 0, p * c), Span(Buf.TMP, 0, p * c))
    r = fold_in(b, i, p, Span(Buf.TMP, 0, p * c))
    if j >= 0:
        group = [survivor_rank(x, p) for x in range(p2)]
        r += halving_rounds(b, r, group, j, Buf.TMP, super_bounds([k * c for k in range(p + 1)], p))
    else:
        r += p2.bit_length() - 1
    if e and i < 2 * e:
        if j < 0:
            b.recv(r, i + 1, Span(Buf.TMP, i * c, c))
        else:
            b.send(r, i - 1, Span(Buf.TMP, (i - 1) * c, c))
        r += 1
    b.copy(max(r - 1, 0), Span(Buf.TMP, i * c, c), Span(Buf.OUT, 0, c), post=True)
    return b.build()


def build_allgather(a: Args) -> Schedule:
    b = Builder(a.rank, a.world)
    p, i, c = a.world, a.rank, a.count
    p2, e = fold(p)
    j = survivor(i, p)
    b.copy(0, Span(Buf.IN, 0, c), Span(Buf.OUT, i * c, c))
    r = 0
    if e:
        if i < 2 * e and j < 0:
            b.send(0, i + 1, Span(Buf.OUT, i * c, c))
        elif i < 2 * e:
            b.recv(0, i - 1, Span(Buf.OUT, (i - 1) * c, c))
        r = 1
    if j >= 0:
        group = [survivor_rank(x, p) for x in range(p2)]
        r += doubling_rounds(
            b, r, group, j, Buf.OUT, super_bounds([k * c for k in range(p + 1)], p)
        )
    else:
        r += p2.bit_length() - 1
    if e and i < 2 * e:
        if j < 0:
            b.recv(r, i + 1, Span(Buf.OUT, 0, p * c))
        else:
            b.send(r, i - 1, Span(Buf.OUT, 0, p * c))
    return b.build()


def _log2(p: int) -> int:
    return fold(p)[0].bit_length() - 1


def cost_allreduce(p: int, n: float, links: Links) -> float:
    al, be = links.flat(p)
    p2, e = fold(p)
    extra = 2 * (al + n * be) if e else 0.0
    # Reduce-received bytes are staged and added (γ each): the halving rounds' (p2-1)/p2 of
    # the buffer, plus the whole buffer folded in from an extra rank.
    reduced = (p2 - 1) / p2 * n + (n if e else 0.0)
    return 2 * _log2(p) * al + 2 * (p2 - 1) / p2 * n * be + extra + links.gamma * reduced


def cost_rs(p: int, n: float, links: Links) -> float:
    al, be = links.flat(p)
    p2, e = fold(p)
    extra = (al + n * be) + (al + n / p * be) if e else 0.0
    return _log2(p) * al + (p2 - 1) / p2 * n * be + extra + links.gamma * n * (1 + 1 / p)


register(
    Algorithm(
        collective=Collective.ALLREDUCE,
        name="halving_doubling",
        build=build_allreduce,
        cost=cost_allreduce,
        doc="Rabenseifner: recursive-halving reduce-scatter + recursive-doubling allgather",
    )
)
register(
    Algorithm(
        collective=Collective.REDUCE_SCATTER,
        name="halving_doubling",
        build=build_reduce_scatter,
        cost=cost_rs,
        doc="recursive halving, folding non-power-of-two worlds",
    )
)
register(
    Algorithm(
        collective=Collective.ALLGATHER,
        name="recursive_doubling",
        build=build_allgather,
        cost=cost_rs,
        doc="recursive doubling, folding non-power-of-two worlds",
    )
)
