"""Per-process start of the shim, run by the bootstrap ``sitecustomize`` in every process of an
``anyware run`` job (and by ``import anyware.migrate.auto``).

Order inside a process: wait for ``import torch`` (post-import hook, so processes that never
import torch pay ~nothing), install the shim, then ``anyware._autostart.start_features()`` for
trace/monitor/profile. At exit the process's ledger becomes a report part (under
``anyware run``) or a summary on stderr (``auto`` used directly).
"""

from __future__ import annotations

import os
import sys

from anyware.migrate import _hooks

TYPE_CHECKING = False  # typing is not loaded yet at start-up; see _hooks
if TYPE_CHECKING:
    from types import ModuleType, TracebackType
    from typing import Any

_MIGRATE_DIR = os.path.dirname(os.path.abspath(__file__))
_booted = False
_written_pid: int | None = None
#: Seconds the shim took to install at ``import torch`` (the start-up benchmark reads it).
install_seconds: float | None = None


def trim_traceback(tb: TracebackType | None) -> TracebackType | None:
    """Drop the shim's frames so the user sees their own code around the error."""
    head: TracebackType | None = None
    prev: TracebackType | None = None
    while tb is not None:
        if not tb.tb_frame.f_code.co_filename.startswith(_MIGRATE_DIR):
            if prev is None:
                head = tb
            else:
                prev.tb_next = tb
            prev = tb
        tb = tb.tb_next
    if prev is not None:
        prev.tb_next = None
    return head


def _install_excepthook() -> None:
    previous = sys.excepthook

    def hook(tp: type[BaseException], value: BaseException, tb: TracebackType | None) -> Any:
        tb = trim_traceback(tb)
        value.__traceback__ = tb
        return previous(tp, value, tb)

    sys.excepthook = hook


def write_exit_report() -> None:
    """Write this process's ledger once (part file, or summary + optional JSON)."""
    global _written_pid
    from anyware import _env
    from anyware.migrate.shim import STATE

    if _written_pid == os.getpid():
        return
    _written_pid = os.getpid()
    target = STATE.target
    device = target.name if target is not None else "unknown"
    data = STATE.ledger.to_json(device)
    parts = _env.MIGRATE_PARTS.get()
    from anyware._io import atomic_write_json

    try:
        if parts:
            atomic_write_json(os.path.join(parts, f"{os.getpid()}.json"), data)
            return
        if data["redirects"] or data["unsupported"]:
            from anyware.migrate.reporting import summary

            print(summary(data), file=sys.stderr)
        out = _env.MIGRATE_REPORT.get()
        if out:
            atomic_write_json(out, data)
    except OSError as e:
        print(f"anyware: warning: could not write the migration report: {e}", file=sys.stderr)


def _after_fork_in_child() -> None:
    global _written_pid
    from anyware.migrate.shim import STATE

    STATE.ledger.reset()  # the parent reports its own redirects
    _written_pid = None
    _register_mp_finalizer()


class _AfterFork:
    """Weak-referenceable token for ``multiprocessing.util.register_after_fork``."""


_after_fork_token = _AfterFork()


def _register_mp_finalizer(_token: object = None) -> None:
    # Forked multiprocessing children (fork, forkserver, DataLoader workers) leave through
    # os._exit, which skips atexit; finalisers with an exit priority still run. Process
    # bootstrap clears the finaliser registry and then runs the after-fork hooks, so the
    # finaliser is (re)registered from such a hook.
    import multiprocessing.util as mp_util

    mp_util.Finalize(None, write_exit_report, exitpriority=-100)


def _on_torch(module: ModuleType) -> None:
    global install_seconds
    import atexit
    import time

    t0 = time.perf_counter()
    from anyware.migrate import shim

    try:
        target = shim.install()
        install_seconds = time.perf_counter() - t0
        # This process chose; its children take the same device without probing again.
        os.environ.setdefault("ANYWARE_DEVICE", target.name)
    except Exception as e:
        print(
            f"anyware: warning: migration shim not installed: {type(e).__name__}: {e}",
            file=sys.stderr,
        )
        return
    atexit.register(write_exit_report)
    _register_mp_finalizer()
    import multiprocessing.util as mp_util

    mp_util.register_after_fork(_after_fork_token, _register_mp_finalizer)
    os.register_at_fork(after_in_child=_after_fork_in_child)
    from anyware import _autostart

    _autostart.start_features()


def boot() -> None:
    """Arrange for the shim to install when torch is imported (idempotent)."""
    global _booted
    if _booted:
        return
    _booted = True
    _install_excepthook()
    _hooks.when_imported("torch", _on_torch)
