"""pytest helpers that ship with anyware, so downstream projects can mark tests the same way."""

from __future__ import annotations

from typing import Any


def require_device(*names: str) -> Any:
    """Skip the test with a reason unless one of the named backends (any accelerator when no
    name is given) is available here."""
    import pytest

    from anyware import runtime

    wanted = names or tuple(n for n in runtime.backend_names() if n not in ("cpu", "fake"))
    found = [n for n in wanted if runtime.get_backend(n).probe().available]
    return pytest.mark.skipif(
        not found, reason=f"needs an accelerator ({', '.join(wanted)}); none is available here"
    )
