"""HM008 rank_exit: a rank crashed (an exception escaped) or went silent without a goodbye.

Why: when one rank dies the others block in their next collective or crash with a connection
error, and the logs fill with secondary failures; the first rank to go is the one to look at.
Rule: a rank is gone when it said goodbye after an unhandled exception, or when nothing (not
even the shipper thread's heartbeat) came from it for ``heartbeat_timeout_s`` with no goodbye
(killed, ``os._exit``, segfault, OOM killer). Once the earliest departure is older than the
timeout (so ranks dying *because of* it are not mistaken for it), the alert fires naming the
rank last heard from earliest. A clean exit is never an alert.
Example: rank 1 is killed by the OOM killer at step 15; rank 0 raises "Connection closed by
peer" 50 ms later. Culprit: rank 1.
Fix: read the culprit's own log (``anyware logs analyze``) and the host's kernel log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anyware.monitor.alerts import Finding
from anyware.monitor.checks.base import Check

if TYPE_CHECKING:
    from anyware.monitor.state import RunState


class RankExit(Check):
    code = "HM008"
    name = "rank_exit"
    severity = "critical"

    def evaluate(self, state: RunState, now: float) -> list[Finding]:
        timeout = self.cfg.heartbeat_timeout_s
        gone = []
        for info in state.ranks.values():
            crashed = info.goodbye is not None and not info.goodbye.get("clean")
            silent = info.goodbye is None and now - info.last_seen > timeout
            if crashed or silent:
                gone.append(info)
        if not gone:
            return []
        first = min(gone, key=lambda i: i.last_seen)
        firing = now - first.last_seen >= timeout
        ties = [i for i in gone if i.last_seen == first.last_seen]
        culprit = first.rank if len(ties) == 1 else None
        how = (
            f"crashed ({first.goodbye.get('reason') or 'exception'})"
            if first.goodbye is not None
            else f"went silent {now - first.last_seen:.1f} s ago"
        )
        return [
            Finding(
                key="job",
                firing=firing,
                culprit_rank=culprit,
                step=first.step,
                message=f"rank {first.rank} {how} at step {first.step}; gone: {sorted(i.rank for i in gone)}",
                attrs={"gone": sorted(i.rank for i in gone)},
            )
        ]
