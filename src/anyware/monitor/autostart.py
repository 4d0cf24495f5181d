"""``anyware run --monitor``: start the monitor in every process of the job, no code change.

Called by :func:`anyware._autostart.start_features` when ``ANYWARE_MONITOR_ADDR`` or
``ANYWARE_MONITOR_EVENTS`` is set. Idempotent and never raises into the user's program.
"""

from __future__ import annotations

import sys


def start() -> None:
    try:
        from anyware import monitor

        monitor.attach()
    except Exception as e:
        print(f"anyware: warning: monitor not started: {type(e).__name__}: {e}", file=sys.stderr)
