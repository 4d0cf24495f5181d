"""What anyware.comm's profiler span costs: the check on every collective while no profiler
runs (it must stay ≲ 0.2 µs), and the span itself while one does.

    python benchmarks/profile/bench_comm_span.py [--calls 20000]

Anchor: a one-rank gloo group's ``anyware.comm.all_reduce`` of 16 floats with no profiler, in
the same run (the shortest collective there is: no peer, all Python dispatch). The check is
timed in isolation against an empty loop, because its ~0.02 µs is below the call's noise.
"""

from __future__ import annotations

import argparse
import os
import socket
import time
import timeit


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _per_call(fn: object, calls: int, repeat: int = 5) -> float:
    """Best of ``repeat`` runs, µs per call (the best run met the least interference)."""
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        for _ in range(calls):
            fn()  # type: ignore[operator]
        best = min(best, time.perf_counter() - t0)
    return best / calls * 1e6


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--calls", type=int, default=20000)
    args = p.parse_args()

    import torch
    import torch.distributed as dist
    from torch.autograd import profiler as autograd_profiler

    import anyware.comm as comm

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(_free_port()))
    dist.init_process_group("gloo", rank=0, world_size=1)
    t = torch.ones(16)
    for _ in range(200):
        comm.all_reduce(t)

    n = args.calls * 50
    empty = min(timeit.repeat("pass", number=n, repeat=5)) / n
    check = (
        min(
            timeit.repeat(
                "if p._is_profiler_enabled: pass",
                globals={"p": autograd_profiler},
                number=n,
                repeat=5,
            )
        )
        / n
    )
    check_us = (check - empty) * 1e6
    off_us = _per_call(lambda: comm.all_reduce(t), args.calls)

    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]):
        on_us = _per_call(lambda: comm.all_reduce(t), args.calls // 10, repeat=3)

    def span() -> None:
        with torch.profiler.record_function("anyware.comm:allreduce"):
            pass

    # The span alone under the profiler: its share of the profiled call.
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]):
        span_us = _per_call(span, args.calls // 10, repeat=3)
    comm.destroy()
    dist.destroy_process_group()

    print(f"anchor: all_reduce(16 floats), 1 rank, no profiler : {off_us:8.2f} µs/call")
    print(
        f"check while no profiler runs                         : {check_us:8.3f} µs/call "
        f"(ratio to anchor {check_us / off_us:.4f})"
    )
    print(
        f"all_reduce under torch.profiler (ops + span)         : {on_us:8.2f} µs/call "
        f"(ratio {on_us / off_us:.2f})"
    )
    print(f"record_function span alone under the profiler       : {span_us:8.2f} µs/call")


if __name__ == "__main__":
    main()
