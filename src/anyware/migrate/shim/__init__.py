"""The run-time shim: install every rule of the table against the target device.

``install()`` is what ``anyware run`` (through the bootstrap), ``import anyware.migrate.auto``
and ``anyware.migrate.redirect()`` call. Rules patch torch through one
:class:`~anyware.migrate.shim._patch.Patcher`, so ``uninstall()`` restores every attribute.
A CUDA target installs nothing: the code already runs there.
"""

from __future__ import annotations

import sys

from anyware.migrate.shim._patch import Patcher
from anyware.migrate.shim._state import STATE, MigrationError, Target, target_from_runtime

__all__ = ["STATE", "MigrationError", "Target", "install", "installed", "uninstall"]

_patcher: Patcher | None = None


def installed() -> bool:
    return _patcher is not None


def install(target: Target | None = None, *, strict: bool | None = None) -> Target:
    """Patch torch so CUDA code runs on ``target`` (default: the runtime's current backend)."""
    global _patcher
    from anyware import _env
    from anyware.migrate.shim.rules import all_rules

    if strict is not None:
        STATE.strict = strict
    elif _env.flag(_env.MIGRATE_STRICT):
        STATE.strict = True
    if target is None:
        target = target_from_runtime()
    if _patcher is not None:
        STATE.targets.append(target)
        return target
    STATE.targets.append(target)
    patcher = Patcher()
    if target.device_type != "cuda":
        failed = []
        for rule in all_rules():
            try:
                rule.install(patcher, target)
            except Exception as e:  # one rule that cannot apply must not stop the others
                failed.append(f"{rule.api}: {type(e).__name__}: {e}")
        if failed:
            print("anyware: warning: shim rules skipped: " + "; ".join(failed), file=sys.stderr)
    _patcher = patcher
    return target


def uninstall() -> None:
    """Pop the innermost target; the last pop undoes every patch."""
    global _patcher
    if STATE.targets:
        STATE.targets.pop()
    if STATE.targets or _patcher is None:
        return
    _patcher.undo()
    _patcher = None
    from anyware.migrate import _hooks

    for name in ("torch.distributed.fsdp", "torch.utils.cpp_extension"):
        _hooks.forget(name)
