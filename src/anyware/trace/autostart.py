"""``anyware run --trace DIR``: start recording inside every process of the job.

``anyware._autostart.start_features`` calls :func:`start` when ``ANYWARE_TRACE_DIR`` is set.
Steps are closed by the global optimizer step hook, so an unmodified training script gets its
records numbered by step; everything is sealed at interpreter exit.
"""

from __future__ import annotations

import atexit
from pathlib import Path

from anyware import _env

_started = False


def start() -> bool:
    """Install the recorder once; returns whether this call started it."""
    global _started
    if _started:
        return False
    out = _env.TRACE_DIR.get()
    if not out:
        return False
    import anyware.trace as trace
    from anyware.trace.recorder import RecordConfig, Recorder
    from anyware.trace.schema import Level

    if trace.active() is not None:
        return False
    level = Level(_env.TRACE_LEVEL.get() or "module")
    cfg = RecordConfig(out=Path(out), level=level, tensors=_env.TRACE_TENSORS.get())
    rec = Recorder(cfg)
    rec.install()
    trace._set_active(rec)
    _started = True
    atexit.register(_close, rec)
    return True


def _close(rec: object) -> None:
    from anyware.trace.recorder import Recorder

    assert isinstance(rec, Recorder)
    try:
        rec.close()
    except Exception as e:  # at exit there is nobody to raise to; say it once
        import sys

        print(f"anyware trace: could not write the trace: {type(e).__name__}: {e}", file=sys.stderr)
