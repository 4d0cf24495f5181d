"""What every subcommand shares: the user-error type, JSON output and the consoles."""

from __future__ import annotations

import json
import sys
from typing import Any, NoReturn

from rich.console import Console

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


class CliError(Exception):
    """A problem with what the user asked for: printed as one line, exit status ``code``."""

    def __init__(self, message: str, code: int = 2) -> None:
        super().__init__(message)
        self.code = code


def fail(message: str, code: int = 2) -> NoReturn:
    raise CliError(message, code)


def emit_json(obj: Any, path: str | None = None) -> None:
    """Print ``obj`` as JSON on stdout, or write it atomically to ``path`` (``-`` = stdout)."""
    if path is None or path == "-":
        sys.stdout.write(json.dumps(obj, indent=2, allow_nan=False) + "\n")
        sys.stdout.flush()
        return
    from anyware._io import atomic_write_json

    try:
        atomic_write_json(path, obj)
    except OSError as e:
        fail(f"cannot write JSON to {path}: {e.strerror or e}")
