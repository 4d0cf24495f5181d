"""Micro-benchmarks for the simulator's fit that are *not* collectives: the copy sweep.

Why: at 2 ranks every calibration collective is one or two rounds, and the per-call cost o,
the per-round cost α, the per-copy-op cost and the per-reduce cost only ever appear in four
sums (ring allreduce o+2α+r, pairwise o+α+c, ring allgather o+α+c, ring reduce-scatter
o+α+r+2c) — three independent ones for four unknowns. Bruck's six copies and recursive
doubling's single round sit exactly on the direction those rows cannot see. The sweep pins
the copy op: each rank runs, through the transport's own executor, a schedule of ``k`` local
copies of ``m`` bytes (no messages), for k = 1, 2, 4, 8 and m from 8 B up; the slope in k at
small m is the per-op cost, and the larger m give the copy bandwidth in and out of the caches
(working set 2·k·m: source and destination). Both ranks copy at the same time, after a
barrier, as they do inside a collective (they share the memory bus).

The run's own per-call cost (the executor's entry, the clock) is a nuisance: the fit gives
the sweep its own intercept, so only the slopes in k and in bytes inform the model.
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from anyware.comm.schedule import Buf, Builder, Schedule, Span

SWEEP_COPIES = (1, 2, 4, 8)
SWEEP_SIZES = (8, 1 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20)
#: Fastest of this many samples, each ~SAMPLE_S long: as the collective bench (``comm.bench``).
SAMPLES = 9
SAMPLE_S = 0.01


def copy_schedule(rank: int, world: int, copies: int, count: int) -> Schedule:
    """``copies`` local copies of ``count`` elements, input → scratch, in one round."""
    b = Builder(rank, world)
    for i in range(copies):
        b.copy(0, Span(Buf.IN, i * count, count), Span(Buf.TMP, i * count, count))
    b.need_tmp(copies * count)
    return b.build()


def _worker(rank: int, world: int, port: int, out: Path, sizes: Sequence[int]) -> None:
    import torch
    import torch.distributed as dist

    from anyware import comm
    from anyware.comm.reduce_ops import ReduceOp
    from anyware.comm.transports.base import Header, dtype_code

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=120),
    )
    result: dict[str, list[dict[str, float]]] = {}
    for i, t in enumerate(("shm", "p2p")):
        group = None if i == 0 else dist.new_group(backend="gloo")
        transport = comm.communicator(group, transport=t).transport
        rows = result[t] = []
        for m in sizes:
            for k in SWEEP_COPIES:
                sched = copy_schedule(rank, world, k, m)
                bufs = {
                    Buf.IN: torch.ones(k * m, dtype=torch.uint8),
                    Buf.OUT: torch.empty(0, dtype=torch.uint8),
                    Buf.TMP: torch.empty(k * m, dtype=torch.uint8),
                }
                hdr = Header(
                    seq=-2,
                    collective="barrier",
                    op=ReduceOp.SUM,
                    dtype=dtype_code(bufs[Buf.IN].dtype),
                    numel=k * m,
                )

                def once() -> None:
                    transport.run(sched, bufs, ReduceOp.SUM, hdr)  # noqa: B023

                once()
                t0 = time.perf_counter()
                once()
                reps = max(1, min(2000, int(SAMPLE_S / max(time.perf_counter() - t0, 1e-7))))
                best = float("inf")
                for _ in range(SAMPLES):
                    dist.barrier(group)
                    t0 = time.perf_counter()
                    for _ in range(reps):
                        once()
                    best = min(best, (time.perf_counter() - t0) / reps)
                slow = torch.tensor([best], dtype=torch.float64)
                dist.all_reduce(slow, op=dist.ReduceOp.MAX, group=group)  # the slower rank
                rows.append({"copies": k, "bytes": m, "time_min_s": float(slow[0])})
    if rank == 0:
        from anyware._io import atomic_write_json

        atomic_write_json(out, result)
    dist.barrier()
    os._exit(0)


def copy_sweep(
    out: Path, sizes: Sequence[int] = SWEEP_SIZES, timeout_s: float = 600
) -> dict[str, list[dict[str, float]]]:
    """Run the sweep on 2 ranks (both transports); ``{transport: [{copies, bytes,
    time_min_s}]}``, also written to ``out``."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    args = [sys.executable, "-m", "anyware.comm.simulate.calibrate", "worker"]
    procs = [
        subprocess.Popen(
            [*args, str(r), "2", str(port), str(out), json.dumps(list(sizes))],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for r in range(2)
    ]
    try:
        errs = []
        deadline = time.monotonic() + timeout_s
        for r, p in enumerate(procs):
            try:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"the copy sweep did not finish in {timeout_s:g} s") from None
            if p.returncode:
                err = (p.stderr.read() if p.stderr else "")[-2000:]
                errs.append(f"rank {r} exited with {p.returncode}: {err.strip()}")
        if errs:
            raise RuntimeError("; ".join(errs))
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    data: dict[str, list[dict[str, float]]] = json.loads(out.read_text())
    return data


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "worker":
    _worker(
        int(sys.argv[2]),
        int(sys.argv[3]),
        int(sys.argv[4]),
        Path(sys.argv[5]),
        [int(x) for x in json.loads(sys.argv[6])],
    )
