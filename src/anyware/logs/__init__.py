"""Log analyser: many GB of multi-rank training logs to a root cause in seconds.

``analyze(paths)`` finds the originating failure across ranks (and tells it from its victims);
``parse_file(...)`` mines templates in the Loghub format. Signatures live one per file in
:mod:`anyware.logs.signatures`. Importing this package is cheap: polars loads on first use.
"""

from __future__ import annotations

from anyware.logs.model import Category, Finding, Role, Severity, Signature

__all__ = ["Category", "Finding", "Role", "Severity", "Signature"]
