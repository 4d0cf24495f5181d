"""``anyware run`` puts this directory first on ``PYTHONPATH``; Python imports this file at
start-up in every process of the job (spawned and forkserver children, DataLoader workers,
torchrun ranks), which arms the migration shim. An existing ``sitecustomize`` further down the
path still runs: it is found and executed first, under its own name."""

from __future__ import annotations

import importlib.machinery
import os
import sys
import types


def _chain() -> None:
    here = os.path.dirname(os.path.abspath(__file__))
    path = [p for p in sys.path if os.path.abspath(p or os.curdir) != here]
    spec = importlib.machinery.PathFinder.find_spec("sitecustomize", path)
    if spec is None or spec.loader is None:
        return
    module = types.ModuleType("sitecustomize")
    module.__spec__ = spec
    module.__file__ = spec.origin
    module.__loader__ = spec.loader
    sys.modules["_anyware_chained_sitecustomize"] = module
    spec.loader.exec_module(module)


def _arm() -> None:
    if os.environ.get("ANYWARE_MIGRATE", "") != "1":
        return
    try:
        from anyware.migrate import _bootstrap
    except ImportError:
        pkg = os.environ.get("ANYWARE_MIGRATE_PKG")
        if not pkg:
            raise
        sys.path.append(pkg)  # after site-packages: the child's own torch wins
        from anyware.migrate import _bootstrap
    _bootstrap.boot()


try:
    _chain()
finally:
    _arm()
