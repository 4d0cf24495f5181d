"""Post-import hooks: run a callback right after a module finishes importing.

The shim waits for ``import torch`` instead of importing torch itself, so a process of the job
that never uses torch (a shell helper, a data-prep worker) pays nothing. A meta-path finder
claims the watched names, lets the other finders locate them, and wraps the loader so the
callback runs after the module body; the module's ``__loader__`` is then put back so
``inspect.getsource`` and resource readers see the real loader.
"""

from __future__ import annotations

import _thread
import sys

# Runs in every process at start-up, so it imports only what Python has already loaded
# (typing, threading and importlib.abc cost ~10 ms together on a loaded machine).
TYPE_CHECKING = False
if TYPE_CHECKING:
    import importlib.machinery
    from collections.abc import Callable, Sequence
    from types import ModuleType
    from typing import Any

    Callback = Callable[[ModuleType], None]

_lock = _thread.RLock()
_hooks: dict[str, list[Callback]] = {}


def _fire(name: str, module: ModuleType) -> None:
    with _lock:
        callbacks = _hooks.pop(name, [])
    for cb in callbacks:
        try:
            cb(module)
        except Exception as e:  # a hook must never break the user's import
            print(
                f"anyware: warning: hook for {name} failed: {type(e).__name__}: {e}",
                file=sys.stderr,
            )


class _Loader:
    def __init__(self, name: str, inner: Any) -> None:
        self._name = name
        self._inner = inner

    def create_module(self, spec: importlib.machinery.ModuleSpec) -> ModuleType | None:
        create = getattr(self._inner, "create_module", None)
        return create(spec) if create is not None else None

    def exec_module(self, module: ModuleType) -> None:
        try:
            module.__loader__ = self._inner
            if module.__spec__ is not None:
                module.__spec__.loader = self._inner
        except AttributeError:
            pass
        self._inner.exec_module(module)
        _fire(self._name, module)

    def __getattr__(self, attr: str) -> Any:
        return getattr(self._inner, attr)


class _Finder:
    def __init__(self) -> None:
        self._busy: set[str] = set()

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if fullname not in _hooks or fullname in self._busy:
            return None
        self._busy.add(fullname)
        try:
            for finder in sys.meta_path:
                if finder is self or not hasattr(finder, "find_spec"):
                    continue
                spec = finder.find_spec(fullname, path, target)
                if spec is not None:
                    break
            else:
                return None
        finally:
            self._busy.discard(fullname)
        if spec.loader is None or not hasattr(spec.loader, "exec_module"):
            return spec
        spec.loader = _Loader(fullname, spec.loader)  # type: ignore[assignment]
        return spec


_finder = _Finder()


def when_imported(name: str, callback: Callback) -> None:
    """Call ``callback(module)`` once ``name`` is imported (now, if it already is)."""
    module = sys.modules.get(name)
    if (
        module is not None
        and getattr(module, "__spec__", None) is not None
        and name not in _importing()
    ):
        callback(module)
        return
    with _lock:
        _hooks.setdefault(name, []).append(callback)
        if _finder not in sys.meta_path:
            sys.meta_path.insert(0, _finder)


def _importing() -> set[str]:
    """Modules whose body is still running (present in sys.modules but not finished)."""
    out = set()
    for name, mod in list(sys.modules.items()):
        spec = getattr(mod, "__spec__", None)
        if spec is not None and getattr(spec, "_initializing", False):
            out.add(name)
    return out


def forget(name: str) -> None:
    """Drop pending callbacks for ``name`` (a scoped redirect ended before the import)."""
    with _lock:
        _hooks.pop(name, None)
