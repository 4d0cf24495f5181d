"""Which bucket a trace event's time goes into: compute, communication, memory copy or other.

Device events (kernels, memcpy/memset on a device stream) are classified by name the way
Holistic Trace Analysis does, so that the two tools' breakdowns agree on the same trace:

* communication: NCCL kernels (``ncclDevKernel_AllReduce_Sum_f32_RING_LL``, ``ncclKernel_*``)
  and the other vendors' collective libraries (``rccl``, ``hccl``/``hcom``, ``cncl``,
  ``oneccl``/``xccl``);
* memory: names starting ``Memcpy``/``Memset``/``dma`` (Kineto's ``gpu_memcpy`` and
  ``gpu_memset`` categories);
* other: synchronisation records (a name containing ``Sync``) and kernels whose name mentions
  ``Memcpy`` elsewhere; HTA counts these neither as compute nor as communication;
* compute: everything else.

Host operators (CPU-only traces, where the host threads are "the device") use the op name:
collectives (``gloo:all_reduce``, ``c10d::allreduce_``, ``record_param_comms``, ...) are
communication, ``aten::copy_``/``aten::_to_copy`` are memory copies, the rest is compute.
Two kinds of ``record_function`` span also count (:func:`host_span_bucket`):

* ``anyware.comm:<op>``, the span :mod:`anyware.comm` puts around each collective it runs
  while a profiler is on, on the caller's thread or on its "anyware-comm" worker thread for
  ``async_op=True`` calls: communication, including the copies inside it;
* a span or op whose name ends in ``wait`` (``moe.all_to_all_wait``, ``_AllToAllWait``): the
  thread blocked until a collective finished. That is communication too (exposed: nothing
  hides it), never compute, so waiting does not inflate the overlap of communication with
  compute, and never busy time, so the rank that waits for a straggler is not taken for it.
"""

from __future__ import annotations

import re
from enum import IntEnum

_COMM_DEVICE = re.compile(r"^nccl.*Kernel|^(rccl|hccl|hcom|cncl|oneccl|xccl)", re.IGNORECASE)
_NCCL_STRICT = re.compile(r"^nccl.*Kernel")
_MEMORY_DEVICE = re.compile(r"^(Memcpy|Memset|dma)")
_OTHER_DEVICE = re.compile(r".*Memcpy|.*Sync")
_COMM_HOST = re.compile(
    r"^(gloo|nccl|hccl|cncl|xccl|mpi|ucc):|^c10d::|^c10d_functional::|^_c10d_functional::"
    r"|record_param_comms|^anyware\.comm:|^(all_?reduce|all_?gather|reduce_?scatter|broadcast|all_to_all|alltoall"
    r"|barrier|send|recv)\b",
    re.IGNORECASE,
)
_MEMORY_HOST = frozenset({"aten::copy_", "aten::_to_copy", "aten::to", "aten::_copy_from"})
_WAIT_HOST = re.compile(r"wait$", re.IGNORECASE)


class Bucket(IntEnum):
    """Where time goes; the order is the attribution priority when intervals overlap."""

    COMPUTE = 0
    COMM = 1
    MEMORY = 2
    OTHER = 3

    @property
    def label(self) -> str:
        return _LABELS[self]


_LABELS = {
    Bucket.COMPUTE: "compute",
    Bucket.COMM: "communication",
    Bucket.MEMORY: "memory copy",
    Bucket.OTHER: "other (sync)",
}

#: JSON keys of the buckets, in priority order, and the idle key.
BUCKET_KEYS: tuple[str, ...] = ("compute", "comm", "memory", "other")


def device_bucket(name: str, cat: str | None = None) -> Bucket:
    """The bucket of a device-stream event (kernel, memcpy, memset, sync)."""
    if _COMM_DEVICE.match(name):
        return Bucket.COMM
    if cat in ("gpu_memcpy", "gpu_memset") or _MEMORY_DEVICE.match(name):
        return Bucket.MEMORY
    if cat == "cuda_sync" or _OTHER_DEVICE.match(name):
        return Bucket.OTHER
    return Bucket.COMPUTE


def host_bucket(name: str) -> Bucket:
    """The bucket of a host operator's self time in a trace without device events."""
    if _COMM_HOST.search(name):
        return Bucket.COMM
    if name in _MEMORY_HOST:
        return Bucket.MEMORY
    if _WAIT_HOST.search(name):
        return Bucket.COMM
    return Bucket.COMPUTE


def host_span_bucket(name: str) -> Bucket | None:
    """The bucket of a ``record_function`` span (``user_annotation``) that the breakdown
    counts: collectives and waits for them; ``None`` for the rest (the user's own labels
    around compute, whose operators are counted already)."""
    if _COMM_HOST.search(name):
        return Bucket.COMM
    if _WAIT_HOST.search(name):
        return Bucket.COMM
    return None


def is_wait(name: str) -> bool:
    """A host span or op that blocks until a collective finishes (not a collective itself)."""
    return _WAIT_HOST.search(name) is not None and not _COMM_HOST.search(name)


def is_nccl(name: str) -> bool:
    """True for the kernels HTA itself calls communication (used by the benchmark check)."""
    return _NCCL_STRICT.match(name) is not None


def short_name(name: str, limit: int = 60) -> str:
    """A kernel name without its return type, template and argument lists
    (``void at::native::foo<float, 4>(float*)`` → ``at::native::foo``)."""
    if _MEMORY_DEVICE.match(name) or ("<" not in name and "(" not in name):
        return name if len(name) <= limit else name[: limit - 1] + "…"
    if name.startswith("void "):
        name = name[5:]
    name = name.replace("(anonymous namespace)::", "")
    out: list[str] = []
    depth = 0
    for ch in name:
        if ch in "<(":
            depth += 1
        elif ch in ">)" and depth:
            depth -= 1
        elif depth == 0:
            out.append(ch)
    text = "".join(out).strip() or name
    return text if len(text) <= limit else text[: limit - 1] + "…"
