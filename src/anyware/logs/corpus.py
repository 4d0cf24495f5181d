"""Failure-corpus generator: realistic multi-rank training logs with one injected failure.

Each rank writes ``node<H>-rank<R>.log`` (or, with ``layout="mixed"``, every rank goes into one
``job.log`` with torchrun's ``[rankN]:`` prefixes): CCL init chatter, warnings, routine fp16
overflow notices, then step lines. At ``fail_step`` the *culprit* rank fails in the chosen
class; the cascade follows: the other ranks' watchdog timeouts ``timeout_s`` later (with their
DistBackendError tracebacks), the launcher's SIGTERMs and a torchrun summary whose "Root Cause
(first observed failure)" names a *victim*, as torchrun's often does. ``generate`` returns the
truth (culprit rank, host, category) that the analyser must find.

Command line: ``python benchmarks/logs/corpus.py OUT --failure device_oom``.
"""

from __future__ import annotations

import argparse
import gzip
import random
from dataclasses import dataclass
from pathlib import Path

FAILURES = (
    "collective_timeout",
    "ccl_error",
    "device_oom",
    "xid",
    "ecc",
    "segfault",
    "nonfinite",
    "python_exception",
    "launcher",
    "network",
    "filesystem",
    "killed",
    "hang",
)
T0 = 1_795_910_400.0  # 2026-11-29 00:00:00 UTC
STEP_S = 0.5
_STEP_LINE_BYTES = 100  # bytes per step line per rank, measured (0.67 GB at 150), sizes a corpus


@dataclass(frozen=True)
class Truth:
    rank: int
    host: str
    category: str
    time: float
    files: tuple[str, ...]
    bytes: int


def _ts(t: float) -> str:
    import time

    g = time.gmtime(t)
    return f"{time.strftime('%Y-%m-%d %H:%M:%S', g)},{int((t % 1) * 1000):03d}"


def _glog(t: float) -> str:
    import time

    g = time.gmtime(t)
    return f"{time.strftime('%m%d %H:%M:%S', g)}.{int((t % 1) * 1e6):06d}"


def _traceback(frames: list[tuple[str, int, str]], exc: str) -> list[str]:
    out = ["Traceback (most recent call last):"]
    for f, ln, fn in frames:
        out += [f'  File "{f}", line {ln}, in {fn}', "    result = step(batch)"]
    out.append(exc)
    return out


_TRAIN_FRAMES = [
    ("/workspace/train.py", 312, "<module>"),
    ("/workspace/train.py", 221, "main"),
    ("/workspace/trainer.py", 88, "train_step"),
]


def _culprit_lines(kind: str, r: int, host: str, t: float, seq: int) -> tuple[list[str], bool]:
    """The culprit's own lines at the failure; the bool says whether it then stops logging."""
    ts = _ts(t)
    if kind == "device_oom":
        return _traceback(
            [*_TRAIN_FRAMES, ("/opt/torch/nn/modules/linear.py", 125, "forward")],
            "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB."
            f" GPU {r % 8} has a total capacity of 79.15 GiB of which 1.02 GiB is "
            "free.",
        ), True
    if kind == "ccl_error":
        return [
            f"{ts} ERROR [rank{r}] allreduce failed",
            *_traceback(
                _TRAIN_FRAMES,
                "torch.distributed.DistBackendError: NCCL error in: ../torch/csrc/"
                "distributed/c10d/ProcessGroupNCCL.cpp:1970, unhandled system error (run with "
                "NCCL_DEBUG=INFO for details), NCCL version 2.21.5",
            ),
        ], True
    if kind == "xid":
        return [
            f"{ts} ERROR [rank{r}] NVRM: Xid (PCI:0000:3b:00): 79, pid=4242, GPU has fallen "
            "off the bus.",
            *_traceback(_TRAIN_FRAMES, "RuntimeError: CUDA error: unspecified launch failure"),
        ], True
    if kind == "ecc":
        return [
            f"{ts} ERROR [rank{r}] step failed",
            *_traceback(
                _TRAIN_FRAMES, "RuntimeError: CUDA error: uncorrectable ECC error encountered"
            ),
        ], True
    if kind == "segfault":
        return [
            f"{ts} INFO [rank{r}] entering fused kernel",
            "Fatal Python error: Segmentation fault",
            "",
            "Thread 0x00007f3a2c1ff700 (most recent call first):",
            '  File "/workspace/kernels.py", line 44 in launch',
        ], True
    if kind == "nonfinite":
        return [
            f"{ts} ERROR [rank{r}] Rank {r}: found NaN in local grad norm in backward pass "
            "before data-parallel communication collective"
        ], True
    if kind == "python_exception":
        return _traceback(
            [*_TRAIN_FRAMES, ("/workspace/data.py", 57, "collate")],
            "ValueError: Expected input batch_size (32) to match target batch_size (31).",
        ), True
    if kind == "launcher":
        return [
            f"{ts} ERROR [rank{r}] lost the rendezvous store",
            *_traceback(
                _TRAIN_FRAMES,
                "torch.distributed.elastic.rendezvous.api.RendezvousConnectionError: "
                "The connection to the C10d store has failed. See inner exception for details.",
            ),
        ], True
    if kind == "network":
        return [
            f"{ts} WARN {host}:4242:4290 [{r % 8}] NCCL WARN NET/IB : Got completion from "
            "peer 10.0.0.7<5353> with error 12, opcode 0, len 0, vendor err 129 (Recv)",
            f"{_ts(t + 0.5)} ERROR [rank{r}] NCCL error: unhandled system error",
        ], True
    if kind == "filesystem":
        return [
            f"{ts} INFO [rank{r}] saving checkpoint shard to /ckpt/step_{seq}",
            *_traceback(
                _TRAIN_FRAMES,
                f"OSError: [Errno 28] No space left on device: '/ckpt/step_{seq}/shard_{r}.pt'",
            ),
        ], True
    if kind in ("killed", "hang"):
        return [], True
    return [], False  # collective_timeout: nobody fails first


def _timeout_lines(r: int, t: float, seq: int, timeout_s: int) -> list[str]:
    ms = timeout_s * 1000
    msg = (
        f"[Rank {r}] Watchdog caught collective operation timeout: WorkNCCL(SeqNum={seq}, "
        f"OpType=ALLREDUCE, NumelIn=1048576, NumelOut=1048576, Timeout(ms)={ms}) ran for "
        f"{ms + 17} milliseconds before timing out."
    )
    return [
        f"[E{_glog(t)} 4242 ProcessGroupNCCL.cpp:616] {msg}",
        f"[E{_glog(t)} 4242 ProcessGroupNCCL.cpp:1537] [PG 0 Rank {r}] Some NCCL operations "
        "have failed or timed out. To avoid data inconsistency, we are taking the entire "
        "process down.",
        *_traceback(_TRAIN_FRAMES, f"torch.distributed.DistBackendError: {msg}"),
    ]


def generate(
    out: str | Path,
    *,
    failure: str,
    ranks: int = 16,
    ranks_per_host: int = 8,
    steps: int = 200,
    target_bytes: int | None = None,
    fail_step: int | None = None,
    timeout_s: int = 600,
    seed: int = 0,
    layout: str = "per_rank",
    gzip_some: bool = False,
) -> Truth:
    """Write a corpus under ``out`` and return what the analyser should find."""
    if failure not in FAILURES:
        raise ValueError(f"unknown failure class {failure!r}; choose one of {', '.join(FAILURES)}")
    if ranks < 2:
        raise ValueError("a multi-rank corpus needs ranks >= 2")
    rng = random.Random(seed)
    if target_bytes is not None:
        steps = max(20, target_bytes // (ranks * _STEP_LINE_BYTES))
    fail_step = fail_step if fail_step is not None else int(steps * 0.8)
    culprit = rng.randrange(ranks)
    host_of = [f"node{r // ranks_per_host:02d}" for r in range(ranks)]
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jitter = [rng.uniform(0.0, 0.05) for _ in range(ranks)]
    if failure == "collective_timeout":
        jitter[culprit] = -0.2  # the first to enter the collective is the first to time out
    t_fail = T0 + 60 + fail_step * STEP_S + jitter[culprit] + 0.1
    seq = 7 + fail_step * 3
    per_rank: list[list[tuple[float, str]]] = []
    files: list[str] = []
    total = 0

    def write(name: str, lines: list[tuple[float, str]]) -> None:
        nonlocal total
        data = ("\n".join(x for _, x in lines) + "\n").encode()
        total += len(data)
        p = out / name
        if gzip_some and name.endswith("rank1.log"):
            p = p.with_suffix(".log.gz")
            p.write_bytes(gzip.compress(data, compresslevel=1))
        else:
            p.write_bytes(data)
        files.append(p.name)

    losses = [rng.uniform(1.5, 3.0) for _ in range(64)]
    for r in range(ranks):
        lines: list[tuple[float, str]] = []
        h = host_of[r]
        t = T0 + r * 0.001
        lines += [
            (t, f"{_ts(t)} INFO [rank{r}] starting worker on {h}, local_rank {r % 8}"),
            (
                t,
                f"{h}:4242:4242 [{r % 8}] NCCL INFO Bootstrap : Using eth0:10.0.{r // 8}.{r % 8}<0>",
            ),
            (
                t,
                f"{h}:4242:4242 [{r % 8}] NCCL INFO NET/IB : Using [0]mlx5_0:1/IB [1]mlx5_1:1/IB ; OOB eth0",
            ),
            (
                t,
                f"{h}:4242:4290 [{r % 8}] NCCL INFO comm 0x55d4a1b0 rank {r} nranks {ranks} cudaDev {r % 8} busId 3b000 - Init COMPLETE",
            ),
            (
                t + 1,
                "/workspace/train.py:140: UserWarning: torch.utils.checkpoint: the use_reentrant parameter should be passed explicitly.",
            ),
            (
                t + 1,
                f"{_ts(t + 1)} WARNING [rank{r}] dataloader: 2 workers are slower than the step time",
            ),
        ]
        if r == 0:
            lines.append(
                (
                    t + 2,
                    f"{_ts(t + 2)} INFO [rank0] [deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 65536, reducing to 32768",
                )
            )
        last = fail_step
        base = T0 + 60 + jitter[r]
        fmt = f" INFO [rank{r}] step {{}} | loss {{:.4f}} | grad_norm {{:.3f}} | lr 3.00e-04 | tokens/s {{}} | mem 61.2GiB"
        for s in range(last + 1):
            ts = base + s * STEP_S
            lines.append(
                (
                    ts,
                    _ts(ts)
                    + fmt.format(
                        s,
                        losses[s % 64],
                        0.5 + losses[(s + r) % 64] / 4,
                        90000 + (s * 7919 + r) % 9000,
                    ),
                )
            )
        ts = base + (last + 1) * STEP_S
        if r == culprit:
            own, _stops = _culprit_lines(failure, r, h, t_fail, seq)
            lines += [(t_fail, x) for x in own]
            if failure == "collective_timeout":
                lines += [
                    (t_fail + timeout_s, x)
                    for x in _timeout_lines(r, t_fail + timeout_s, seq, timeout_s)
                ]
        else:
            if failure == "nonfinite" and r == 0:
                lines.append(
                    (
                        t_fail + 0.4,
                        f"{_ts(t_fail + 0.4)} INFO [rank0] step {fail_step + 1} | loss nan | grad_norm nan",
                    )
                )
            tv = t_fail + timeout_s + 0.05 * r + (0.3 if failure == "collective_timeout" else 0.0)
            if failure in ("ccl_error", "network") and r % 4 == 1:
                lines.append(
                    (
                        t_fail + 30,
                        f"{_ts(t_fail + 30)} ERROR [rank{r}] NCCL error: remote process exited or there was a network error",
                    )
                )
            lines += [(tv, x) for x in _timeout_lines(r, tv, seq, timeout_s)]
        if layout == "mixed":
            per_rank.append(lines)
        else:  # written at once: a multi-GB corpus never sits in memory
            write(f"{host_of[r]}-rank{r}.log", lines)
    victim = (culprit + 1) % ranks
    t_end = t_fail + timeout_s + 0.05 * ranks + 5
    launcher: list[tuple[float, str]] = [
        (
            t_end - 2,
            f"{_ts(t_end - 2)} torch.distributed.elastic.multiprocessing.api: [WARNING] Sending process 4250 closing signal SIGTERM",
        ),
    ]
    summary = [
        "torch.distributed.elastic.multiprocessing.errors.ChildFailedError:",
        "============================================================",
        "train.py FAILED",
        "------------------------------------------------------------",
        "Failures:",
    ]
    if failure in ("killed", "segfault"):
        sig = 9 if failure == "killed" else 11
        summary += [
            "[1]:",
            f"  time      : {_ts(t_fail + 1).replace(' ', '_')[:19]}",
            f"  host      : {host_of[culprit]}",
            f"  rank      : {culprit} (local_rank: {culprit % 8})",
            f"  exitcode  : -{sig} (pid: 4242)",
            "  error_file: <N/A>",
            f"  traceback : Signal {sig} ({'SIGKILL' if sig == 9 else 'SIGSEGV'}) received by PID 4242",
        ]
    else:
        summary += ["  <NO_OTHER_FAILURES>"]
    summary += [
        "------------------------------------------------------------",
        "Root Cause (first observed failure):",
        "[0]:",
        f"  time      : {_ts(t_end).replace(' ', '_')[:19]}",
        f"  host      : {host_of[victim]}",
        f"  rank      : {victim} (local_rank: {victim % 8})",
        "  exitcode  : 1 (pid: 4251)",
        "  error_file: /tmp/torchelastic/error.json",
        "  traceback : To enable traceback see: https://pytorch.org/docs/stable/elastic/errors.html",
        "============================================================",
    ]
    launcher += [(t_end, x) for x in summary]
    kern: list[tuple[float, str]] = []
    if failure == "killed":
        import time as _time

        stamp = _time.strftime("%a %b %d %H:%M:%S %Y", _time.gmtime(t_fail))
        kern.append(
            (
                t_fail,
                f"[{stamp}] Out of memory: Killed process 4242 (python) total-vm:912345678kB, anon-rss:123456789kB",
            )
        )
    if layout == "mixed":
        merged = sorted(
            ((t, f"[rank{r}]:{x}") for r, ls in enumerate(per_rank) for t, x in ls),
            key=lambda p: p[0],
        )
        write("job.log", merged + launcher)
    else:
        write(f"{host_of[victim]}-torchrun.log", launcher)
    if kern:
        write(f"{host_of[culprit]}-kern.log", kern)
    return Truth(
        rank=culprit,
        host=host_of[culprit],
        category=failure,
        time=t_fail,
        files=tuple(files),
        bytes=total,
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out")
    ap.add_argument("--failure", default="device_oom", choices=FAILURES)
    ap.add_argument("--ranks", type=int, default=64)
    ap.add_argument("--bytes", type=float, default=None, help="approximate total size, e.g. 1e9")
    ap.add_argument("--layout", default="per_rank", choices=("per_rank", "mixed"))
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    truth = generate(
        a.out,
        failure=a.failure,
        ranks=a.ranks,
        seed=a.seed,
        layout=a.layout,
        target_bytes=int(a.bytes) if a.bytes else None,
    )
    print(truth)


if __name__ == "__main__":
    main()
