"""``anyware comm bench``: nccl-tests-style figures for every op × algorithm × transport, with
gloo's own collective measured *interleaved in the same run* (blocks of ours and gloo's
alternate), so the ratio survives a noisy, shared machine.

The driver starts ``nproc`` copies of this module (``python -m anyware.comm.bench worker``);
rank 0 measures, reports progress on stdout and writes the results. Sizes follow nccl-tests:
the allreduce buffer, the all-to-all send buffer per rank; algbw = bytes / time, busbw =
algbw × the collective's factor (allreduce 2(n-1)/n, all-to-all (n-1)/n).
"""

from __future__ import annotations

import datetime
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

OPS = ("allreduce", "alltoall", "allgather", "reduce_scatter", "broadcast")
DEFAULT_OPS = ("allreduce", "alltoall")
DEFAULT_SIZES = (1024, 64 * 1024, 1 << 20, 16 << 20)
#: Each row takes SAMPLES alternating pairs (gloo's k calls, then ours), each sample ~SAMPLE_S
#: long, and reports the *medians*: on a shared machine (load 10+ on 2 cores here) a single
#: preemption can triple a mean, while the median of alternating samples keeps the ratio.
#: Rows also carry the fastest sample (``time_min_s``, ``gloo_time_min_s``): what the host
#: gives when the other jobs disturb least, which the simulator's validation compares to.
SAMPLE_S = 0.02
#: Message size of the large-message calibration: past this host's 32 MiB last-level cache
#: once source and destination are counted.
LARGE = 16 << 20
SAMPLES = 9


@dataclass(frozen=True, slots=True, kw_only=True)
class BenchConfig:
    nproc: int = 2
    ops: tuple[str, ...] = DEFAULT_OPS
    sizes: tuple[int, ...] = DEFAULT_SIZES
    transports: tuple[str, ...] = ("shm", "p2p")
    algos: tuple[str, ...] = ()
    """Only these algorithms (empty: all, plus the cost model's own pick, 'auto')."""
    cost_out: str | None = None
    calibrate_large: bool = False
    """Also measure β and γ with 16 MiB messages (past the caches) for the simulator."""

    def __post_init__(self) -> None:
        if not 2 <= self.nproc <= 16:
            raise ValueError(f"--nproc must be between 2 and 16, got {self.nproc}")
        bad = [o for o in self.ops if o not in OPS]
        if bad:
            raise ValueError(f"unknown op(s) {bad}; choose from {', '.join(OPS)}")
        bad = [t for t in self.transports if t not in ("shm", "p2p")]
        if bad:
            raise ValueError(f"unknown transport(s) {bad}; choose from shm, p2p")
        if not self.sizes or any(s < 0 for s in self.sizes):
            raise ValueError(f"sizes must be non-negative byte counts, got {self.sizes}")


@dataclass(slots=True)
class Row:
    op: str
    algo: str
    transport: str
    bytes: int
    time_s: float
    busbw_gbps: float
    gloo_time_s: float
    ratio: float
    algbw_gbps: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)


def _factor(op: str, p: int) -> float:
    from anyware.comm.simulate.engine import BUSBW

    factor: Callable[[int], float] = BUSBW[op]
    return float(factor(p))


def _calls(
    op: str, nbytes: int, p: int, group: Any, algo: str | None
) -> tuple[Callable[[], None], Callable[[], None]]:
    """(ours, gloo's) for one op and size, on preallocated fp32 buffers."""
    import torch
    import torch.distributed as dist

    from anyware import comm

    n = max(nbytes // 4, 0)
    if op == "allreduce":
        x = torch.randn(n)
        return (lambda: comm.all_reduce(x, algo=algo, group=group) and None), (
            lambda: dist.all_reduce(x, group=group) and None
        )
    if op == "alltoall":
        n -= n % p
        x, y = torch.randn(n), torch.empty(n)
        return (lambda: comm.all_to_all(y, x, algo=algo, group=group) and None), (
            lambda: dist.all_to_all_single(y, x, group=group) and None
        )
    if op == "broadcast":
        x = torch.randn(n)
        return (lambda: comm.broadcast(x, algo=algo, group=group) and None), (
            lambda: dist.broadcast(x, 0, group=group) and None
        )
    n -= n % p
    big, small = torch.randn(n), torch.empty(n // p)
    if op == "allgather":
        return (lambda: comm.all_gather(big, small, algo=algo, group=group) and None), (
            lambda: dist.all_gather_into_tensor(big, small, group=group) and None
        )
    return (lambda: comm.reduce_scatter(small, big, algo=algo, group=group) and None), (
        lambda: dist.reduce_scatter_tensor(small, big, group=group) and None
    )


def _timed(fn: Callable[[], None], k: int) -> float:
    t0 = time.perf_counter()
    for _ in range(k):
        fn()
    return time.perf_counter() - t0


def join_loopback(rank: int, world: int, port: int, pin: bool = False) -> None:
    """Join a gloo group on the loopback port :func:`run_ranks` chose, one torch thread per
    rank (two ranks share two cores here). ``pin`` then binds the calling thread, only it, to
    one core per rank: the shared-memory transport runs on that thread, and two idle runs of
    the simulator's rows reproduced within 10% on 62–67 of 77 shared-memory rows pinned
    against 35 unpinned. gloo's own threads, started before, stay free (pinning them as well
    made gloo rows less reproducible: 14 of 77 against 25)."""
    import torch
    import torch.distributed as dist

    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=120),
    )
    if pin and hasattr(os, "sched_setaffinity"):
        cpus = sorted(os.sched_getaffinity(0))
        os.sched_setaffinity(0, {cpus[rank % len(cpus)]})


def worker(rank: int, world: int, port: int, out: Path, cfg: BenchConfig) -> None:
    import torch
    import torch.distributed as dist

    from anyware import comm
    from anyware.comm.algorithms import REGISTRY, Collective

    join_loopback(rank, world, port)
    groups: dict[str, Any] = {}
    models: dict[str, Any] = {}
    for t in cfg.transports:
        g = None if not groups else dist.new_group(backend="gloo")
        groups[t] = g
        models[t] = comm.communicator(g, transport=t).cost
    large: dict[str, dict[str, float]] = {}
    if cfg.calibrate_large:  # collective calls: every rank takes part
        for t in cfg.transports:
            c = comm.communicator(groups[t])
            _, beta = c.ping_pong(big=LARGE)
            large[t] = {"bytes": LARGE, "beta": beta, "gamma": c.local_copy_cost(LARGE)}
    if rank == 0 and cfg.cost_out and "shm" in models:
        models["shm"].save(cfg.cost_out)
    plan: list[tuple[str, int, str, str]] = []
    for op in cfg.ops:
        names = ["auto", *REGISTRY[Collective(op)]]
        if cfg.algos:
            names = [a for a in names if a in cfg.algos]
        for nbytes in cfg.sizes:
            for t in cfg.transports:
                plan.extend((op, nbytes, t, a) for a in names)
    rows: list[Row] = []
    kt = torch.zeros(1, dtype=torch.int64)
    for i, (op, nbytes, t, algo) in enumerate(plan):
        group = groups[t]
        try:
            ours, gloo = _calls(op, nbytes, world, group, None if algo == "auto" else algo)
            ours()
        except ValueError:  # an algorithm that cannot run this shape (e.g. hierarchical)
            continue
        gloo()
        t1 = min(_timed(ours, 1) + _timed(gloo, 1) for _ in range(3))
        kt[0] = max(2, min(200, int(SAMPLE_S / max(t1 / 2, 1e-6))))
        dist.broadcast(kt, 0)
        k = int(kt[0])
        mine_s: list[float] = []
        theirs_s: list[float] = []
        for _ in range(SAMPLES):
            # Each block starts with one untimed call of its own collective: the ranks leave
            # gloo's barrier up to ~1 ms apart here, and that skew must not be charged to
            # the first timed call of whichever side runs next.
            dist.barrier()
            gloo()
            theirs_s.append(_timed(gloo, k))
            dist.barrier()
            ours()
            mine_s.append(_timed(ours, k))
        if rank == 0:
            ts, tg = statistics.median(mine_s) / k, statistics.median(theirs_s) / k
            extra = {"time_min_s": min(mine_s) / k, "gloo_time_min_s": min(theirs_s) / k}
            algbw = nbytes / ts / 1e9 if ts > 0 else 0.0
            label = algo
            if algo == "auto":
                c = comm.communicator(group)
                args_algo = c.last_algo
                label = f"auto:{args_algo}"
            rows.append(
                Row(
                    op=op,
                    algo=label,
                    transport=t,
                    bytes=nbytes,
                    time_s=ts,
                    busbw_gbps=algbw * _factor(op, world),
                    gloo_time_s=tg,
                    ratio=ts / tg if tg > 0 else float("inf"),
                    algbw_gbps=algbw,
                    extra=extra,
                )
            )
            print(f"PROGRESS {i + 1} {len(plan)}", flush=True)
    if rank == 0:
        from anyware._io import atomic_write_json

        atomic_write_json(
            out,
            {
                "world_size": world,
                "cost_model": models[cfg.transports[0]].to_json(),
                "cost_models": {t: m.to_json() for t, m in models.items()},
                "calibration_large": large,
                "results": [
                    {**{k: v for k, v in asdict(r).items() if k != "extra"}, **r.extra}
                    for r in rows
                ],
            },
        )
    dist.barrier()
    os._exit(0)


def run_ranks(
    module: str,
    nproc: int,
    args: list[str],
    out: Path,
    timeout_s: float,
    progress: Callable[[int, int], None] | None = None,
    what: str = "comm bench",
) -> dict[str, Any]:
    """Start ``python -m MODULE worker RANK NPROC PORT OUT *ARGS`` for every rank on a free
    loopback port, follow rank 0's ``PROGRESS i n`` lines when ``progress`` is given, and return the JSON rank 0 wrote to
    ``out``. A rank that fails is named with its exit status and the tail of its stderr; ranks
    still running at the deadline or on any error are killed."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-m",
                module,
                "worker",
                str(r),
                str(nproc),
                str(port),
                str(out),
                *args,
            ],
            env=env,
            stdout=subprocess.PIPE if r == 0 and progress is not None else subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        for r in range(nproc)
    ]
    deadline = time.monotonic() + timeout_s
    try:
        for line in procs[0].stdout or ():
            if line.startswith("PROGRESS") and progress is not None:
                _, i, n = line.split()
                progress(int(i), int(n))
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not finish in {timeout_s:g} s")
        errs = []
        for r, p in enumerate(procs):
            try:
                p.wait(timeout=max(1.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                raise TimeoutError(f"{what} did not finish in {timeout_s:g} s") from None
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
    return dict(json.loads(out.read_text()))


def run(
    cfg: BenchConfig,
    out: Path,
    progress: Callable[[int, int], None] | None = None,
    timeout_s: float = 1800,
) -> dict[str, Any]:
    """Start the ranks, follow rank 0's progress, return its results."""
    return run_ranks(
        "anyware.comm.bench", cfg.nproc, [json.dumps(asdict(cfg))], out, timeout_s, progress
    )


if __name__ == "__main__" and len(sys.argv) > 1 and sys.argv[1] == "worker":
    _cfg = json.loads(sys.argv[6])
    worker(
        int(sys.argv[2]),
        int(sys.argv[3]),
        int(sys.argv[4]),
        Path(sys.argv[5]),
        BenchConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in _cfg.items()}),  # type: ignore[arg-type]
    )
