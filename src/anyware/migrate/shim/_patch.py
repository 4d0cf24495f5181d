"""A ledger of attribute replacements, undone in reverse order.

Every patch the shim makes goes through :class:`Patcher`, so ``redirect()`` is reversible and a
test can prove the interpreter is back as it was: an attribute that a class only inherited is
deleted again rather than pinned to the inherited value.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any

_MISSING = object()


def _own(obj: Any, name: str) -> Any:
    """``obj``'s own attribute ``name`` (not an inherited one), or ``_MISSING``."""
    d = getattr(obj, "__dict__", None)
    if d is not None and name in d:
        return d[name]
    return _MISSING


class Patcher:
    """Replace attributes and remember how to put them back."""

    def __init__(self) -> None:
        self._undo: list[tuple[Any, str, Any]] = []

    def set(self, obj: Any, name: str, value: Any) -> None:
        old = _own(obj, name)
        if old is _MISSING and isinstance(obj, type) is False and hasattr(obj, name):
            old = getattr(obj, name)  # module-like objects without a plain __dict__ entry
        self._undo.append((obj, name, old))
        setattr(obj, name, value)

    def wrap(self, obj: Any, name: str, make: Callable[[Any], Any]) -> None:
        """Replace ``obj.name`` by ``make(original)``; skipped when ``obj`` lacks it."""
        orig = getattr(obj, name, _MISSING)
        if orig is _MISSING:
            return
        self.set(obj, name, make(orig))

    def undo(self) -> None:
        while self._undo:
            obj, name, old = self._undo.pop()
            if old is _MISSING:
                with contextlib.suppress(AttributeError):
                    delattr(obj, name)
            else:
                setattr(obj, name, old)

    def __len__(self) -> int:
        return len(self._undo)
