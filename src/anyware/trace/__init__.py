"""Precision tracer: record per-module / per-op numerics of a run, diff two runs, find the
first operator where they diverge.

Record::

    with anyware.trace.record(out="runs/fp32", level="op"):
        train_one_step()

or ``anyware trace record --out DIR -- python train.py`` / ``anyware run --trace DIR``.
Diff: ``anyware trace diff RUN_A RUN_B`` or :func:`anyware.trace.diff`.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anyware.trace.schema import Level, Phase, TraceError

if TYPE_CHECKING:
    from anyware.trace.recorder import Recorder

__all__ = ["Level", "Phase", "TraceError", "active", "diff", "mark_step", "record"]

_active: Recorder | None = None


@contextlib.contextmanager
def record(
    out: str | os.PathLike[str],
    level: str | Level = Level.MODULE,
    *,
    tensors: str | None = None,
    rank: int | None = None,
) -> Iterator[Recorder]:
    """Record every module call / aten op inside the block into ``out``.

    An optimizer step (any ``torch.optim.Optimizer``) closes a step; without one, everything
    is step 0 (or call :func:`mark_step`). ``tensors`` is a glob over module paths whose
    tensors are also saved whole. Recording never changes the program's results.
    """
    global _active
    from anyware.trace.recorder import RecordConfig, Recorder

    if _active is not None:
        raise RuntimeError("anyware.trace.record is already active in this process; nest no traces")
    rec = Recorder(RecordConfig(out=Path(out), level=level, tensors=tensors, rank=rank))
    rec.install()
    _active = rec
    try:
        yield rec
    finally:
        _active = None
        rec.close()


def active() -> Recorder | None:
    """The recorder of this process, if one is running."""
    return _active


def mark_step() -> None:
    """Close the current step by hand (for loops without a ``torch.optim`` optimizer)."""
    if _active is not None:
        _active.mark_step()


def diff(run_a: str | os.PathLike[str], run_b: str | os.PathLike[str], **kw: Any) -> Any:
    """Compare two trace directories; see :func:`anyware.trace.compare.diff_runs`."""
    from anyware.trace.compare import diff_runs

    return diff_runs(run_a, run_b, **kw)


def _set_active(rec: Recorder | None) -> None:
    global _active
    _active = rec
