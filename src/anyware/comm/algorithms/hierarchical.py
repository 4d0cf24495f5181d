"""Two-level algorithms for jobs whose ranks sit on hosts of ``ranks_per_host`` (R) each:
fast links within a host (shared memory, NVLink), slower ones between hosts.

**Allreduce** = ring reduce-scatter inside each host, ring allreduce of each 1/R shard across
the H = p/R hosts (ranks with the same local index talk), ring allgather inside the host:

    T = 2(R-1)(α_i + n/R·β_i) + 2(H-1)(α_e + n/(R·H)·β_e)

Only 1/R of the data crosses the slow links, and each host's R ranks use R links at once.

**All-to-all** (the 2-D exchange DeepEP and HCCL use): first inside the host, rank (h, loc)
hands local peer loc' every block bound for local index loc' on any host; then across hosts,
rank (h, loc) sends host h' the R blocks bound for (h', loc) in one message:

    T = (R-1)(α_i + n/R·β_i) + (H-1)(α_e + n/H·β_e)

H-1 slow-link messages instead of p-R. Both need p divisible by R; all-to-all also needs
equal splits.
"""

from __future__ import annotations

from anyware.comm.algorithms import Algorithm, Args, Collective, Links, register
from anyware.comm.algorithms.alltoall import uniform
from anyware.comm.algorithms.ring import allgather_rounds, reduce_scatter_rounds
from anyware.comm.schedule import Buf, Builder, Schedule, Span, bounds


def _unsupported(a: Args) -> str | None:
    if a.world % a.local:
        return f"needs the world ({a.world}) divisible by ranks per host ({a.local})"
    return None


def _unsupported_a2a(a: Args) -> str | None:
    reason = _unsupported(a)
    if reason is None and uniform(a) is None:
        reason = "needs equal split sizes (use 'pairwise')"
    return reason


def build_allreduce(a: Args) -> Schedule:
    b = Builder(a.rank, a.world)
    R = a.local
    h, loc = divmod(a.rank, R)
    hosts = a.world // R
    host = [h * R + x for x in range(R)]
    peers = [x * R + loc for x in range(hosts)]
    outer = bounds(a.count, R)
    lo, hi = outer[loc], outer[loc + 1]
    inner = bounds(hi - lo, hosts)
    r = reduce_scatter_rounds(b, 0, host, loc, Buf.OUT, 0, outer)
    r += reduce_scatter_rounds(b, r, peers, h, Buf.OUT, lo, inner)
    r += allgather_rounds(b, r, peers, h, Buf.OUT, lo, inner)
    allgather_rounds(b, r, host, loc, Buf.OUT, 0, outer)
    return b.build()


def build_alltoall(a: Args) -> Schedule:
    b = Builder(a.rank, a.world)
    R = a.local
    H = a.world // R
    h, loc = divmod(a.rank, R)
    c = uniform(a)
    assert c is not None
    # stage A: area[l_src][h_dst] = block from (h, l_src) to (h_dst, loc)
    area, pack = 0, a.world * c
    b.need_tmp(a.world * c + max(H, R) * c)
    for hd in range(H):
        b.copy(0, Span(Buf.IN, (hd * R + loc) * c, c), Span(Buf.TMP, area + (loc * H + hd) * c, c))
    for s in range(1, R):
        to, frm = (loc + s) % R, (loc - s) % R
        for hd in range(H):
            b.copy(s - 1, Span(Buf.IN, (hd * R + to) * c, c), Span(Buf.TMP, pack + hd * c, c))
        b.send(s - 1, h * R + to, Span(Buf.TMP, pack, H * c))
        b.recv(s - 1, h * R + frm, Span(Buf.TMP, area + frm * H * c, H * c))
    r0 = R - 1
    # stage B: to host h' go the R blocks area[*][h'], landing as out[h'R .. h'R + R)
    for ls in range(R):
        b.copy(r0, Span(Buf.TMP, area + (ls * H + h) * c, c), Span(Buf.OUT, (h * R + ls) * c, c))
    for s in range(1, H):
        to, frm = (h + s) % H, (h - s) % H
        for ls in range(R):
            b.copy(
                r0 + s - 1,
                Span(Buf.TMP, area + (ls * H + to) * c, c),
                Span(Buf.TMP, pack + ls * c, c),
            )
        b.send(r0 + s - 1, to * R + loc, Span(Buf.TMP, pack, R * c))
        b.recv(r0 + s - 1, frm * R + loc, Span(Buf.OUT, frm * R * c, R * c))
    return b.build()


def _levels(p: int, links: Links) -> tuple[int, int]:
    R = links.ranks_per_host or p
    return R, max(p // R, 1)


def cost_allreduce(p: int, n: float, links: Links) -> float:
    R, H = _levels(p, links)
    return 2 * (R - 1) * (links.alpha_intra + n / R * links.beta_intra) + 2 * (H - 1) * (
        links.alpha_inter + n / (R * H) * links.beta_inter
    )


def cost_alltoall(p: int, n: float, links: Links) -> float:
    R, H = _levels(p, links)
    return (
        (R - 1) * (links.alpha_intra + n / R * links.beta_intra)
        + (H - 1) * (links.alpha_inter + n / H * links.beta_inter)
        + links.gamma * n * 3  # staging area, packing per peer, final placement
    )


register(
    Algorithm(
        collective=Collective.ALLREDUCE,
        name="hierarchical",
        build=build_allreduce,
        cost=cost_allreduce,
        doc="ring reduce-scatter in the host, ring allreduce across hosts, allgather in the host",
        unsupported=_unsupported,
    )
)
register(
    Algorithm(
        collective=Collective.ALLTOALL,
        name="hierarchical",
        build=build_alltoall,
        cost=cost_alltoall,
        doc="2-D exchange: within the host, then one message per remote host",
        unsupported=_unsupported_a2a,
    )
)
