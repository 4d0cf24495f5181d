"""What a schedule asks of one rank besides rounds and wire bytes: its *operation counts* and
its *working set*, read off the real schedule builders so the simulator prices what the
transports run.

* **Copy ops** (``pre``/``post`` copies: Bruck's rotations, packing, unpacking; pairwise's own
  block) and **reducing receives** each cost a fixed software time on top of their bytes — a
  numpy slice assignment or ufunc call on the shared-memory fast path, a torch op on the
  general loop. Bruck at 2 ranks issues six copies where pairwise issues one; pricing copies by
  bytes alone (γ) cannot see that difference at small sizes, where it is ~3.5 µs of ~18 µs.
* **Working set**: the bytes of the input, output and scratch buffers the schedule touches,
  plus the receives a staged round parks in scratch, per byte of the message. Where a
  collective's data leaves the caches depends on this, not on the message size alone: a
  16 MiB Bruck all-to-all touches 4.5× its message (72 MiB), a 16 MiB ring allreduce 1×.

The counts are the busier of two sample ranks (the first and the last: they cover the fold
ranks of non-powers of two and Bruck's asymmetric rotation), taken at one message size; the
schedules are built once per (algorithm, world) and cached — a few seconds at 16,384 ranks,
paid only by a topology that prices ops or caches. The
pipelined tree and chain change their chunk count with the size; their counts here are those of
a message of ``SAMPLE_BLOCK`` elements per rank, an approximation the docs list.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

#: Elements per rank of the sample message the counts are read at: large enough that no block
#: of any algorithm is empty (an empty span drops its copy), small enough to build fast.
SAMPLE_BLOCK = 64


@dataclass(frozen=True, slots=True)
class OpStats:
    """Per call and rank: local copy ops, reducing receives, working set / message bytes."""

    copies: int
    reduces: int
    working_set: float


@lru_cache(maxsize=512)
def op_stats(collective: str, algo: str, ranks: int, ranks_per_host: int = 0) -> OpStats:
    """Counts of ``collective:algo`` on ``ranks`` ranks (cached: building the schedule of a
    16,384-rank ring takes a fraction of a second, once)."""
    from anyware.comm.algorithms import Args, get
    from anyware.comm.schedule import Buf

    a = get(collective, algo)
    count = SAMPLE_BLOCK * ranks
    block = (SAMPLE_BLOCK,) * ranks
    # nccl-tests' message (see ``simulate``) is ``count`` for every collective here; the
    # reduce-scatter and allgather builders count one block (the output, the input).
    message = count
    if collective in ("reduce_scatter", "allgather"):
        count = SAMPLE_BLOCK
    copies = reduces = 0
    working = 0.0
    for rank in sorted({0, ranks - 1}):
        s = a.build(
            Args(
                rank=rank,
                world=ranks,
                count=count,
                ranks_per_host=ranks_per_host,
                send_counts=block,
                recv_counts=block,
            )
        )
        extent = dict.fromkeys(Buf, 0)
        staged = 0
        n_copy = n_red = 0
        for rnd in s.rounds:
            n_copy += len(rnd.pre) + len(rnd.post)
            n_red += sum(r.reduce for r in rnd.recvs)
            spans = [x.span for x in rnd.sends] + [x.span for x in rnd.recvs]
            spans += [sp for c in (*rnd.pre, *rnd.post) for sp in (c.src, c.dst)]
            for sp in spans:
                extent[sp.buf] = max(extent[sp.buf], sp.offset + sp.count)
            if rnd.staged:  # parked receives: one scratch area, reused round after round
                staged = max(staged, sum(r.span.count for r in rnd.recvs))
        copies, reduces = max(copies, n_copy), max(reduces, n_red)
        working = max(working, (sum(extent.values()) + staged) / message)
    return OpStats(copies=copies, reduces=reduces, working_set=working)
