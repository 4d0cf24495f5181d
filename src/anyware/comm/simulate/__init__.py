"""``anyware comm simulate``: predict time, algbw and busbw of every algorithm at any scale.

:func:`simulate` evaluates an algorithm's round classes (:mod:`.rounds`) on a
:class:`~.topology.Topology` for many sizes at once (:mod:`.engine`); :func:`closed_form` is
the textbook α-β formula the same algorithm declares, for validation.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from anyware.comm.simulate.engine import BUSBW, evaluate
from anyware.comm.simulate.rounds import REGISTRY
from anyware.comm.simulate.topology import Topology

__all__ = ["BUSBW", "REGISTRY", "Topology", "algorithms", "closed_form", "simulate"]


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
    if topo.cache_bytes > 0 and bool((sizes > topo.cache_bytes).any()):
        big = sizes > topo.cache_bytes
        out = np.empty_like(sizes)
        out[big] = simulate(topo.large(), collective, algo, sizes[big])
        if not big.all():
            small = replace(topo, cache_bytes=0.0)
            out[~big] = simulate(small, collective, algo, sizes[~big])
        return out
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
    return t + topo.call_overhead


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
