"""The simulator: agreement with the closed forms, agreement with the real schedules'
communication pattern, scale, and input validation."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import replace

import numpy as np
import pytest

from anyware.comm.algorithms import Args, get
from anyware.comm.simulate import (
    REGISTRY,
    Topology,
    cache_weights,
    closed_form,
    simulate,
    stats,
)
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


def test_working_sets_past_the_cache_use_the_large_message_bandwidths() -> None:
    """The past-cache bandwidths weigh g = 1 / (1 + (cache / W)²) by the working set W =
    factor × message: nothing far below the cache, all far past it, half at W = cache — and
    Bruck (4.5× its message at 2 ranks) leaves the cache at a smaller message than the ring
    (1×)."""
    kw = {"ranks": 2, "intra_latency": 3e-6}
    small = Topology(**kw, intra_bw=20e9, copy_bw=40e9)  # type: ignore[arg-type]
    large = Topology(**kw, intra_bw=5e9, copy_bw=10e9)  # type: ignore[arg-type]
    cache = float(4 << 20)
    both = Topology(
        **kw,  # type: ignore[arg-type]
        intra_bw=20e9,
        copy_bw=40e9,
        cache_bytes=cache,
        intra_bw_large=5e9,
        copy_bw_large=10e9,
    )
    for coll, algo in [("allreduce", "ring"), ("alltoall", "bruck"), ("broadcast", "chain")]:
        factor = stats(both, coll, algo).working_set
        far_below, far_past, at = cache / factor / 1000, cache / factor * 1000, cache / factor
        sizes = np.array([far_below, far_past, at])
        got = simulate(both, coll, algo, sizes)
        lo, hi = simulate(small, coll, algo, sizes), simulate(large, coll, algo, sizes)
        np.testing.assert_allclose(got[0], lo[0], rtol=2e-6, err_msg=f"{coll}:{algo}")
        np.testing.assert_allclose(got[1], hi[1], rtol=2e-6, err_msg=f"{coll}:{algo}")
        np.testing.assert_allclose(got[2], (lo[2] + hi[2]) / 2, rtol=1e-12, err_msg=algo)
    assert stats(both, "alltoall", "bruck").working_set == 4.5
    assert stats(both, "allreduce", "ring").working_set == 1.0
    with pytest.raises(ValueError, match="copy_bw_large must be >= 0"):
        Topology(ranks=4, copy_bw_large=-1.0)


def test_two_cache_levels_blend_three_bandwidths() -> None:
    """With an inner level the weights of the inner, middle and outer bandwidths sum to 1:
    a working set well inside the inner cache pays the inner bandwidths, one between the
    levels the plain ones, one far past the outer the large ones."""
    kw = {"ranks": 2, "intra_latency": 3e-6}
    two = Topology(
        **kw,  # type: ignore[arg-type]
        intra_bw=20e9,
        copy_bw=40e9,
        inner_cache_bytes=256e3,
        intra_bw_inner=8e9,
        copy_bw_inner=60e9,
        cache_bytes=64e6,
        intra_bw_large=5e9,
        copy_bw_large=10e9,
    )
    sizes = np.array([100.0, 4e6, 1e11])  # ring allreduce: working set = message
    w = np.stack(cache_weights(two, "allreduce", "ring", sizes))
    np.testing.assert_allclose(w.sum(axis=0), 1.0, rtol=1e-12)
    assert w[0, 0] > 0.999 and w[1, 1] > 0.99 and w[2, 2] > 0.999
    for level, topo in ((0, two.inner()), (1, two.middle()), (2, two.large())):
        got = simulate(two, "allreduce", "ring", sizes[level : level + 1])
        want = simulate(topo, "allreduce", "ring", sizes[level : level + 1])
        np.testing.assert_allclose(got, want, rtol=0.02, err_msg=f"level {level}")
    with pytest.raises(ValueError, match=r"inner_cache_bytes=.* must be smaller"):
        Topology(ranks=2, inner_cache_bytes=8e6, cache_bytes=4e6)


def test_op_counts_are_the_schedules_and_priced_per_op() -> None:
    """Copy ops and reducing receives come from the builders' schedules (Bruck at 2 ranks:
    rotate, pack, unpack, inverse rotation = 6 copies on rank 1; pairwise: its own block), and
    each adds its fixed cost to every size."""
    topo = Topology(ranks=2, intra_bw=20e9, intra_latency=3e-6)
    assert stats(topo, "alltoall", "bruck").copies == 6
    assert stats(topo, "alltoall", "pairwise").copies == 1
    assert stats(topo, "allreduce", "ring").reduces == 1
    assert stats(Topology(ranks=8), "allreduce", "ring").reduces == 7
    assert stats(Topology(ranks=8), "allreduce", "recursive_doubling").reduces == 3
    priced = replace(topo, copy_op_cost=1e-6, reduce_op_cost=2e-6)
    for coll, algo in REGISTRY:
        st = stats(topo, coll, algo)
        delta = simulate(priced, coll, algo, SIZES) - simulate(topo, coll, algo, SIZES)
        np.testing.assert_allclose(delta, st.copies * 1e-6 + st.reduces * 2e-6, atol=1e-15)
    with pytest.raises(ValueError, match="copy_op_cost must be >= 0"):
        Topology(ranks=4, copy_op_cost=-1.0)
