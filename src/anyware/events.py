"""The one event record that trace, monitor, logs and profile write and read.

One JSON object per line, one file per rank (``rank<N>.jsonl``)::

    {"t": 1764380000.25, "rank": 0, "step": 12, "kind": "span", "name": "forward",
     "value": null, "dur": 0.0131, "attrs": {}}

``kind`` is ``span`` (something that took ``dur`` seconds, starting at ``t``), ``scalar`` (a
measured ``value``), ``instant`` (something that happened at ``t``) or ``alert`` (a health check
fired; ``attrs.check``, ``attrs.severity`` and where known ``attrs.culprit_rank``). Because every
component speaks this, a monitor run, its logs and a profile share one timeline.
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import IO, Any


class Kind(StrEnum):
    SPAN = "span"
    SCALAR = "scalar"
    INSTANT = "instant"
    ALERT = "alert"


class EventError(ValueError):
    """A record that does not follow the schema; the message names the field."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """One record of the shared event stream."""

    t: float
    """Unix time in seconds when the thing started (span) or happened."""
    rank: int
    """Global rank of the process that observed it (0 for single-process runs)."""
    kind: Kind
    """span, scalar, instant or alert."""
    name: str
    """What it is: ``forward``, ``loss``, ``allreduce``, or an alert's check code (``HM003``)."""
    step: int | None = None
    """Training step, when the observer knows it."""
    value: float | None = None
    """The measured value of a scalar (and optionally of others)."""
    dur: float | None = None
    """Duration in seconds of a span."""
    attrs: dict[str, Any] = field(default_factory=dict)
    """Everything else, JSON-serialisable. Alerts carry ``check``, ``severity``, ``culprit_rank``."""

    def __post_init__(self) -> None:
        if not isinstance(self.t, int | float) or not math.isfinite(self.t):
            raise EventError(f"event field 't' must be a finite number of seconds, got {self.t!r}")
        if not isinstance(self.rank, int) or self.rank < 0:
            raise EventError(f"event field 'rank' must be an int >= 0, got {self.rank!r}")
        if self.step is not None and not isinstance(self.step, int):
            raise EventError(f"event field 'step' must be an int or null, got {self.step!r}")
        if not isinstance(self.name, str) or not self.name:
            raise EventError(f"event field 'name' must be a non-empty string, got {self.name!r}")
        if self.dur is not None and (not isinstance(self.dur, int | float) or self.dur < 0):
            raise EventError(f"event field 'dur' must be seconds >= 0 or null, got {self.dur!r}")
        if self.kind is Kind.SPAN and self.dur is None:
            raise EventError(f"span event {self.name!r} needs 'dur'")
        if self.kind is Kind.ALERT and "check" not in self.attrs:
            raise EventError(f"alert event {self.name!r} needs attrs.check")

    def to_dict(self) -> dict[str, Any]:
        return {
            "t": self.t,
            "rank": self.rank,
            "step": self.step,
            "kind": str(self.kind),
            "name": self.name,
            "value": _json_float(self.value),
            "dur": self.dur,
            "attrs": self.attrs,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), separators=(",", ":"), allow_nan=False)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> Event:
        if not isinstance(d, dict):
            raise EventError(f"an event must be a JSON object, got {type(d).__name__}")
        missing = {"t", "rank", "kind", "name"} - set(d)
        if missing:
            raise EventError(f"event is missing field(s) {sorted(missing)}")
        try:
            kind = Kind(d["kind"])
        except ValueError:
            raise EventError(
                f"event field 'kind' must be one of {[k.value for k in Kind]}, got {d['kind']!r}"
            ) from None
        attrs = d.get("attrs") or {}
        if not isinstance(attrs, dict):
            raise EventError("event field 'attrs' must be an object")
        value = d.get("value")
        if value is not None and not isinstance(value, int | float):
            raise EventError(f"event field 'value' must be a number or null, got {value!r}")
        return cls(
            t=d["t"],
            rank=d["rank"],
            kind=kind,
            name=d["name"],
            step=d.get("step"),
            value=None if value is None else float(value),
            dur=d.get("dur"),
            attrs=attrs,
        )


def _json_float(v: float | None) -> float | str | None:
    # JSON has no NaN/Inf; a non-finite loss is exactly what the monitor must report, so it is
    # written as a string the reader turns back into a float.
    if v is None or math.isfinite(v):
        return v
    return "nan" if math.isnan(v) else ("inf" if v > 0 else "-inf")


def _parse_line(line: str) -> Event:
    d = json.loads(line)
    if isinstance(d, dict) and isinstance(d.get("value"), str):
        d["value"] = float(d["value"])  # "nan" / "inf" / "-inf"
    return Event.from_dict(d)


def rank_file(directory: str | os.PathLike[str], rank: int) -> Path:
    """Where rank ``rank`` writes its events inside ``directory``."""
    return Path(directory) / f"rank{rank}.jsonl"


class EventWriter:
    """Appends events to one JSONL file; each ``write_many`` lands as whole lines."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115 (closed in close())

    def write(self, event: Event) -> None:
        self.write_many((event,))

    def write_many(self, events: Iterable[Event]) -> None:
        # One write call per batch: a reader never sees half a line from a crashed writer
        # except at the very end, which read_events tolerates.
        self._f.write("".join(e.to_json() + "\n" for e in events))
        self._f.flush()

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> EventWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_events(path: str | os.PathLike[str], *, strict: bool = False) -> Iterator[Event]:
    """Events of one JSONL file in file order.

    A malformed line raises :class:`EventError` naming the file and line when ``strict``; otherwise
    it is skipped (a writer killed mid-line leaves a torn last line, which is expected).
    """
    p = Path(path)
    with open(p, encoding="utf-8", errors="replace") as f:
        for lineno, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                yield _parse_line(line)
            except (json.JSONDecodeError, EventError, TypeError, ValueError) as e:
                if strict:
                    raise EventError(f"{p}:{lineno}: not an anyware event ({e})") from None


def read_dir(directory: str | os.PathLike[str]) -> list[Event]:
    """Every ``rank*.jsonl`` in ``directory`` merged and sorted by time."""
    d = Path(directory)
    if not d.is_dir():
        raise EventError(f"{d} is not a directory of rank<N>.jsonl event files")
    events = [e for p in sorted(d.glob("rank*.jsonl")) for e in read_events(p)]
    events.sort(key=lambda e: (e.t, e.rank))
    return events
