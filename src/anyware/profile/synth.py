"""Build Kineto-format traces by hand: small exact ones for tests, large ones for benchmarks.

A GPU trace written by torch.profiler has, per kernel, three linked records: the host
operator (``cpu_op``, with an ``External id``), the runtime launch call (``cuda_runtime``
``cudaLaunchKernel``, with a ``correlation`` id) and the kernel on a device stream (``kernel``,
``args.stream``, the same correlation and External id). :class:`TraceBuilder` writes exactly
that shape, so the device paths of the analysis (and HTA, for the benchmark) can run on a
machine without a GPU.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

from anyware._io import atomic_write_json

HOST_PID = 100
HOST_TID = 1
DEVICE_PID = 0
BASE_NS = 1_700_000_000_000_000_000


_LAUNCH_CALL = {
    "gpu_memcpy": "cudaMemcpyAsync",
    "gpu_memset": "cudaMemsetAsync",
    "cuda_sync": "cudaStreamSynchronize",
}


class TraceBuilder:
    """Accumulates the events of one rank; times in µs."""

    def __init__(self, *, rank: int = 0, world_size: int = 1, base_ns: int = BASE_NS) -> None:
        self.rank = rank
        self.world_size = world_size
        self.base_ns = base_ns
        self.events: list[dict[str, Any]] = []
        self._next = 1

    def _id(self) -> int:
        self._next += 1
        return self._next

    def step(self, num: int, ts: float, dur: float) -> None:
        self.events.append(
            _x(
                "user_annotation",
                f"ProfilerStep#{num}",
                ts,
                dur,
                HOST_PID,
                HOST_TID,
                {"External id": self._id()},
            )
        )

    def op(self, name: str, ts: float, dur: float, *, tid: int = HOST_TID) -> int:
        ext = self._id()
        self.events.append(_x("cpu_op", name, ts, dur, HOST_PID, tid, {"External id": ext}))
        return ext

    def annotation(self, name: str, ts: float, dur: float, *, tid: int = HOST_TID) -> None:
        """A ``record_function`` span (``anyware.comm:<op>``, ``moe.all_to_all_wait``)."""
        self.events.append(
            _x("user_annotation", name, ts, dur, HOST_PID, tid, {"External id": self._id()})
        )

    def python(self, name: str, ts: float, dur: float, *, tid: int = HOST_TID) -> None:
        self.events.append(_x("python_function", name, ts, dur, HOST_PID, tid, {}))

    def kernel(
        self,
        name: str,
        ts: float,
        dur: float,
        *,
        stream: int = 7,
        launch_ts: float | None = None,
        launch_dur: float = 4.0,
        ext: int | None = None,
        cat: str = "kernel",
    ) -> None:
        """A device event, with its launch call at ``launch_ts`` (default: 10 µs before)."""
        corr = self._id()
        lts = ts - 10.0 if launch_ts is None else launch_ts
        launch = _LAUNCH_CALL.get(cat, "cudaLaunchKernel")
        self.events.append(
            _x(
                "cuda_runtime",
                launch,
                lts,
                launch_dur,
                HOST_PID,
                HOST_TID,
                {"correlation": corr, "External id": ext or 0},
            )
        )
        args = {"device": 0, "stream": stream, "correlation": corr, "External id": ext or 0}
        self.events.append(_x(cat, name, ts, dur, DEVICE_PID, stream, args))

    def memory(self, ts: float, allocated: int, *, device: int = 0, reserved: int = 0) -> None:
        self.events.append(
            {
                "ph": "i",
                "cat": "cpu_instant_event",
                "s": "t",
                "name": "[memory]",
                "pid": HOST_PID,
                "tid": HOST_TID,
                "ts": ts,
                "args": {
                    "Total Allocated": allocated,
                    "Total Reserved": reserved,
                    "Device Id": device,
                    "Device Type": 1,
                    "Bytes": 0,
                },
            }
        )

    def header(self) -> dict[str, Any]:
        return {
            "schemaVersion": 1,
            "deviceProperties": [{"id": 0, "name": "Synthetic GPU", "totalGlobalMem": 80 << 30}],
            "distributedInfo": {
                "backend": "nccl",
                "rank": self.rank,
                "world_size": self.world_size,
            },
            "baseTimeNanoseconds": self.base_ns,
            "displayTimeUnit": "ms",
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.header(), "traceEvents": self.events, "traceName": f"rank{self.rank}"}

    def write(self, path: Path) -> Path:
        atomic_write_json(path, self.to_json())
        return path


def _x(
    cat: str, name: str, ts: float, dur: float, pid: int, tid: int, args: dict[str, Any]
) -> dict[str, Any]:
    return {
        "ph": "X",
        "cat": cat,
        "name": name,
        "pid": pid,
        "tid": tid,
        "ts": ts,
        "dur": dur,
        "args": args,
    }


_COMPUTE = (
    "void cutlass::Kernel<cutlass_80_tensorop_s1688gemm_128x128_32x3_nn_align4>(Params)",
    "void at::native::vectorized_elementwise_kernel<4, at::native::GeluCUDAKernelImpl>(int, float*)",
    "void at::native::(anonymous namespace)::softmax_warp_forward<float, float, float, 10>(float*)",
    "ampere_sgemm_128x64_tn",
)
_OPS = ("aten::mm", "aten::gelu", "aten::_softmax", "aten::addmm")


def write_large_rank(
    path: Path,
    *,
    rank: int,
    world_size: int,
    steps: int,
    kernels_per_step: int,
    seed: int,
    slow: float = 1.0,
) -> int:
    """Stream a realistic rank trace to ``path`` (never held in memory); returns event count.

    Each step: a host loop of op + launch + kernel on the compute stream, a memcpy, and an
    NCCL all-reduce on a second stream that overlaps the last part of the compute; ``slow``
    stretches this rank's compute kernels (a straggler).
    """
    rng = random.Random(seed * 7919 + rank)
    tmp = path.with_suffix(".tmp")
    n = 0
    # Kineto's correlation ids count every launch since the process started, so they are
    # large; small ones also trip HTA 0.5.0 under pandas 3 (it downcasts them to int16 and then
    # cannot store row indices past 32767 in the derived column).
    corr = 1_000_000
    with open(tmp, "w") as f:
        f.write(
            json.dumps({**TraceBuilder(rank=rank, world_size=world_size).header()})[:-1]
            + ', "traceEvents": [\n'
        )
        first = True

        def emit(ev: dict[str, Any]) -> None:
            nonlocal first, n
            f.write(("" if first else ",\n") + json.dumps(ev))
            first = False
            n += 1

        t = 1_000.0
        for s in range(steps):
            step_start = t
            host = t
            dev = t + 20.0
            for _ in range(kernels_per_step):
                i = rng.randrange(len(_COMPUTE))
                corr += 1
                op_dur = rng.uniform(8, 30)
                emit(
                    _x(
                        "cpu_op",
                        _OPS[i],
                        host,
                        op_dur,
                        HOST_PID,
                        HOST_TID,
                        {"External id": corr, "Sequence number": corr},
                    )
                )
                emit(
                    _x(
                        "cuda_runtime",
                        "cudaLaunchKernel",
                        host + 2,
                        5.0,
                        HOST_PID,
                        HOST_TID,
                        {"correlation": corr, "External id": corr, "cbid": 211},
                    )
                )
                kdur = rng.uniform(5, 60) * slow
                kstart = max(dev, host + 7.0) + rng.choice((0.0, 0.0, 0.0, rng.uniform(1, 20)))
                emit(
                    _x(
                        "kernel",
                        _COMPUTE[i],
                        kstart,
                        kdur,
                        DEVICE_PID,
                        7,
                        {
                            "device": 0,
                            "stream": 7,
                            "correlation": corr,
                            "External id": corr,
                            "grid": [80, 1, 1],
                            "block": [128, 1, 1],
                        },
                    )
                )
                dev = kstart + kdur
                host += op_dur + rng.uniform(1, 6)
            corr += 1
            emit(_x("cpu_op", "aten::copy_", host, 12.0, HOST_PID, HOST_TID, {"External id": corr}))
            emit(
                _x(
                    "cuda_runtime",
                    "cudaMemcpyAsync",
                    host + 2,
                    6.0,
                    HOST_PID,
                    HOST_TID,
                    {"correlation": corr, "External id": corr},
                )
            )
            mstart = max(dev, host + 8)
            emit(
                _x(
                    "gpu_memcpy",
                    "Memcpy DtoH (Device -> Pinned)",
                    mstart,
                    40.0,
                    DEVICE_PID,
                    7,
                    {"device": 0, "stream": 7, "correlation": corr, "External id": corr},
                )
            )
            corr += 1
            # The all-reduce starts while the last tenth of the step's compute still runs, so
            # part of it is hidden behind compute and the rest is exposed.
            emit(
                _x(
                    "cpu_op",
                    "nccl:all_reduce",
                    host + 14,
                    10.0,
                    HOST_PID,
                    HOST_TID,
                    {"External id": corr},
                )
            )
            emit(
                _x(
                    "cuda_runtime",
                    "cudaLaunchKernel",
                    host + 16,
                    5.0,
                    HOST_PID,
                    HOST_TID,
                    {"correlation": corr, "External id": corr},
                )
            )
            cstart = step_start + 20 + 0.9 * (dev - step_start - 20)
            cdur = rng.uniform(200, 600)
            emit(
                _x(
                    "kernel",
                    "ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevComm*, unsigned long, ncclWork*)",
                    cstart,
                    cdur,
                    DEVICE_PID,
                    20,
                    {"device": 0, "stream": 20, "correlation": corr, "External id": corr},
                )
            )
            end = max(mstart + 40.0, cstart + cdur, host + 30)
            emit(
                _x(
                    "user_annotation",
                    f"ProfilerStep#{s}",
                    step_start,
                    end - step_start + 5,
                    HOST_PID,
                    HOST_TID,
                    {"External id": 0},
                )
            )
            emit(
                {
                    "ph": "i",
                    "cat": "cpu_instant_event",
                    "s": "t",
                    "name": "[memory]",
                    "pid": HOST_PID,
                    "tid": HOST_TID,
                    "ts": step_start + 3,
                    "args": {
                        "Total Allocated": (1 << 30) + rng.randrange(1 << 28),
                        "Total Reserved": 2 << 30,
                        "Device Id": 0,
                        "Device Type": 1,
                        "Bytes": 4096,
                    },
                }
            )
            t = end + 10 + rng.uniform(0, 40)
        f.write('\n], "traceName": "synthetic"}\n')
    tmp.replace(path)
    return n


def write_large_run(
    out: Path,
    *,
    ranks: int,
    steps: int,
    kernels_per_step: int,
    seed: int = 0,
    slow_rank: int | None = None,
) -> list[Path]:
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for r in range(ranks):
        p = out / f"rank{r}.pt.trace.json"
        write_large_rank(
            p,
            rank=r,
            world_size=ranks,
            steps=steps,
            kernels_per_step=kernels_per_step,
            seed=seed,
            slow=1.3 if r == slow_rank else 1.0,
        )
        paths.append(p)
    return paths
