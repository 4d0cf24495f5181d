"""One-way latency, median of 2000 round trips: anyware's shared-memory transport vs gloo's
send/recv, both between the same two processes in the same run (alternating blocks), plus the
median of a full 1 KiB allreduce each way. Medians, because this machine is shared: a mean
absorbs every preemption.

    python benchmarks/comm/bench_latency.py
"""

from __future__ import annotations

import os
import socket
import statistics
import subprocess
import sys
import time

TRIPS = 2000


def worker(rank: int, port: int) -> None:
    import torch
    import torch.distributed as dist

    from anyware import comm
    from anyware.comm.reduce_ops import ReduceOp
    from anyware.comm.schedule import Buf, Builder, Span
    from anyware.comm.transports.base import Header

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    c = comm.communicator(None, transport="shm", calibrate=False)
    buf = torch.zeros(8, dtype=torch.uint8)
    b = Builder(rank, 2)
    span = Span(Buf.OUT, 0, 8)
    if rank == 0:
        b.send(0, 1, span)
        b.recv(1, 1, span)
    else:
        b.recv(0, 0, span)
        b.send(1, 0, span)
    sched, hdr = b.build(), Header(seq=-1, collective="barrier", op=ReduceOp.SUM, dtype=9, numel=8)
    bufs = {Buf.IN: buf, Buf.OUT: buf}
    shm, gloo, ar_ours, ar_gloo = [], [], [], []
    x = torch.randn(256)
    for block in range(TRIPS // 100):
        for _ in range(100):
            t0 = time.perf_counter()
            c.transport.run(sched, bufs, ReduceOp.SUM, hdr)
            shm.append((time.perf_counter() - t0) / 2)
        for _ in range(100):
            t0 = time.perf_counter()
            if rank == 0:
                dist.send(buf, 1)
                dist.recv(buf, 1)
            else:
                dist.recv(buf, 0)
                dist.send(buf, 0)
            gloo.append((time.perf_counter() - t0) / 2)
        if block % 4 == 0:
            for _ in range(25):
                t0 = time.perf_counter()
                comm.all_reduce(x)
                ar_ours.append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                dist.all_reduce(x)
                ar_gloo.append(time.perf_counter() - t0)
    if rank == 0:
        s, g = statistics.median(shm), statistics.median(gloo)
        a, ag = statistics.median(ar_ours), statistics.median(ar_gloo)
        print(
            f"one-way latency (median of {TRIPS}): shm {s * 1e6:.1f} µs, gloo send/recv {g * 1e6:.1f} µs, ratio {s / g:.3f}"
        )
        print(
            f"1 KiB allreduce (median): anyware.comm {a * 1e6:.1f} µs ({c.last_algo}), gloo {ag * 1e6:.1f} µs, ratio {a / ag:.3f}"
        )
    dist.barrier()
    os._exit(0)


def main() -> None:
    with socket.socket() as sk:
        sk.bind(("127.0.0.1", 0))
        port = sk.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen([sys.executable, __file__, "worker", str(r), str(port)], env=env)
        for r in range(2)
    ]
    for p in procs:
        p.wait(timeout=600)


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "worker":
        worker(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()
