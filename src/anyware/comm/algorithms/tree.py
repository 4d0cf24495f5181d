"""Trees: NCCL's double binary tree allreduce, binomial and pipelined-chain broadcast/reduce.

**Double binary tree** (NCCL ≥ 2.4). One binary tree has every odd rank as a leaf; the second
tree is the first mirrored (even p) or shifted by one (odd p), so the leaves of one are the
inner nodes of the other and every rank sends and receives about one chunk per round in
total. Each tree reduces half of the buffer up to its root and broadcasts it back down,
pipelined in K chunks, so with tree height h

    T ≈ (K + 2h - 1)·(α + n·β / K)

— log-depth latency at small n and close to full bandwidth at large n. K grows with the
message (chunks of ≥ 256 KiB, at most 16) and is a pure function of the byte count, so all
ranks agree on it.

**Binomial** broadcast/reduce: ⌈log2 p⌉ steps of the whole message. **Chain**: a pipeline
root → root+1 → …, (K + p - 2)·(α + n·β/K), the bandwidth choice for large messages.
"""

from __future__ import annotations

from functools import cache

from anyware.comm.algorithms import Algorithm, Args, Collective, Links, register
from anyware.comm.schedule import Buf, Builder, Schedule, Span, bounds

CHUNK_BYTES = 256 * 1024
MAX_CHUNKS = 16


def chunks_for(nbytes: float) -> int:
    return int(max(1, min(MAX_CHUNKS, nbytes // CHUNK_BYTES)))


@cache
def btree(n: int) -> tuple[tuple[int, ...], tuple[tuple[int, ...], ...]]:
    """(parent, children) of the binary tree whose leaves are the odd ranks, rooted at 0.

    Rank v with lowest set bit L hangs under (v ^ L) | 2L — the nearest rank whose lowest bit
    is 2L — or under v ^ L when that is past the end; each rank then has at most two children.
    """
    parent = [-1] * n
    for v in range(1, n):
        low = v & -v
        up = (v ^ low) | (low << 1)
        parent[v] = up if up < n else v ^ low
    children: list[list[int]] = [[] for _ in range(n)]
    for v in range(1, n):
        children[parent[v]].append(v)
    return tuple(parent), tuple(tuple(c) for c in children)


@cache
def _heights(n: int) -> tuple[tuple[int, ...], tuple[int, ...]]:
    parent, children = btree(n)
    height, depth = [0] * n, [0] * n
    for v in range(1, n):  # parents precede children in no fixed order: walk up
        d, u = 0, v
        while u:
            u, d = parent[u], d + 1
        depth[v] = d
    for v in sorted(range(n), key=lambda x: -depth[x]):
        for c in children[v]:
            height[v] = max(height[v], height[c] + 1)
    return tuple(height), tuple(depth)


def tree_maps(n: int, which: int) -> tuple[list[int], list[int]]:
    """Tree ``which`` (0 or 1) as (rank -> tree position, tree position -> rank)."""
    if which == 0 or n == 1:
        fwd = list(range(n))
    elif n % 2 == 0:
        fwd = [n - 1 - r for r in range(n)]  # mirror: odd leaves become even inner nodes
    else:
        fwd = [(r + 1) % n for r in range(n)]
    inv = [0] * n
    for r, v in enumerate(fwd):
        inv[v] = r
    return fwd, inv


def _tree_allreduce(b: Builder, rank: int, n: int, which: int, lo: int, hi: int, k: int) -> None:
    fwd, inv = tree_maps(n, which)
    parent, children = btree(n)
    height, depth = _heights(n)
    top = height[0]
    v = fwd[rank]
    cb = [lo + x for x in bounds(hi - lo, k)]
    for c in range(k):
        span = Span(Buf.OUT, cb[c], cb[c + 1] - cb[c])
        for ch in children[v]:  # reduce up: child sends chunk c in round c + height(child)
            b.recv(c + height[ch], inv[ch], span, reduce=True, tag=2 * which)
        if v:
            b.send(c + height[v], inv[parent[v]], span, tag=2 * which)
            b.recv(c + top + depth[v] - 1, inv[parent[v]], span, tag=2 * which + 1)
        for ch in children[v]:  # broadcast down, right after the final value arrived
            b.send(c + top + depth[v], inv[ch], span, tag=2 * which + 1)


def build_allreduce(a: Args) -> Schedule:
    b = Builder(a.rank, a.world)
    if a.world > 1:
        half = bounds(a.count, 2)
        k = chunks_for((half[1] - half[0]) * a.itemsize)
        _tree_allreduce(b, a.rank, a.world, 0, half[0], half[1], k)
        _tree_allreduce(b, a.rank, a.world, 1, half[1], half[2], k)
    return b.build()


def cost_dbt(p: int, n: float, links: Links) -> float:
    if p == 1:
        return 0.0
    al, be = links.flat(p)
    k = chunks_for(n / 2)
    h = _heights(p)[0][0]
    return (k + 2 * h - 1) * (al + n * be / k) + links.gamma * n  # two children: staged


def _binomial_broadcast(b: Builder, v: int, p: int, root: int, span: Span, r0: int = 0) -> int:
    mask, k = 1, 0
    while mask < p:
        if v < mask and v + mask < p:
            b.send(r0 + k, (v + mask + root) % p, span)
        elif mask <= v < 2 * mask:
            b.recv(r0 + k, (v - mask + root) % p, span)
        mask, k = mask << 1, k + 1
    return k


def build_broadcast_binomial(a: Args) -> Schedule:
    b = Builder(a.rank, a.world)
    v = (a.rank - a.root) % a.world
    _binomial_broadcast(b, v, a.world, a.root, Span(Buf.OUT, 0, a.count))
    return b.build()


def build_reduce_binomial(a: Args) -> Schedule:
    b = Builder(a.rank, a.world)
    p, v = a.world, (a.rank - a.root) % a.world
    buf = Buf.OUT if v == 0 else Buf.TMP  # non-roots keep their input untouched
    if v:
        b.need_tmp(a.count)
        b.copy(0, Span(Buf.OUT, 0, a.count), Span(Buf.TMP, 0, a.count))
    span = Span(buf, 0, a.count)
    mask, k = 1, 0
    while mask < p:
        if v & mask:
            b.send(k, (v - mask + a.root) % p, span)
            break
        if v + mask < p:
            b.recv(k, (v + mask + a.root) % p, span, reduce=True)
        mask, k = mask << 1, k + 1
    return b.build()


def _chain(a: Args, *, down: bool) -> Schedule:
    """Pipelined chain: position d = (rank - root) mod p; broadcast flows 0 → p-1, reduce
    flows p-1 → 0."""
    b = Builder(a.rank, a.world)
    p, d = a.world, (a.rank - a.root) % a.world
    k = chunks_for(a.count * a.itemsize)
    cb = bounds(a.count, k)
    buf = Buf.OUT if down or d == 0 else Buf.TMP
    if not down and d:
        b.need_tmp(a.count)
        b.copy(0, Span(Buf.OUT, 0, a.count), Span(Buf.TMP, 0, a.count))
    prev, nxt = (a.rank - 1) % p, (a.rank + 1) % p
    for c in range(k):
        span = Span(buf, cb[c], cb[c + 1] - cb[c])
        if down:
            if d:
                b.recv(c + d - 1, prev, span)
            if d < p - 1:
                b.send(c + d, nxt, span)
        else:
            pos = p - 1 - d  # how far from the tail
            if pos:
                b.recv(c + pos - 1, nxt, span, reduce=True)
            if d:
                b.send(c + pos, prev, span)
    return b.build()


def cost_binomial(p: int, n: float, links: Links) -> float:
    al, be = links.flat(p)
    return (p - 1).bit_length() * (al + n * be) + links.gamma * n


def cost_chain(p: int, n: float, links: Links) -> float:
    if p == 1:
        return 0.0
    al, be = links.flat(p)
    k = chunks_for(n)
    return (k + p - 2) * (al + n * be / k) + links.gamma * n


register(
    Algorithm(
        collective=Collective.ALLREDUCE,
        name="double_binary_tree",
        build=build_allreduce,
        cost=cost_dbt,
        doc="two complementary pipelined binary trees, half the data each (NCCL's tree)",
    )
)
for _coll, _name, _build, _cost, _doc in (
    (
        Collective.BROADCAST,
        "binomial",
        build_broadcast_binomial,
        cost_binomial,
        "log2(p) whole-message steps",
    ),
    (
        Collective.BROADCAST,
        "chain",
        lambda a: _chain(a, down=True),
        cost_chain,
        "pipelined chain from the root",
    ),
    (
        Collective.REDUCE,
        "binomial",
        build_reduce_binomial,
        cost_binomial,
        "log2(p) whole-message steps",
    ),
    (
        Collective.REDUCE,
        "chain",
        lambda a: _chain(a, down=False),
        cost_chain,
        "pipelined chain into the root",
    ),
):
    register(Algorithm(collective=_coll, name=_name, build=_build, cost=_cost, doc=_doc))
