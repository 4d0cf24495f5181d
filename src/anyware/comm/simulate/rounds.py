"""Each algorithm's rounds as vectorised flows — the same communication pattern as its
schedule builder in :mod:`anyware.comm.algorithms`, written over all ranks at once.

Tests check each description against the real schedules at small world sizes (same number of
rounds, same peers, same bytes), so the simulator cannot drift from what the transports run.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np

from anyware.comm.algorithms.halving_doubling import fold
from anyware.comm.algorithms.tree import _heights, btree, chunks_for, tree_maps
from anyware.comm.simulate.engine import Flows, Summary
from anyware.comm.simulate.topology import Topology

Rounds = Callable[[Topology, float], Iterator[Flows | Summary]]
"""(topology, message bytes) -> round classes. Bytes matter only to pipelined algorithms,
which pick their chunk count from it exactly as the builders do."""

REGISTRY: dict[tuple[str, str], Rounds] = {}


def rounds(collective: str, name: str) -> Callable[[Rounds], Rounds]:
    def deco(fn: Rounds) -> Rounds:
        REGISTRY[(collective, name)] = fn
        return fn

    return deco


def _ring(topo: Topology, repeat: float, frac: float) -> Flows:
    r = np.arange(topo.ranks)
    return Flows(repeat, r, (r + 1) % topo.ranks, frac)


@rounds("allreduce", "ring")
def ring_allreduce(topo: Topology, n: float) -> Iterator[Flows | Summary]:
    yield _ring(topo, 2 * (topo.ranks - 1), 1 / topo.ranks)


@rounds("reduce_scatter", "ring")
@rounds("allgather", "ring")
def ring_half(topo: Topology, n: float) -> Iterator[Flows | Summary]:
    yield _ring(topo, topo.ranks - 1, 1 / topo.ranks)


def _fold_rounds(topo: Topology, frac: float) -> Iterator[Flows]:
    _, e = fold(topo.ranks)
    if e:
        ev = np.arange(0, 2 * e, 2)
        yield Flows(1, ev, ev + 1, frac)


def _unfold_rounds(topo: Topology, frac: float) -> Iterator[Flows]:
    _, e = fold(topo.ranks)
    if e:
        od = np.arange(1, 2 * e, 2)
        yield Flows(1, od, od - 1, frac)


def _survivors(topo: Topology) -> np.ndarray:
    p2, e = fold(topo.ranks)
    j = np.arange(p2)
    return np.where(j < e, 2 * j + 1, j + e)


def _exchange(topo: Topology, mask: int, frac: float) -> Flows:
    surv = _survivors(topo)
    j = np.arange(surv.size)
    return Flows(1, surv, surv[j ^ mask], frac)


@rounds("allreduce", "recursive_doubling")
def rd_allreduce(topo: Topology, n: float) -> Iterator[Flows | Summary]:
    p2, _ = fold(topo.ranks)
    yield from _fold_rounds(topo, 1.0)
    mask = 1
    while mask < p2:
        yield _exchange(topo, mask, 1.0)
        mask <<= 1
    yield from _unfold_rounds(topo, 1.0)


def _halving(topo: Topology, share: float) -> Iterator[Flows]:
    p2, _ = fold(topo.ranks)
    mask, frac = p2 >> 1, share / 2
    while mask:
        yield _exchange(topo, mask, frac)
        mask, frac = mask >> 1, frac / 2


def _doubling(topo: Topology, share: float) -> Iterator[Flows]:
    p2, _ = fold(topo.ranks)
    mask, frac = 1, share / p2
    while mask < p2:
        yield _exchange(topo, mask, frac)
        mask, frac = mask << 1, frac * 2


@rounds("allreduce", "halving_doubling")
def hd_allreduce(topo: Topology, n: float) -> Iterator[Flows | Summary]:
    yield from _fold_rounds(topo, 1.0)
    yield from _halving(topo, 1.0)
    yield from _doubling(topo, 1.0)
    yield from _unfold_rounds(topo, 1.0)


@rounds("reduce_scatter", "halving_doubling")
def hd_rs(topo: Topology, n: float) -> Iterator[Flows | Summary]:
    yield from _fold_rounds(topo, 1.0)
    yield from _halving(topo, 1.0)
    yield from _unfold_rounds(topo, 1 / topo.ranks)


@rounds("allgather", "recursive_doubling")
def rd_allgather(topo: Topology, n: float) -> Iterator[Flows | Summary]:
    yield from _fold_rounds(topo, 1 / topo.ranks)
    yield from _doubling(topo, 1.0)
    yield from _unfold_rounds(topo, 1.0)


@rounds("allreduce", "double_binary_tree")
def dbt_allreduce(topo: Topology, n: float) -> Iterator[Flows | Summary]:
    p = topo.ranks
    if p == 1:
        return
    k = chunks_for(n / 2)
    parent, _ = btree(p)
    height, depth = (np.array(a) for a in _heights(p))
    par = np.array(parent)
    top = int(height[0])
    trees = []
    for which in (0, 1):
        inv = np.array(tree_maps(p, which)[1])
        v = np.arange(1, p)  # tree positions with a parent
        trees.append((inv[v], inv[par[v]], height[v], depth[v]))
    frac = 0.5 / k
    for t in range(k + 2 * top):
        src, dst = [], []
        for rank, up, h, d in trees:
            c_up = t - h  # reduce: position v sends chunk t - height(v) to its parent
            m = (c_up >= 0) & (c_up < k)
            src.append(rank[m])
            dst.append(up[m])
            c_dn = t - top - (d - 1)  # broadcast: the parent forwards chunk to v
            m = (c_dn >= 0) & (c_dn < k)
            src.append(up[m])
            dst.append(rank[m])
        yield Flows(1, np.concatenate(src), np.concatenate(dst), frac)


@rounds("broadcast", "binomial")
@rounds("reduce", "binomial")
def binomial(topo: Topology, n: float) -> Iterator[Flows | Summary]:
    p, mask = topo.ranks, 1
    while mask < p:
        v = np.arange(min(mask, p - mask))
        yield Flows(1, v, v + mask, 1.0)
        mask <<= 1


@rounds("broadcast", "chain")
@rounds("reduce", "chain")
def chain(topo: Topology, n: float) -> Iterator[Flows | Summary]:
    p = topo.ranks
    if p > 1:
        k = chunks_for(n)
        v = np.arange(p - 1)
        yield Flows(k + p - 2, v, v + 1, 1 / k)


@rounds("alltoall", "pairwise")
def pairwise(topo: Topology, n: float) -> Iterator[Flows | Summary]:
    p, R = topo.ranks, topo.local
    if p == 1:
        return
    s = np.arange(1, p)
    has_intra = np.minimum(s, p - s) < R  # some rank's partner i+s is on its host
    has_inter = topo.hosts > 1  # with several hosts every shift crosses one
    n_mixed = int(has_intra.sum()) if has_inter else 0
    frac = 1 / p
    if has_inter:
        yield Summary(n_mixed, frac, frac)
        yield Summary(p - 1 - n_mixed, -1.0, frac)
    else:
        yield Summary(p - 1, frac, -1.0)


@rounds("alltoall", "bruck")
def bruck(topo: Topology, n: float) -> Iterator[Flows | Summary]:
    p, d = topo.ranks, 1
    r = np.arange(p)
    while d < p:
        blocks = int(np.count_nonzero(np.arange(p) & d))
        yield Flows(1, r, (r + d) % p, blocks / p)
        d <<= 1


def _host_ring(topo: Topology, repeat: float, frac: float) -> Flows:
    r = np.arange(topo.ranks)
    R = topo.local
    return Flows(repeat, r, (r // R) * R + (r % R + 1) % R, frac)


def _cross_ring(topo: Topology, repeat: float, frac: float) -> Flows:
    r = np.arange(topo.ranks)
    return Flows(repeat, r, (r + topo.local) % topo.ranks, frac)


@rounds("allreduce", "hierarchical")
def hier_allreduce(topo: Topology, n: float) -> Iterator[Flows | Summary]:
    R, H = topo.local, topo.hosts
    if R > 1:
        yield _host_ring(topo, 2 * (R - 1), 1 / R)
    if H > 1:
        yield _cross_ring(topo, 2 * (H - 1), 1 / (R * H))


@rounds("alltoall", "hierarchical")
def hier_alltoall(topo: Topology, n: float) -> Iterator[Flows | Summary]:
    R, H = topo.local, topo.hosts
    if R > 1:
        yield Summary(R - 1, H / topo.ranks, -1.0)
    if H > 1:
        yield Summary(H - 1, -1.0, R / topo.ranks)
