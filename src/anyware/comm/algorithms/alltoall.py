"""All-to-all: pairwise exchange (any split sizes: all-to-all-v) and Bruck (uniform).

**Pairwise** (MPICH, HCCL): in step s = 1..p-1 rank i sends its block for i+s and receives
the block from i-s. Every byte travels once:

    T = (p-1)·α + (p-1)/p·n·β

**Bruck** (1997): rotate, then in step k send every block whose index has bit k set to the
rank 2^k ahead; after ⌈log2 p⌉ steps and an inverse rotation each block is home. Half the
data moves in each step, so

    T = ⌈log2 p⌉·(α + n/2·β)

— fewer rounds, more bytes: the choice for small messages at large p. Needs equal blocks.
"""

from __future__ import annotations

from itertools import accumulate

from anyware.comm.algorithms import Algorithm, Args, Collective, Links, register
from anyware.comm.schedule import Buf, Builder, Schedule, Span


def offsets(counts: tuple[int, ...]) -> list[int]:
    return [0, *accumulate(counts)]


def build_pairwise(a: Args) -> Schedule:
    b = Builder(a.rank, a.world)
    p, me = a.world, a.rank
    so, ro = offsets(a.send_counts), offsets(a.recv_counts)
    b.copy(0, Span(Buf.IN, so[me], a.send_counts[me]), Span(Buf.OUT, ro[me], a.recv_counts[me]))
    for s in range(1, p):
        to, frm = (me + s) % p, (me - s) % p
        b.send(s - 1, to, Span(Buf.IN, so[to], a.send_counts[to]))
        b.recv(s - 1, frm, Span(Buf.OUT, ro[frm], a.recv_counts[frm]))
    return b.build()


def uniform(a: Args) -> int | None:
    """The common block size when every split is equal, else None."""
    counts = set(a.send_counts) | set(a.recv_counts)
    return counts.pop() if len(counts) == 1 else (0 if not counts else None)


def _needs_uniform(a: Args) -> str | None:
    return None if uniform(a) is not None else "needs equal split sizes (use 'pairwise')"


def build_bruck(a: Args) -> Schedule:
    b = Builder(a.rank, a.world)
    p, me = a.world, a.rank
    c = uniform(a)
    assert c is not None
    work, pack, land = 0, p * c, p * c + (p // 2 + 1) * c
    b.need_tmp(p * c + 2 * (p // 2 + 1) * c)
    # rotate: work[i] = in[(me + i) % p]
    b.copy(0, Span(Buf.IN, me * c, (p - me) * c), Span(Buf.TMP, work, (p - me) * c))
    b.copy(0, Span(Buf.IN, 0, me * c), Span(Buf.TMP, work + (p - me) * c, me * c))
    k, d = 0, 1
    while d < p:
        idx = [i for i in range(p) if i & d]
        for n, i in enumerate(idx):
            b.copy(k, Span(Buf.TMP, work + i * c, c), Span(Buf.TMP, pack + n * c, c))
            b.copy(k, Span(Buf.TMP, land + n * c, c), Span(Buf.TMP, work + i * c, c), post=True)
        b.send(k, (me + d) % p, Span(Buf.TMP, pack, len(idx) * c))
        b.recv(k, (me - d) % p, Span(Buf.TMP, land, len(idx) * c))
        k, d = k + 1, d << 1
    # inverse rotation: out[src] = work[(me - src) % p]
    last = max(k - 1, 0)
    for src in range(p):
        b.copy(
            last,
            Span(Buf.TMP, work + ((me - src) % p) * c, c),
            Span(Buf.OUT, src * c, c),
            post=True,
        )
    return b.build()


def cost_pairwise(p: int, n: float, links: Links) -> float:
    al, be = links.flat(p)
    return (p - 1) * (al + n / p * be) + links.gamma * n / p


def cost_bruck(p: int, n: float, links: Links) -> float:
    """Step k moves the blocks whose index has bit k set: exactly p/2 of them when p is a
    power of two, which gives the textbook ⌈log2 p⌉·(α + n/2·β)."""
    al, be = links.flat(p)
    total, d = 0.0, 1
    while d < p:
        blocks = sum(1 for i in range(p) if i & d)
        total += al + n * blocks / p * be
        d <<= 1
    return total + links.gamma * n * (2 + (p - 1).bit_length())  # rotations, pack, unpack


register(
    Algorithm(
        collective=Collective.ALLTOALL,
        name="pairwise",
        build=build_pairwise,
        cost=cost_pairwise,
        doc="p-1 exchanges with rank ± s; any split sizes (all-to-all-v)",
    )
)
register(
    Algorithm(
        collective=Collective.ALLTOALL,
        name="bruck",
        build=build_bruck,
        cost=cost_bruck,
        doc="log2(p) steps moving half the blocks each; equal splits only",
        unsupported=_needs_uniform,
    )
)
