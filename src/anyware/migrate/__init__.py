"""GPU migration: run CUDA-written PyTorch code unchanged on the present device, or rewrite it.

- ``anyware run SCRIPT`` (see :mod:`anyware.migrate.launch`): the shim in every process.
- ``import anyware.migrate.auto``: the shim in this process, for the rest of its life.
- ``with anyware.migrate.redirect(device="fake"):``: the shim for a block, then undone.
- ``anyware migrate check|fix``: a libcst rewrite into device-agnostic PyTorch
  (:mod:`anyware.migrate.codemod`).

Importing this package imports nothing else: the bootstrap imports it in every process of a
job at start-up, so the public names load on first use.
"""

from __future__ import annotations

TYPE_CHECKING = False
if TYPE_CHECKING:
    from anyware.migrate._api import MigrationError, redirect, report

__all__ = ["MigrationError", "redirect", "report"]


def __getattr__(name: str) -> object:
    if name in __all__:
        from anyware.migrate import _api

        return getattr(_api, name)
    raise AttributeError(f"module 'anyware.migrate' has no attribute {name!r}")
