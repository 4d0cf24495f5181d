"""Start the observers that ``anyware run`` asked for, inside each process of the job.

``anyware run --trace/--monitor/--profile`` passes its choices to every process it starts through
environment variables (see ``_env.py``). The migration bootstrap calls :func:`start_features`
once per process, after the shim is installed; each feature module exposes ``start()``, which
must be idempotent, cheap, and must never break the user's program.
"""

from __future__ import annotations

import importlib
import sys

from anyware import _env

#: (variables that switch the feature on, module with ``start()``)
FEATURES: tuple[tuple[tuple[_env.EnvVar, ...], str], ...] = (
    ((_env.TRACE_DIR,), "anyware.trace.autostart"),
    ((_env.MONITOR_ADDR, _env.MONITOR_EVENTS), "anyware.monitor.autostart"),
    ((_env.PROFILE_DIR,), "anyware.profile.autostart"),
)

_started: set[str] = set()


def start_features() -> list[str]:
    """Start every feature whose variable is set; returns the modules started. A feature that
    fails to start prints one warning and the program goes on without it."""
    started = []
    for variables, module in FEATURES:
        if module in _started or not any(v.get() for v in variables):
            continue
        _started.add(module)
        try:
            importlib.import_module(module).start()
            started.append(module)
        except Exception as e:
            feature = module.split(".")[1]
            print(
                f"anyware: warning: could not start {feature}: {type(e).__name__}: {e}",
                file=sys.stderr,
            )
    return started
