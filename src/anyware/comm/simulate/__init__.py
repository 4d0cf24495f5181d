"""``anyware comm simulate``: predict time, algbw and busbw of every algorithm at any scale.

:func:`simulate` evaluates an algorithm's round classes (:mod:`.rounds`) on a
:class:`~.topology.Topology` for many sizes at once (:mod:`.engine`); :func:`closed_form` is
the textbook α-β formula the same algorithm declares, for validation.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from anyware.comm.simulate.engine import BUSBW, Summary, evaluate, summarise
from anyware.comm.simulate.ops import OpStats, op_stats
from anyware.comm.simulate.rounds import REGISTRY
from anyware.comm.simulate.topology import Topology

__all__ = [
    "BUSBW",
    "REGISTRY",
    "Topology",
    "algorithms",
    "cache_weights",
    "closed_form",
    "simulate",
    "stats",
]


def algorithms(collective: str) -> list[str]:
    return [name for coll, name in REGISTRY if coll == collective]


def simulate(topo: Topology, collective: str, algo: str, sizes: np.ndarray) -> np.ndarray:
    """Seconds per size (bytes: the allreduce buffer, the reduce-scatter input, the allgather
    output, the all-to-all send buffer per rank — nccl-tests' conventions)."""
    fn = REGISTRY.get((collective, algo))
    if fn is None:
        known = ", ".join(f"{c}:{a}" for c, a in REGISTRY)
        raise ValueError(f"no simulation for {collective}:{algo}; known: {known}")
    sizes = np.asarray(sizes, dtype=np.float64)
    if topo.cache_bytes > 0 or topo.inner_cache_bytes > 0:
        w_in, w_mid, w_out = cache_weights(topo, collective, algo, sizes)
        # per-call and per-op terms are in every level alike (the weights sum to 1)
        t = w_mid * simulate(topo.middle(), collective, algo, sizes)
        if topo.inner_cache_bytes > 0:
            t = t + w_in * simulate(topo.inner(), collective, algo, sizes)
        if topo.cache_bytes > 0:
            t = t + w_out * simulate(topo.large(), collective, algo, sizes)
        return t
    chunked = collective in ("allreduce", "broadcast", "reduce") and algo in (
        "double_binary_tree",
        "chain",
    )
    rph = topo.ranks_per_host
    if not chunked:
        t = evaluate(topo, _summaries(collective, algo, topo.ranks, rph, 0.0), sizes)
    else:  # pipelined algorithms choose their chunk count from the size: one evaluation each
        t = np.array(
            [
                evaluate(
                    topo, _summaries(collective, algo, topo.ranks, rph, float(n)), np.array([n])
                )[0]
                for n in sizes
            ]
        )
    if topo.copy_bw > 0:
        t = t + local_bytes(topo, collective, algo, sizes) / topo.copy_bw
    if topo.copy_op_cost > 0 or topo.reduce_op_cost > 0:
        st = stats(topo, collective, algo)
        t = t + st.copies * topo.copy_op_cost + st.reduces * topo.reduce_op_cost
    return t + topo.call_overhead


@lru_cache(maxsize=4096)
def _summaries(
    collective: str, algo: str, ranks: int, ranks_per_host: int, n: float
) -> tuple[Summary, ...]:
    """An algorithm's round classes reduced to :class:`Summary` (which ranks talk over which
    link class, with what fraction): they depend on the world and its hosts only, never on
    the bandwidths, so the cache levels' three evaluations and every fit share them — the
    16,384-rank double binary tree spends ~1.5 s here, once."""
    topo = Topology(ranks=ranks, ranks_per_host=ranks_per_host)
    return tuple(
        r if isinstance(r, Summary) else summarise(topo, r)
        for r in REGISTRY[(collective, algo)](topo, n)
    )


def stats(topo: Topology, collective: str, algo: str) -> OpStats:
    """Copy ops, reducing receives and working set of ``collective:algo`` on ``topo``."""
    return op_stats(collective, algo, topo.ranks, topo.local if topo.hosts > 1 else 0)


def past(cache_bytes: float, working_set: np.ndarray) -> np.ndarray:
    """How far a working set is past a cache of ``cache_bytes``: 1 / (1 + (cache / W)²), from
    0 (well inside) to 1 (far past); 0 for an empty working set or no cache."""
    w = np.asarray(working_set, dtype=np.float64)
    if cache_bytes <= 0:
        return np.zeros_like(w)
    return np.where(w > 0, 1 / (1 + (cache_bytes / np.maximum(w, 1e-300)) ** 2), 0.0)


def level_weights(
    inner_bytes: float, cache_bytes: float, working_set: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Weights of the inner, middle and outer (past-cache) bandwidths; they sum to 1."""
    out = past(cache_bytes, working_set)
    w_in = 1 - past(inner_bytes, working_set) if inner_bytes > 0 else np.zeros_like(out)
    # inner < outer, so past(inner) >= past(outer): the middle weight is never negative
    return w_in, np.maximum(1 - w_in - out, 0.0), out


def cache_weights(
    topo: Topology, collective: str, algo: str, sizes: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The inner/middle/outer weights of each size's working set (see
    :attr:`Topology.cache_bytes` and :attr:`Topology.inner_cache_bytes`)."""
    w = stats(topo, collective, algo).working_set * np.asarray(sizes, dtype=np.float64)
    return level_weights(topo.inner_cache_bytes, topo.cache_bytes, w)


def local_bytes(topo: Topology, collective: str, algo: str, sizes: np.ndarray) -> np.ndarray:
    """Bytes each rank copies locally (staging, packing): the γ term of the algorithm's own
    cost, read off with α = β = 0 and γ = 1 s/byte."""
    from anyware.comm.algorithms import Links, get

    a = get(collective, algo)
    unit = Links(alpha_intra=0.0, beta_intra=0.0, gamma=1.0)
    return np.array([a.cost(topo.ranks, float(n), unit) for n in np.asarray(sizes)])


def closed_form(topo: Topology, collective: str, algo: str, sizes: np.ndarray) -> np.ndarray:
    from anyware.comm.algorithms import get

    a = get(collective, algo)
    links = topo.links()
    return np.array([a.cost(topo.ranks, float(n), links) for n in np.asarray(sizes)])  # type: ignore[arg-type]
