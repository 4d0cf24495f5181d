"""HM004 hang: no training progress for max(hang_factor × p99 step time, hang_min_s).

Why: without a monitor a hang waits out the collective timeout (10 minutes by default in
PyTorch) and then every rank reports a timeout, hiding which one stopped first.
Rule: a live rank that has completed at least one step and completed none for the timeout is
stalled. The culprit is the rank whose last collective sequence number is lowest: the others
entered the next collective and wait for it (PyTorch Flight Recorder's rule); ties go to the
one rank not inside a collective, then to the one rank with the fewest steps. On firing, every
live rank is asked for its Python stacks (the shipper thread answers while the main thread is
stuck), and they are attached to the alert and shown in the hang panel.
Example: rank 1 blocks in a file read at step 15; rank 0 waits in all_reduce #16. After 10 s:
hang, culprit rank 1 (last seq 15), rank 1's stack ends in the read.
Fix: read the culprit's stack; typical causes are a deadlocked data loader, a rank taking a
different code path (a collective the others do not call), or a dead device.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from anyware.monitor.alerts import Finding
from anyware.monitor.checks.base import Check, p99

if TYPE_CHECKING:
    from anyware.monitor.config import CheckConfig
    from anyware.monitor.state import RankInfo, RunState


class Hang(Check):
    code = "HM004"
    name = "hang"
    severity = "critical"

    def __init__(self, cfg: CheckConfig) -> None:
        super().__init__(cfg)
        self.since: float | None = None
        self.requested = False

    def timeout(self, state: RunState) -> float:
        durs = [row["dur"] for row in state.rows[-400:]]
        return max(self.cfg.hang_factor * p99(durs), self.cfg.hang_min_s)

    def evaluate(self, state: RunState, now: float) -> list[Finding]:
        timeout = self.timeout(state)
        live = [state.ranks[r] for r in state.live_ranks()]
        stalled = [i for i in live if i.step > 0 and now - i.last_progress > timeout]
        state.tables["hang"] = {"timeout_s": timeout, "stalled": [i.rank for i in stalled]}
        if not stalled:
            self.since, self.requested = None, False
            return []
        if self.since is None:
            self.since = min(i.last_progress for i in stalled)
        if not self.requested:
            state.stack_requests.update(i.rank for i in live)
            self.requested = True
        culprit = _culprit(live)
        waited = now - min(i.last_progress for i in stalled)
        stacks = {str(r): s for r, s in state.stacks.items() if s["t"] >= self.since}
        seqs = {i.rank: i.last_seq for i in live}
        state.tables["hang"].update({"culprit_rank": culprit, "last_seq": seqs, "stacks": stacks})
        step = max((i.step for i in stalled), default=None)
        who = (
            f"; rank {culprit} is behind (last collective #{seqs[culprit]})"
            if culprit is not None
            else ""
        )
        return [
            Finding(
                key="job",
                firing=True,
                culprit_rank=culprit,
                step=step,
                message=f"no progress for {waited:.1f} s (timeout {timeout:.1f} s){who}",
                attrs={
                    "timeout_s": round(timeout, 3),
                    "last_seq": {str(k): v for k, v in seqs.items()},
                    "stacks_ranks": sorted(int(r) for r in stacks),
                    "stacks": stacks,
                },
            )
        ]


def _culprit(infos: list[RankInfo]) -> int | None:
    if not infos:
        return None
    low = min(i.last_seq for i in infos)
    behind = [i for i in infos if i.last_seq == low]
    if len(behind) == 1:
        return behind[0].rank
    outside = [i for i in behind if i.inflight is None]
    if len(outside) == 1:
        return outside[0].rank
    fewest = min(i.step for i in behind)
    last = [i for i in behind if i.step == fewest]
    return last[0].rank if len(last) == 1 else None
