"""``import anyware.migrate.auto``: the shim for this process, from now until it exits.

Installs as soon as torch is imported (now, if it already is); at exit a short summary of the
redirects goes to stderr, and the JSON report to ``ANYWARE_MIGRATE_REPORT`` when set.
"""

from __future__ import annotations

from anyware.migrate import _bootstrap

_bootstrap.boot()
