"""Profiler view: capture torch.profiler traces on any backend and explain where the time went.

* capture: :mod:`anyware.profile.capture` (``anyware run --profile DIR``,
  ``anyware profile record``), started per process by :mod:`anyware.profile.autostart`;
* analysis: :func:`analyze` streams Kineto/Chrome-trace JSON (:mod:`.reader`), keeps compact
  columns (:mod:`.collect`) and reports compute / communication / memory copy / idle per rank
  and step, overlap, top ops and kernels, launch rate and host-bound detection, the slowest
  rank and memory peaks (:mod:`.analyze`, :mod:`.report`);
* views: ``anyware profile summary|view`` and the dashboard's Profile page (:mod:`.web`).

Importing this package imports neither torch nor numpy.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anyware.profile.model import ProfileReport


def analyze(path: str | Path) -> ProfileReport:
    """Analyse the trace(s) at ``path`` (a directory of rank traces or one file)."""
    from anyware.profile.report import analyze_path

    return analyze_path(Path(path))


def step() -> None:
    """Mark a step boundary for the running profile (for loops without an optimizer)."""
    from anyware.profile import autostart

    autostart.step()


__all__ = ["analyze", "step"]
