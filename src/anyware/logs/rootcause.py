"""Root cause vs victims: which rank started it, and what it was.

When one rank fails, the others do not stop at once: they block in the next collective until the
CCL watchdog fires (LOG001, minutes later), the launcher tears them down (SIGTERM), and torchrun's
summary names whichever exit it saw first. So the rule is: the earliest *origin* finding (an
error that can start a failure) in time wins; among findings within ``TIE_SECONDS`` of it the
most specific one (an OOM beats the bare traceback that reports it). With no origin at all, the
timeouts are the evidence: the rank that did not time out, or whose last step is behind the
others', is *hung*; failing that, a rank waiting on a different collective (SeqNum/op) than the
majority, and last the first rank to time out.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from anyware.logs.model import Category, Finding, Role, Severity

#: Findings this close to the earliest origin compete on specificity (covers a rank printing its
#: error and the traceback around it, and clock skew between hosts of ~1 s).
TIE_SECONDS = 2.0
_CONFIDENCE = {3: 0.9, 2: 0.8, 1: 0.7, 0: 0.5}


@dataclass(frozen=True, slots=True, kw_only=True)
class RootCause:
    """The originating failure and why it was chosen."""

    rank: int | None
    host: str | None
    category: Category
    time: float | None
    file: str | None
    line: int | None
    message: str
    confidence: float
    code: str | None
    reason: str
    evidence: tuple[Finding, ...] = ()
    victims: tuple[int, ...] = field(default=())

    def __post_init__(self) -> None:
        if not 0.0 <= self.confidence <= 1.0:
            raise ValueError(f"confidence must be in [0, 1], got {self.confidence}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "rank": self.rank,
            "host": self.host,
            "category": str(self.category),
            "time": self.time,
            "file": self.file,
            "line": self.line,
            "message": self.message,
            "confidence": round(self.confidence, 3),
            "code": self.code,
            "reason": self.reason,
            "evidence": [f.to_dict() for f in self.evidence],
            "victims": list(self.victims),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class RankState:
    """What the analysis knows about one rank's progress."""

    rank: int
    host: str | None
    last_step: int | None
    last_step_time: float | None
    last_time: float | None
    file: str | None


def _order(f: Finding) -> tuple[bool, float, str, int]:
    return (f.time is None, f.time or 0.0, f.file, f.line)


def _with_rank(f: Finding, other: Finding) -> Finding:
    return Finding(
        code=f.code,
        category=f.category,
        role=f.role,
        severity=f.severity,
        specificity=f.specificity,
        rank=other.rank,
        host=f.host or other.host,
        time=f.time,
        file=f.file,
        line=f.line,
        message=f.message,
        attrs={**f.attrs, "rank_from": f"{other.file}:{other.line}"},
    )


def _from_finding(
    f: Finding,
    conf: float,
    reason: str,
    evidence: Iterable[Finding],
    victims: Iterable[int],
    category: Category | None = None,
) -> RootCause:
    return RootCause(
        rank=f.rank,
        host=f.host,
        category=category or f.category,
        time=f.time,
        file=f.file,
        line=f.line,
        message=f.message,
        confidence=max(0.0, min(1.0, conf)),
        code=f.code,
        reason=reason,
        evidence=tuple(evidence),
        victims=tuple(sorted(set(victims))),
    )


def find_root_cause(findings: list[Finding], ranks: Mapping[int, RankState]) -> RootCause:
    victims = [f for f in findings if f.role is Role.VICTIM]
    victim_ranks = {f.rank for f in victims if f.rank is not None}
    origins = sorted(
        (f for f in findings if f.role is Role.ORIGIN and f.severity is Severity.ERROR), key=_order
    )
    if origins:
        first = origins[0]
        if first.time is not None:
            near = [f for f in origins if f.time is not None and f.time - first.time <= TIE_SECONDS]
        else:
            # No timestamps anywhere (plain torchrun output): order is unknowable across files,
            # so the most specific error wins (an OOM over a victim's connection reset).
            near = origins
        best = max(near, key=lambda f: (f.specificity, -(f.time or 0.0)))
        if best.rank is None:  # a kernel log line (no rank): borrow the rank of a later report
            named = [
                f
                for f in origins
                if f.rank is not None
                and f.category is best.category
                and (best.time is None or f.time is None or f.time - best.time <= 120.0)
            ]
            if named:
                best = _with_rank(best, named[0])
        same_rank = [f for f in origins if f.rank == best.rank and f is not best]
        rivals = [f for f in near if f.rank != best.rank and f.specificity >= best.specificity]
        conf = _CONFIDENCE[best.specificity] + (0.05 if victim_ranks - {best.rank} else 0.0)
        conf -= 0.2 if rivals else 0.0
        others = victim_ranks - {best.rank}
        return _from_finding(
            best,
            conf,
            f"earliest originating failure ({best.code}); {len(others)} other rank(s) failed "
            "after it as victims"
            if others
            else f"earliest originating failure ({best.code})",
            [best, *same_rank[:5], *[v for v in victims if v.rank != best.rank][:3]],
            others,
        )
    timeouts = [f for f in victims if f.category is Category.COLLECTIVE_TIMEOUT]
    if timeouts:
        return _blame_timeouts(timeouts, victims, ranks)
    reports = sorted((f for f in findings if f.role is Role.REPORT), key=_order)
    if reports:
        r = reports[0]
        return _from_finding(
            r,
            0.3,
            "only the launcher reported a failure; its first report",
            reports[:5],
            (),
            Category.LAUNCHER,
        )
    if victims:
        v = sorted(victims, key=_order)[0]
        return _from_finding(v, 0.2, "only consequences of a failure were logged", victims[:5], ())
    return RootCause(
        rank=None,
        host=None,
        category=Category.UNKNOWN,
        time=None,
        file=None,
        line=None,
        message="no failure found in the logs",
        confidence=0.0,
        code=None,
        reason="no signature matched",
    )


def _blame_timeouts(
    timeouts: list[Finding], victims: list[Finding], ranks: Mapping[int, RankState]
) -> RootCause:
    timed_out = {f.rank for f in timeouts if f.rank is not None}
    known = set(ranks)
    steps = {r: s.last_step for r, s in ranks.items() if s.last_step is not None}
    top = max(steps.values()) if steps else None
    lagging = {r for r, s in steps.items() if top is not None and s < top}
    silent = known - timed_out
    suspects = (lagging & silent) or lagging or silent
    if suspects:

        def lag_key(r: int) -> tuple[int, float]:
            s = ranks[r]
            return (
                s.last_step if s.last_step is not None else -1,
                s.last_step_time or s.last_time or 0.0,
            )

        r = min(suspects, key=lag_key)
        st = ranks[r]
        agree = bool(lagging & silent)
        what = (
            f"last progress at step {st.last_step}"
            if st.last_step is not None
            else "no progress lines"
        )
        return RootCause(
            rank=r,
            host=st.host,
            category=Category.HANG,
            time=st.last_step_time or st.last_time,
            file=st.file,
            line=None,
            message=f"rank {r} stopped making progress ({what}) while {len(timed_out)} rank(s) "
            "timed out waiting in a collective",
            confidence=0.75 if agree else 0.6,
            code="LOG013",
            reason="hang: the other ranks' collective timeouts point at this rank "
            + (
                "(behind on steps and not waiting)"
                if agree
                else "(behind on steps)"
                if r in lagging
                else "(not waiting in the collective)"
            ),
            evidence=tuple(sorted(timeouts, key=_order)[:5]),
            victims=tuple(sorted(timed_out - {r})),
        )
    keys = Counter((f.attrs.get("seq"), f.attrs.get("op")) for f in timeouts)
    if len(keys) > 1:
        common = keys.most_common(1)[0][0]
        odd = sorted(
            (f for f in timeouts if (f.attrs.get("seq"), f.attrs.get("op")) != common), key=_order
        )
        f = odd[0]
        return _from_finding(
            f,
            0.5,
            "this rank waited on a different collective "
            f"(SeqNum/op {f.attrs.get('seq')}/{f.attrs.get('op')}) than the "
            f"majority {common[0]}/{common[1]}",
            odd[:5],
            timed_out - {f.rank},
            Category.COLLECTIVE_TIMEOUT,
        )
    f = sorted(timeouts, key=_order)[0]
    return _from_finding(
        f,
        0.3,
        "every rank timed out in the same collective; the first to time "
        "out is named (look at the fabric or the ranks' hosts)",
        sorted(timeouts, key=_order)[:5],
        timed_out - {f.rank},
        Category.COLLECTIVE_TIMEOUT,
    )
