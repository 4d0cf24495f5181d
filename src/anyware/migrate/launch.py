"""``anyware run``: start the user's program in a fresh interpreter with the shim in every
process, and hand back its exit status.

The child gets the bootstrap directory first on ``PYTHONPATH`` (its ``sitecustomize`` arms the
shim in every Python process the job starts), ``ANYWARE_DEVICE`` naming the selected backend,
the backend's visible-device variable, and the trace/monitor/profile variables. ``--nproc N``
goes through torch.distributed's own launcher (its parser and elastic agent, wrapped by
``anyware.migrate._torchrun`` so that a failed rank is named in one line and its exit status is
the job's), whose ranks inherit the same environment. Each process leaves a report part; they are merged here.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import anyware
from anyware import _env

BOOTSTRAP_DIR = Path(__file__).resolve().parent / "bootstrap"
_PYTHON_NAMES = {"python", "python3", f"python3.{sys.version_info.minor}"}


class LaunchError(ValueError):
    """Bad input to ``run``: one sentence naming it and what to do."""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunOptions:
    """What ``anyware run`` (and ``trace record`` / ``profile record``) asks for."""

    target: list[str]
    """``["script.py", *args]`` or ``["-m", "pkg.mod", *args]``; a leading python is dropped."""
    device: str | None = None
    """anyware backend name (``cpu``, ``fake``, ``npu``, ...); default: the best available."""
    nproc: int = 1
    """Ranks to launch through torch.distributed.run (1: plain interpreter)."""
    monitor: bool = False
    """Start the training-health monitor and print its dashboard URL."""
    events: Path | None = None
    """Monitor JSONL directory (default ``runs/<timestamp>/``)."""
    trace: Path | None = None
    """Record a precision trace into this directory."""
    trace_level: str = "module"
    """Trace level: module, op or mix."""
    profile: Path | None = None
    """Write profiler traces into this directory."""
    profile_steps: str | None = None
    """Steps to profile, ``"A:B"``."""
    report: Path | None = None
    """Write the migration report JSON here."""
    strict: bool = False
    """What the shim cannot honour is an error."""

    def __post_init__(self) -> None:
        if self.nproc < 1:
            raise LaunchError(f"--nproc must be at least 1, got {self.nproc}")
        if not self.target:
            raise LaunchError("give a script to run (anyware run SCRIPT [ARGS...] or -m MODULE)")

    def command(self) -> tuple[list[str], str]:
        """``(python arguments, what to call it in messages)``."""
        target = list(self.target)
        head = target[0]
        if head in _PYTHON_NAMES or os.path.abspath(head) == os.path.abspath(sys.executable):
            target = target[1:]
        if not target:
            raise LaunchError("give a script to run after the python executable")
        if target[0] == "-m":
            if len(target) < 2:
                raise LaunchError("-m needs a module name, e.g. anyware run -m pkg.train")
            return target, target[1]
        return target, target[0]


def _check_target(args: list[str], name: str) -> None:
    if args[0] == "-m":
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise LaunchError(
                f"module {name!r} not found; check the name and that its package is on PYTHONPATH"
            )
        return
    path = Path(args[0])
    if not path.is_file():
        raise LaunchError(f"script {args[0]!r} not found; give the path of a Python file")
    try:
        source = path.read_bytes()
        compile(source, str(path), "exec", dont_inherit=True)
    except SyntaxError as e:
        detail = "".join(traceback.format_exception_only(type(e), e)).rstrip()
        raise LaunchError(f"{args[0]} does not compile, nothing was run:\n{detail}") from None
    except (OSError, ValueError) as e:
        raise LaunchError(f"cannot read script {args[0]!r}: {e}") from None


def child_environment(
    opts: RunOptions, backend_name: str | None, parts: Path, extra: dict[str, str]
) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    pythonpath = [str(BOOTSTRAP_DIR)] + [
        p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p
    ]
    env["PYTHONPATH"] = os.pathsep.join(pythonpath)
    env[_env.MIGRATE.name] = "1"
    env[_env.MIGRATE_PARTS.name] = str(parts)
    env[_env.MIGRATE_PKG.name] = str(Path(anyware.__file__).resolve().parent.parent)
    if backend_name is not None:
        env[_env.DEVICE.name] = opts.device or backend_name
    env.pop(_env.MIGRATE_STRICT.name, None)
    if opts.strict:
        env[_env.MIGRATE_STRICT.name] = "1"
    if opts.trace is not None:
        env[_env.TRACE_DIR.name] = str(opts.trace)
        env[_env.TRACE_LEVEL.name] = opts.trace_level
    if opts.profile is not None:
        env[_env.PROFILE_DIR.name] = str(opts.profile)
        if opts.profile_steps:
            env[_env.PROFILE_STEPS.name] = opts.profile_steps
    return env


def argv_for(opts: RunOptions, args: list[str]) -> list[str]:
    if opts.nproc == 1:
        return [sys.executable, *args]
    launcher = [
        sys.executable, "-m", "anyware.migrate._torchrun", "--standalone",
        f"--nproc-per-node={opts.nproc}",
    ]  # fmt: skip
    if args[0] == "-m":
        return [*launcher, "-m", *args[1:]]
    return [*launcher, *args]


def _wait(proc: subprocess.Popen[bytes]) -> int:
    # Ctrl-C reaches the child through the terminal's process group: let it decide, and wait.
    old_int = signal.signal(signal.SIGINT, signal.SIG_IGN)

    def forward(signum: int, frame: Any) -> None:
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signum)

    old_term = signal.signal(signal.SIGTERM, forward)
    try:
        code = proc.wait()
    finally:
        signal.signal(signal.SIGINT, old_int)
        signal.signal(signal.SIGTERM, old_term)
    return 128 - code if code < 0 else code


def run(opts: RunOptions, *, quiet: bool = False, output: Any = None) -> int:
    """Run the program; returns its exit status. Raises :class:`LaunchError` for bad input
    and the runtime's backend errors for a ``device`` that is unknown or absent.

    ``quiet`` skips the summary on stderr; ``output`` (a file) takes the program's stdout and
    stderr instead of the terminal."""
    from anyware import runtime

    args, name = opts.command()
    _check_target(args, name)
    # Selecting "the best available" probes every backend, which imports torch (seconds); the
    # child selects for itself, so the parent only validates an explicit choice.
    backend_name: str | None = None
    extra: dict[str, str] = {}
    if opts.device is not None or _env.VISIBLE_DEVICES.get() is not None:
        backend = runtime.select(opts.device)
        backend_name = backend.name
        extra = runtime.child_env(backend)
    handle = None
    with tempfile.TemporaryDirectory(prefix="anyware-migrate-") as tmp:
        parts = Path(tmp)
        env = child_environment(opts, backend_name, parts, extra)
        if opts.monitor:
            handle = _start_monitor(opts, env)
        try:
            redirect = {} if output is None else {"stdout": output, "stderr": subprocess.STDOUT}
            proc = subprocess.Popen(argv_for(opts, args), env=env, **redirect)
            code = _wait(proc)
        finally:
            if handle is not None:
                handle.stop()
        from anyware.migrate.reporting import merge, read_parts, summary

        found = read_parts(parts)
        devices = [str(p["device"]) for p in found if p.get("device") not in (None, "unknown")]
        data = merge(found, backend_name or (devices[0] if devices else "unknown"))
    if not quiet:
        print(summary(data), file=sys.stderr)
    if opts.report is not None:
        from anyware._io import atomic_write_json

        atomic_write_json(opts.report, data)
    return code


def _start_monitor(opts: RunOptions, env: dict[str, str]) -> Any:
    try:
        from anyware.monitor.launch import start_for_run
    except ImportError as e:
        raise LaunchError(
            f"--monitor needs anyware.monitor.launch, which is not available ({e})"
        ) from None
    events = opts.events or Path("runs") / time.strftime("%Y%m%d-%H%M%S")
    handle = start_for_run(events)
    env[_env.MONITOR_ADDR.name] = handle.addr
    env[_env.MONITOR_EVENTS.name] = str(events)
    print(f"anyware: monitor dashboard at {handle.url}", file=sys.stderr)
    return handle
