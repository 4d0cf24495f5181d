"""``anyware run``: start the user's program in a fresh interpreter with the shim in every
process, and hand back its exit status.

The child gets the bootstrap directory first on ``PYTHONPATH`` (its ``sitecustomize`` arms the
shim in every Python process the job starts), ``ANYWARE_DEVICE`` naming the selected backend,
the backend's visible-device variable, and the trace/monitor/profile variables. ``--nproc N``
goes through torch.distributed's own launcher (its parser and elastic agent, wrapped by
``anyware.migrate._torchrun`` so that a failed rank is named in one line and its exit status is
the job's), whose ranks inherit the same environment. Each process leaves a report part; they are merged here.

Pre-flight (``--nproc`` above 1): a script that defines a top-level ``anyware_preflight(argv,
world_size)`` (found by parsing it, not running it) is imported here under another name than
``__main__``, and the hook checks its arguments against the world size before any rank starts;
a ``ValueError`` it raises is the job's one-line error. See :func:`preflight`.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.machinery
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


def _check_target(args: list[str], name: str) -> ast.Module | None:
    """Check the script or module exists (and the script compiles); returns the script's
    syntax tree (``None`` for a module)."""
    if args[0] == "-m":
        try:
            found = importlib.util.find_spec(name) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            raise LaunchError(
                f"module {name!r} not found; check the name and that its package is on PYTHONPATH"
            )
        return None
    path = Path(args[0])
    if not path.is_file():
        raise LaunchError(f"script {args[0]!r} not found; give the path of a Python file")
    try:
        source = path.read_bytes()
        tree = ast.parse(source, str(path))
        compile(tree, str(path), "exec", dont_inherit=True)
    except SyntaxError as e:
        detail = "".join(traceback.format_exception_only(type(e), e)).rstrip()
        raise LaunchError(f"{args[0]} does not compile, nothing was run:\n{detail}") from None
    except (OSError, ValueError) as e:
        raise LaunchError(f"cannot read script {args[0]!r}: {e}") from None
    return tree


#: The function a script defines to check its arguments before any rank starts.
PREFLIGHT_HOOK = "anyware_preflight"
#: The name the script is imported under for the check: anything but ``__main__``, so its
#: ``if __name__ == "__main__":`` block (the training) does not run in the launcher.
PREFLIGHT_MODULE = "__anyware_preflight__"


def defines_preflight(tree: ast.Module) -> bool:
    """True when the module binds :data:`PREFLIGHT_HOOK` at top level (``def``, an
    assignment, or ``from ... import``), read from its syntax tree without running it."""
    for node in tree.body:
        if isinstance(node, ast.FunctionDef) and node.name == PREFLIGHT_HOOK:
            return True
        if isinstance(node, ast.ImportFrom) and any(
            (a.asname or a.name) == PREFLIGHT_HOOK for a in node.names
        ):
            return True
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        if any(isinstance(t, ast.Name) and t.id == PREFLIGHT_HOOK for t in targets):
            return True
    return False


def _has_main_guard(tree: ast.Module) -> bool:
    for node in tree.body:
        test = node.test if isinstance(node, ast.If) else None
        if isinstance(test, ast.Compare) and [type(o) for o in test.ops] == [ast.Eq]:
            sides = [test.left, *test.comparators]
            if any(isinstance(x, ast.Name) and x.id == "__name__" for x in sides) and any(
                isinstance(x, ast.Constant) and x.value == "__main__" for x in sides
            ):
                return True
    return False


def _one_line(e: BaseException) -> str:
    text = str(e).strip().splitlines()
    first = text[0] if text else ""
    if len(first) > 200:
        first = first[:199] + "…"
    return f"{type(e).__name__}: {first}" if first else type(e).__name__


def _hook_source(args: list[str], name: str) -> tuple[Path, str] | None:
    """The file whose hook applies and the module name to import it under."""
    if args[0] != "-m":
        return Path(args[0]), PREFLIGHT_MODULE
    spec = importlib.util.find_spec(name)
    if spec is not None and spec.submodule_search_locations is not None:
        name = f"{name}.__main__"  # python -m pkg runs pkg.__main__
        spec = importlib.util.find_spec(name)
    if spec is None or not spec.origin or not spec.origin.endswith(".py"):
        return None
    return Path(spec.origin), name


def preflight(
    args: list[str], name: str, world_size: int, tree: ast.Module | None = None
) -> int | None:
    """Call the program's ``anyware_preflight(argv, world_size)`` before any rank starts.

    Returns ``None`` to go on (no hook, or the hook accepted), or an exit status when the hook
    ended the program itself (``SystemExit``: argparse's ``--help`` or usage error, which it
    has printed). Raises :class:`LaunchError`: the hook's ``ValueError`` as the job's error,
    anything else as "the pre-flight check itself failed". The script is imported in this
    process under :data:`PREFLIGHT_MODULE` with its folder first on ``sys.path`` and
    ``sys.argv`` set as Python would; all three are put back afterwards. The shim is not
    armed here: the hook checks arguments and shapes, it does not touch a device.
    """
    found = _hook_source(args, name)
    if found is None:
        return None
    path, modname = found
    if tree is None or args[0] == "-m":
        try:
            tree = ast.parse(path.read_bytes(), str(path))
        except (OSError, SyntaxError, ValueError):
            return None  # the program itself reports it, as without a hook
    if not defines_preflight(tree):
        return None
    label = args[0] if args[0] != "-m" else name
    if not _has_main_guard(tree):
        raise LaunchError(
            f'{label} defines {PREFLIGHT_HOOK} but has no `if __name__ == "__main__":` block, '
            "so importing it for the pre-flight check would run the whole program; put the "
            "code that trains under that block"
        )
    script_args = args[2:] if args[0] == "-m" else args[1:]
    saved_path, saved_argv = list(sys.path), list(sys.argv)
    preexisting = sys.modules.get(modname)
    sys.argv = [str(path.resolve()), *script_args]
    sys.path.insert(0, os.getcwd() if args[0] == "-m" else str(path.resolve().parent))
    try:
        stage = "importing it for the pre-flight check"
        try:
            if args[0] == "-m":
                module = importlib.import_module(modname)
            else:
                # An explicit loader: python runs scripts without a .py suffix too.
                loader = importlib.machinery.SourceFileLoader(modname, str(path))
                spec = importlib.util.spec_from_file_location(modname, path, loader=loader)
                assert spec is not None
                module = importlib.util.module_from_spec(spec)
                sys.modules[modname] = module  # dataclasses and pickle look the module up
                loader.exec_module(module)
            hook = getattr(module, PREFLIGHT_HOOK, None)
            if not callable(hook):
                raise LaunchError(
                    f"{label}: {PREFLIGHT_HOOK} is not a function; define it as "
                    f"def {PREFLIGHT_HOOK}(argv: list[str], world_size: int) -> None"
                )
            stage = f"the pre-flight check {PREFLIGHT_HOOK} itself"
            try:
                hook(list(script_args), world_size)
            except ValueError as e:
                raise LaunchError(f"{label}: {e}; no rank was started") from None
        except SystemExit as e:
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
                if code:
                    print(
                        f"anyware run: {label} exited with status {code} during {stage}; "
                        "no rank was started",
                        file=sys.stderr,
                    )
                return code
            raise LaunchError(f"{label}: {e.code}; no rank was started") from None
        except LaunchError:
            raise
        except Exception as e:
            raise LaunchError(
                f"{label}: {stage} failed ({_one_line(e)}); no rank was started. Run it with "
                "python to see the traceback"
            ) from None
    finally:
        sys.path[:] = saved_path
        sys.argv = saved_argv
        if preexisting is None:
            sys.modules.pop(modname, None)
    return None


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
    tree = _check_target(args, name)
    # One process checks the arguments for all ranks; a single process checks them itself,
    # so the pre-flight would only import the script twice (a second torch import).
    if opts.nproc > 1:
        status = preflight(args, name, opts.nproc, tree)
        if status is not None:
            return status
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
