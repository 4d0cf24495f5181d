"""The public in-code API of anyware.migrate: ``redirect()``, ``report()``, ``MigrationError``.

- ``anyware run SCRIPT`` (see :mod:`anyware.migrate.launch`): the shim in every process.
- ``import anyware.migrate.auto``: the shim in this process, for the rest of its life.
- ``with anyware.migrate.redirect(device="fake"):``: the shim for a block, then undone.
- ``anyware migrate check|fix``: a libcst rewrite into device-agnostic PyTorch
  (:mod:`anyware.migrate.codemod`).

Importing this package does not import torch.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

from anyware.migrate.shim._state import MigrationError

__all__ = ["MigrationError", "redirect", "report"]


@contextlib.contextmanager
def redirect(device: str | None = None, *, strict: bool = False) -> Iterator[Any]:
    """Redirect CUDA calls to ``device`` (an anyware backend name; default: the current one)
    inside the block; every patch is undone on exit. Yields the target.

    Patches are process-wide while the block runs (other threads see them too)."""
    from anyware.migrate import shim
    from anyware.migrate.shim._state import STATE, target_from_runtime

    target = target_from_runtime(device)
    old_strict = STATE.strict
    shim.install(target, strict=strict)
    try:
        yield target
    finally:
        shim.uninstall()
        STATE.strict = old_strict


def report() -> dict[str, Any]:
    """This process's redirects so far, in the ``--report`` JSON shape."""
    from anyware.migrate.shim._state import STATE

    target = STATE.target
    return STATE.ledger.to_json(target.name if target is not None else "unknown")
