"""``anyware comm simulate``: predict time, algbw and busbw of every algorithm at any scale.

:func:`simulate` evaluates an algorithm's round classes (:mod:`.rounds`) on a
:class:`~.topology.Topology` for many sizes at once (:mod:`.engine`); :func:`closed_form` is
the textbook α-β formula the same algorithm declares, for validation.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from anyware.comm.simulate.engine import BUSBW, evaluate
from anyware.comm.simulate.ops import OpStats, op_stats
from anyware.comm.simulate.rounds import REGISTRY
from anyware.comm.simulate.topology import Topology

__all__ = [
    "BUSBW",
    "REGISTRY",
    "Topology",
    "algorithms",
    "cache_weight",
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
    if topo.cache_bytes > 0:
        g = cache_weight(topo, collective, algo, sizes)
        small = simulate(replace(topo, cache_bytes=0.0), collective, algo, sizes)
        large = simulate(topo.large(), collective, algo, sizes)
        return (1 - g) * small + g * large  # per-call and per-op terms are in both alike
    chunked = collective in ("allreduce", "broadcast", "reduce") and algo in (
        "double_binary_tree",
        "chain",
    )
    if not chunked:
        t = evaluate(topo, fn(topo, 0.0), sizes)
    else:  # pipelined algorithms choose their chunk count from the size: one evaluation each
        t = np.array([evaluate(topo, fn(topo, float(n)), np.array([n]))[0] for n in sizes])
    if topo.copy_bw > 0:
        t = t + local_bytes(topo, collective, algo, sizes) / topo.copy_bw
    if topo.copy_op_cost > 0 or topo.reduce_op_cost > 0:
        st = stats(topo, collective, algo)
        t = t + st.copies * topo.copy_op_cost + st.reduces * topo.reduce_op_cost
    return t + topo.call_overhead


def stats(topo: Topology, collective: str, algo: str) -> OpStats:
    """Copy ops, reducing receives and working set of ``collective:algo`` on ``topo``."""
    return op_stats(collective, algo, topo.ranks, topo.local if topo.hosts > 1 else 0)


def cache_weight(topo: Topology, collective: str, algo: str, sizes: np.ndarray) -> np.ndarray:
    """How far past the caches each size's working set is: 0 (in cache) … 1 (far past), see
    :attr:`Topology.cache_bytes`."""
    w = stats(topo, collective, algo).working_set * np.asarray(sizes, dtype=np.float64)
    with np.errstate(divide="ignore"):
        return np.where(w > 0, 1 / (1 + (topo.cache_bytes / np.maximum(w, 1e-300)) ** 2), 0.0)


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
