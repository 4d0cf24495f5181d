"""Vectorised evaluation: an algorithm is described by *round classes* — a set of flows
(source, destination, fraction of the message) repeated ``repeat`` times — evaluated with numpy
over all ranks at once and over all message sizes at once.

Each round class reduces to four numbers (per link class: is it used, and the largest
per-rank fraction it carries), so a round's time for message size n is
``max(α_i + n·f_i/bw_i, α_e + n·f_e/bw_e)`` and a 16,384-rank ring costs one bincount, not
2·16,383 rounds of Python.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from anyware.comm.simulate.topology import Topology


@dataclass(frozen=True, slots=True)
class Summary:
    """A round class, reduced: ``repeat`` rounds, each using intra links with largest per-rank
    fraction ``f_intra`` (negative: unused) and inter links with ``f_inter``."""

    repeat: float
    f_intra: float
    f_inter: float


@dataclass(frozen=True, slots=True)
class Flows:
    """``repeat`` identical rounds in which rank ``src[i]`` sends ``frac[i]``·n bytes to
    ``dst[i]``."""

    repeat: float
    src: np.ndarray
    dst: np.ndarray
    frac: np.ndarray | float


def summarise(topo: Topology, flows: Flows) -> Summary:
    src, dst = np.asarray(flows.src, dtype=np.int64), np.asarray(flows.dst, dtype=np.int64)
    frac = np.broadcast_to(np.asarray(flows.frac, dtype=np.float64), src.shape)
    if src.size == 0:
        return Summary(flows.repeat, -1.0, -1.0)
    inter = topo.host(src) != topo.host(dst)
    out = []
    for mask in (~inter, inter):
        if not mask.any():
            out.append(-1.0)
            continue
        per_rank = np.bincount(src[mask], weights=frac[mask], minlength=topo.ranks)
        out.append(float(per_rank.max()))
    return Summary(flows.repeat, out[0], out[1])


def evaluate(topo: Topology, rounds: Iterable[Flows | Summary], sizes: np.ndarray) -> np.ndarray:
    """Seconds for each message size in ``sizes`` (bytes)."""
    n = np.asarray(sizes, dtype=np.float64)
    total = np.zeros_like(n)
    for r in rounds:
        s = r if isinstance(r, Summary) else summarise(topo, r)
        if s.repeat <= 0:
            continue
        t = np.zeros_like(n)
        if s.f_intra >= 0:
            t = np.maximum(t, topo.intra_latency + n * s.f_intra / topo.intra_bw)
        if s.f_inter >= 0:
            t = np.maximum(t, topo.inter_latency + n * s.f_inter / topo.inter_bw)
        total += s.repeat * t
    return total


#: nccl-tests' bus-bandwidth factors: busbw = algbw × factor(p).
BUSBW: dict[str, Callable[[int], float]] = {
    "allreduce": lambda p: 2 * (p - 1) / p,
    "reduce_scatter": lambda p: (p - 1) / p,
    "allgather": lambda p: (p - 1) / p,
    "alltoall": lambda p: (p - 1) / p,
    "broadcast": lambda p: 1.0,
    "reduce": lambda p: 1.0,
}
