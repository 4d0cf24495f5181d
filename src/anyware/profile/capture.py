"""Capture: torch.profiler over chosen steps of an unmodified training script, one trace per
rank.

``anyware run --profile DIR`` sets ``ANYWARE_PROFILE_DIR`` (and ``ANYWARE_PROFILE_STEPS``,
``A:B``); in each process of the job :func:`anyware.profile.autostart.start` builds a
:class:`CaptureConfig` from them and starts a :class:`Capture`. Steps are counted by a global
optimizer step hook (the first optimizer to step is the clock, so two optimizers do not count
one step twice), or by :func:`anyware.profile.step` for loops without an optimizer.

Steps ``A:B`` profile steps ``A`` to ``B-1`` (``B`` exclusive): the profiler's schedule waits
``A-1`` steps, warms up one (Kineto's first active step otherwise carries its start-up cost)
and records ``B-A``. The activities follow the present backend: CPU always, plus CUDA (cuda
and rocm), XPU or PrivateUse1 (npu, mlu and other out-of-tree devices).
"""

from __future__ import annotations

import json
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any

#: Profile steps 2-5 by default: step 0 carries allocator and autotuning warm-up, step 1 is
#: the profiler's own warm-up.
DEFAULT_STEPS = "2:6"


class Record(StrEnum):
    """Optional extras (``ANYWARE_PROFILE_RECORD``, comma-separated)."""

    SHAPES = "shapes"
    STACK = "stack"
    MEMORY = "memory"
    THREADS = "threads"
    """Every thread's spans (:func:`all_threads_config`); torch then records no memory events."""


@dataclass(frozen=True, slots=True, kw_only=True)
class StepRange:
    """Profile steps ``start`` to ``stop - 1``, counted from 0."""

    start: int
    stop: int

    def __post_init__(self) -> None:
        if self.start < 0 or self.stop <= self.start:
            raise ValueError(f"steps {self.start}:{self.stop}: need 0 <= A < B, e.g. '2:6'")

    @classmethod
    def parse(cls, text: str) -> StepRange:
        a, sep, b = text.partition(":")
        try:
            if not sep:
                raise ValueError
            return cls(start=int(a), stop=int(b))
        except ValueError as e:
            raise ValueError(
                f"steps {text!r}: expected A:B with integers 0 <= A < B, e.g. '2:6'"
            ) from e

    @property
    def wait(self) -> int:
        return max(self.start - 1, 0)

    @property
    def warmup(self) -> int:
        return 1 if self.start >= 1 else 0

    @property
    def active(self) -> int:
        return self.stop - self.start


@dataclass(frozen=True, slots=True, kw_only=True)
class CaptureConfig:
    out: Path
    """Directory for ``rank<N>.pt.trace.json``."""
    steps: StepRange = field(default_factory=lambda: StepRange.parse(DEFAULT_STEPS))
    record: frozenset[Record] = frozenset({Record.MEMORY})
    """Extras to record; stacks also give modules and source lines."""

    def __post_init__(self) -> None:
        if not str(self.out):
            raise ValueError("profile output directory is empty")

    @classmethod
    def from_env(cls) -> CaptureConfig | None:
        from anyware import _env

        out = _env.PROFILE_DIR.get()
        if out is None:
            return None
        steps = StepRange.parse(_env.PROFILE_STEPS.get() or DEFAULT_STEPS)
        raw = _env.PROFILE_RECORD.get()
        return cls(out=Path(out), steps=steps, record=parse_record(raw))


def parse_record(raw: str | None) -> frozenset[Record]:
    """``ANYWARE_PROFILE_RECORD``'s extras. Unset: ``threads`` in a distributed job (its
    profile is about communication, and anyware.comm's asynchronous collectives run on a worker
    thread), ``memory`` otherwise. torch 2.13 records no memory events while it profiles all
    threads, so the two cannot be asked for together."""
    if raw is None:
        distributed = int(os.environ.get("WORLD_SIZE", "1") or 1) > 1
        if distributed and all_threads_config() is not None:
            return frozenset({Record.THREADS})
        return frozenset({Record.MEMORY})
    record = set()
    for item in filter(None, (x.strip() for x in raw.split(","))):
        try:
            record.add(Record(item))
        except ValueError:
            raise ValueError(
                f"ANYWARE_PROFILE_RECORD: unknown {item!r}; choose from {', '.join(r.value for r in Record)}"
            ) from None
    if {Record.MEMORY, Record.THREADS} <= record:
        raise ValueError(
            "ANYWARE_PROFILE_RECORD: 'memory' and 'threads' cannot be combined (torch records "
            "no memory events while it profiles every thread); choose one"
        )
    if Record.THREADS in record and all_threads_config() is None:
        import torch

        raise ValueError(
            f"ANYWARE_PROFILE_RECORD: 'threads' needs a torch profiler with profile_all_threads "
            f"(torch 2.13 has it), and torch {torch.__version__} has none; leave it out"
        )
    return frozenset(record)


def activities_for(device_type: str) -> list[Any]:
    """The profiler activities for a torch device type (``cuda``, ``xpu``, ``npu``, ...)."""
    from torch.profiler import ProfilerActivity

    acts = [ProfilerActivity.CPU]
    extra = {"cuda": "CUDA", "xpu": "XPU", "hpu": "HPU", "mtia": "MTIA"}.get(device_type)
    if extra is None and device_type not in ("cpu", "mps", "meta"):
        extra = "PrivateUse1"  # npu, mlu and other out-of-tree backends register as privateuse1
    if extra is not None and hasattr(ProfilerActivity, extra):
        acts.append(getattr(ProfilerActivity, extra))
    return acts


def all_threads_config() -> Any:
    """An experimental config that records every thread's ``record_function`` spans, or
    ``None`` where the installed torch has no such option.

    torch.profiler records only the threads that had the profiler enabled on them; work run
    on a helper thread (``anyware.comm``'s ``async_op=True`` collectives run on its
    "anyware-comm" worker) is otherwise invisible, and a profile shows no communication and no
    overlap. torch 2.13 has ``_ExperimentalConfig(profile_all_threads=True)``; older versions
    reject the keyword and keep their default.
    """
    try:
        from torch._C._profiler import _ExperimentalConfig

        return _ExperimentalConfig(profile_all_threads=True)
    except (ImportError, TypeError):
        return None


def _rank() -> tuple[int, int]:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except Exception:  # a broken process group must not stop the export
        pass
    return int(os.environ.get("RANK", "0") or 0), int(os.environ.get("WORLD_SIZE", "1") or 1)


def run_id() -> str:
    """Shared by the ranks of one job: torchelastic's run id, else the launcher's address."""
    rid = os.environ.get("TORCHELASTIC_RUN_ID")
    if rid and rid != "none":
        return rid
    return f"{os.environ.get('MASTER_ADDR', 'local')}:{os.environ.get('MASTER_PORT', '0')}:{os.getppid()}"


class Capture:
    """One profiler for this process, stepped by the optimizer hook."""

    def __init__(self, config: CaptureConfig, device_type: str) -> None:
        import torch.profiler as tp

        self.config = config
        self.device_type = device_type
        self.written: Path | None = None
        self._clock: int | None = None
        self._lock = threading.Lock()
        self._done = False
        self._tagged = False
        s = config.steps
        self.profiler = tp.profile(
            activities=activities_for(device_type),
            schedule=tp.schedule(wait=s.wait, warmup=s.warmup, active=s.active, repeat=1),
            on_trace_ready=self._export,
            record_shapes=Record.SHAPES in config.record,
            with_stack=Record.STACK in config.record,
            with_modules=Record.STACK in config.record,
            profile_memory=Record.MEMORY in config.record,
            experimental_config=(all_threads_config() if Record.THREADS in config.record else None),
        )
        self.profiler.start()
        self.steps_seen = 0

    def on_optimizer_step(self, optimizer: Any, *_: Any) -> None:
        if self._clock is None:
            self._clock = id(optimizer)
        if id(optimizer) == self._clock:
            self.step()

    def step(self) -> None:
        with self._lock:
            if self._done:
                return
            self.steps_seen += 1
            self.profiler.step()
            if not self._tagged and self.steps_seen >= self.config.steps.start:
                # Kineto takes metadata only while a trace is being recorded, not at export.
                self._tagged = True
                self.profiler.add_metadata_json("anyware", json.dumps(self._metadata()))
            if self.steps_seen >= self.config.steps.stop:
                self._done = True
                self.profiler.stop()

    def stop(self) -> None:
        """At exit: a profile still recording is cut short and written."""
        with self._lock:
            if self._done:
                return
            self._done = True
            try:
                if self._tagged:
                    # The step in flight is only the program's tail: the analysis leaves it out.
                    partial = {"partial_step": self.steps_seen}
                    self.profiler.add_metadata_json("anyware_cut", json.dumps(partial))
                self.profiler.stop()
            except Exception as e:
                print(f"anyware: warning: profiler stop failed: {e}", file=sys.stderr)

    def _metadata(self) -> dict[str, Any]:
        rank, world = _rank()
        meta: dict[str, Any] = {
            "rank": rank,
            "world_size": world,
            "run_id": run_id(),
            "device_type": self.device_type,
            "steps": f"{self.config.steps.start}:{self.config.steps.stop}",
            "pid": os.getpid(),
            "recorded_at": time.time(),
        }
        from anyware import _env

        events = _env.MONITOR_EVENTS.get()
        if events:
            meta["monitor_events"] = str(Path(events).resolve())
        return meta

    def _export(self, prof: Any) -> None:
        rank, _ = _rank()
        self.config.out.mkdir(parents=True, exist_ok=True)
        path = self.config.out / f"rank{rank}.pt.trace.json"
        tmp = self.config.out / f".rank{rank}.{os.getpid()}.tmp.json"
        try:
            prof.export_chrome_trace(str(tmp))
            os.replace(tmp, path)  # readers see no trace or the whole trace
            self.written = path
        finally:
            tmp.unlink(missing_ok=True)
