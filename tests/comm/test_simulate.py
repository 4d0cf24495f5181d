"""The simulator: agreement with the closed forms, agreement with the real schedules'
communication pattern, scale, and input validation."""

from __future__ import annotations

import time
from collections import Counter

import numpy as np
import pytest

from anyware.comm.algorithms import Args, get
from anyware.comm.simulate import REGISTRY, Topology, closed_form, simulate
from anyware.comm.simulate.engine import Flows, Summary

SIZES = 2.0 ** np.arange(3, 31, 3)
#: The double binary tree is pipelined: its closed form (K + 2h - 1)(α + nβ/K) counts one
#: chunk per rank per round, while ranks inside one tree and a leaf of the other really send
#: up to 1.5 chunks, and ramp rounds fewer. It is an estimate, not an identity.
ESTIMATES = {("allreduce", "double_binary_tree")}


@pytest.mark.parametrize("p", [2, 3, 4, 8, 13, 16, 64, 1000])
def test_simulation_equals_closed_forms_on_a_flat_network(p: int) -> None:
    topo = Topology(ranks=p, intra_bw=20e9, intra_latency=3e-6)
    for coll, algo in REGISTRY:
        sim, cf = simulate(topo, coll, algo, SIZES), closed_form(topo, coll, algo, SIZES)
        ratio = sim / cf
        if (coll, algo) in ESTIMATES:
            assert np.all((ratio > 0.45) & (ratio < 1.7)), (coll, algo, p, ratio)
            # the latency term is exact
            assert np.isclose(
                simulate(topo, coll, algo, np.array([0.0]))[0],
                closed_form(topo, coll, algo, np.array([0.0]))[0],
            )
        else:
            assert np.all(np.abs(ratio - 1) < 0.01), (coll, algo, p, ratio)


def test_local_copies_count_when_asked() -> None:
    """With a copy bandwidth the simulator adds each algorithm's own γ volume: Bruck's packing
    and every algorithm's staged reductions now cost, and the closed forms agree."""
    base = Topology(ranks=8, intra_bw=20e9, intra_latency=3e-6)
    slow = Topology(ranks=8, intra_bw=20e9, intra_latency=3e-6, copy_bw=5e9)
    for coll, algo in [
        ("alltoall", "bruck"),
        ("allreduce", "recursive_doubling"),
        ("alltoall", "pairwise"),
    ]:
        with_copies, without = simulate(slow, coll, algo, SIZES), simulate(base, coll, algo, SIZES)
        assert np.all(with_copies > without), (coll, algo)
        assert np.allclose(with_copies, closed_form(slow, coll, algo, SIZES), rtol=0.01)
    # Ring allreduce copies nothing, but its reduce-scatter half stages and adds the (p-1)/p
    # of the buffer it receives: γ per byte, as recursive doubling's reductions are charged.
    assert np.allclose(
        simulate(slow, "allreduce", "ring", SIZES) - simulate(base, "allreduce", "ring", SIZES),
        SIZES * 7 / 8 / 5e9,
    )


@pytest.mark.parametrize(("p", "R"), [(16, 4), (32, 8), (12, 3)])
def test_hierarchical_matches_its_two_level_formula(p: int, R: int) -> None:
    topo = Topology(
        ranks=p,
        ranks_per_host=R,
        intra_bw=100e9,
        inter_bw=10e9,
        intra_latency=2e-6,
        inter_latency=8e-6,
    )
    for coll in ("allreduce", "alltoall"):
        sim, cf = (
            simulate(topo, coll, "hierarchical", SIZES),
            closed_form(topo, coll, "hierarchical", SIZES),
        )
        assert np.allclose(sim, cf, rtol=0.01)
    # and it beats the flat ring once the slow links dominate
    big = np.array([1 << 28])
    assert (
        simulate(topo, "allreduce", "hierarchical", big)[0]
        < simulate(topo, "allreduce", "ring", big)[0]
    )


def _pattern_from_schedules(
    coll: str, algo: str, p: int, count: int
) -> list[Counter[tuple[int, int]]]:
    a = get(coll, algo)
    extra = {"send_counts": (count,) * p, "recv_counts": (count,) * p} if coll == "alltoall" else {}
    scheds = [a.build(Args(rank=r, world=p, count=count, **extra)) for r in range(p)]
    rounds = max(len(s.rounds) for s in scheds)
    out = []
    for i in range(rounds):
        c: Counter[tuple[int, int]] = Counter()
        for s in scheds:
            if i < len(s.rounds):
                for m in s.rounds[i].sends:
                    c[(s.rank, m.peer)] += m.span.count
        out.append(c)
    return out


@pytest.mark.parametrize("p", [4, 6, 8])
def test_simulated_rounds_are_the_schedules_rounds(p: int) -> None:
    """Total bytes per (sender, receiver) and the number of rounds agree with the builders."""
    count = 840  # divisible by every block count used here
    for coll, algo in [
        ("allreduce", "ring"),
        ("allreduce", "recursive_doubling"),
        ("allreduce", "halving_doubling"),
        ("alltoall", "pairwise"),
        ("alltoall", "bruck"),
    ]:
        real = _pattern_from_schedules(coll, algo, p, count if coll != "alltoall" else count // p)
        total_bytes = count if coll == "allreduce" else count // p * p
        topo = Topology(ranks=p)
        n_rounds, flows = 0.0, Counter()
        for r in REGISTRY[(coll, algo)](topo, float(total_bytes)):
            n_rounds += r.repeat
            if isinstance(r, Flows):
                frac = np.broadcast_to(np.asarray(r.frac, dtype=float), np.shape(r.src))
                for s, d, f in zip(np.ravel(r.src), np.ravel(r.dst), np.ravel(frac), strict=True):
                    flows[(int(s), int(d))] += f * total_bytes * r.repeat
            else:
                assert isinstance(r, Summary)
        assert n_rounds == len(real), (coll, algo, p)
        if coll == "allreduce" and algo != "ring":
            want: Counter[tuple[int, int]] = Counter()
            for c in real:
                want.update(c)
            assert {k: round(v) for k, v in flows.items()} == dict(want), (coll, algo, p)


def test_sixteen_thousand_ranks_in_seconds() -> None:
    topo = Topology(ranks=16384, ranks_per_host=8)
    t0 = time.perf_counter()
    for coll, algo in REGISTRY:
        t = simulate(topo, coll, algo, SIZES)
        assert np.all(np.isfinite(t)) and np.all(np.diff(t) >= 0)
    assert time.perf_counter() - t0 < 5.0


def test_topology_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="must divide"):
        Topology(ranks=10, ranks_per_host=4)
    with pytest.raises(ValueError, match="intra_bw must be positive"):
        Topology(ranks=4, intra_bw=0)
    with pytest.raises(ValueError, match="no simulation"):
        simulate(Topology(ranks=4), "allreduce", "magic", SIZES)


def test_call_overhead_is_paid_once_per_collective() -> None:
    """The per-call software term adds the same seconds to every algorithm and size (it
    sits outside the rounds), so it never changes which algorithm is cheapest."""
    base = Topology(ranks=8, intra_bw=20e9, intra_latency=3e-6)
    paid = Topology(ranks=8, intra_bw=20e9, intra_latency=3e-6, call_overhead=25e-6)
    for coll, algo in REGISTRY:
        delta = simulate(paid, coll, algo, SIZES) - simulate(base, coll, algo, SIZES)
        assert np.allclose(delta, 25e-6, rtol=1e-9, atol=1e-15), (coll, algo)
    with pytest.raises(ValueError, match="call_overhead must be >= 0"):
        Topology(ranks=4, call_overhead=-1e-6)


def test_messages_past_the_cache_use_the_large_message_bandwidths() -> None:
    """Above ``cache_bytes`` the simulator prices bytes with the large-message bandwidths;
    at or below it nothing changes."""
    small = Topology(ranks=4, intra_bw=20e9, intra_latency=3e-6, copy_bw=40e9)
    both = Topology(
        ranks=4,
        intra_bw=20e9,
        intra_latency=3e-6,
        copy_bw=40e9,
        cache_bytes=4 << 20,
        intra_bw_large=5e9,
        copy_bw_large=10e9,
    )
    large = Topology(ranks=4, intra_bw=5e9, intra_latency=3e-6, copy_bw=10e9)
    sizes = np.array([1024.0, 4 << 20, 16 << 20, 1 << 30])
    for coll, algo in [("allreduce", "ring"), ("alltoall", "bruck"), ("broadcast", "chain")]:
        got = simulate(both, coll, algo, sizes)
        assert np.allclose(got[:2], simulate(small, coll, algo, sizes[:2])), (coll, algo)
        assert np.allclose(got[2:], simulate(large, coll, algo, sizes[2:])), (coll, algo)
    with pytest.raises(ValueError, match="copy_bw_large must be >= 0"):
        Topology(ranks=4, copy_bw_large=-1.0)
