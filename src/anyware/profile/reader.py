"""Stream the events out of a Chrome-trace / Kineto JSON file without loading it.

A torch.profiler trace is one JSON object whose ``traceEvents`` array holds millions of small
objects; ``json.load`` on a 1 GB file needs several GB of Python objects before the first
event can be looked at. This reader keeps a window of about ``chunk_size`` characters and
hands out one event at a time, decoding each with the C scanner behind
``json.JSONDecoder.raw_decode``, so memory stays at the window plus the current event whatever
the file's size. The other top-level keys (``schemaVersion``, ``distributedInfo``,
``baseTimeNanoseconds``, ...) are small; they are collected into :attr:`TraceReader.metadata`
as they pass (some come after the events, so the metadata is complete only once the events
have been read).

A truncated file is not an error: the events before the cut are handed out and
:attr:`TraceReader.problem` says where it stopped. A file that is not a trace at all raises
:class:`TraceFormatError` before any event is produced.
"""

from __future__ import annotations

import codecs
import gzip
import json
import re
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import IO, Any

#: 1 Mi characters per read: big enough that refills are rare (one per ~3,000 events), small
#: enough to be noise next to the analysis' own arrays.
CHUNK = 1 << 20

#: The largest single value, in characters, before the JSON is declared malformed (64 Mi).
MAX_VALUE = 64 << 20

#: Below this many characters in the window, events are decoded one at a time.
BULK_MIN = 16 << 10

#: Events decoded one at a time after a window in which no bulk cut parsed.
SINGLE_AFTER_MISS = 512

_WS = re.compile(r"[ \t\n\r]*")
_DECODER = json.JSONDecoder()


class TraceFormatError(ValueError):
    """The file is not Chrome-trace JSON (no ``traceEvents`` array, not JSON at all, ...)."""


def open_text(path: Path) -> IO[bytes]:
    """The raw byte stream of a trace, transparently gunzipped for ``*.gz``."""
    if path.suffix == ".gz":
        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


class TraceReader:
    """One pass over a trace file's events: ``for ev in TraceReader(path): ...``."""

    def __init__(self, path: str | Path, *, chunk_size: int = CHUNK) -> None:
        self.path = Path(path)
        self.chunk_size = chunk_size
        self.metadata: dict[str, Any] = {}
        """Top-level keys other than ``traceEvents``."""
        self.problem: str | None = None
        """Why reading stopped early (truncation, a malformed event), or ``None``."""
        self.events_read = 0
        self._buf = ""
        self._pos = 0
        self._eof = False
        self._raw: IO[bytes] | None = None
        self._single = 0
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    # --- buffer -----------------------------------------------------------------------------
    def _fill(self) -> bool:
        """Read one more chunk; False at end of file."""
        if self._eof:
            return False
        assert self._raw is not None
        data = self._raw.read(self.chunk_size)
        if not data:
            self._eof = True
            tail = self._utf8.decode(b"", final=True)
            self._buf = self._buf[self._pos :] + tail
            self._pos = 0
            return bool(tail)
        self._buf = self._buf[self._pos :] + self._utf8.decode(data)
        self._pos = 0
        return True

    def _peek(self) -> str:
        """The next non-blank character ('' at end of file), without consuming it."""
        while True:
            m = _WS.match(self._buf, self._pos)
            assert m is not None
            self._pos = m.end()
            if self._pos < len(self._buf):
                return self._buf[self._pos]
            if not self._fill():
                return ""

    def _value(self) -> Any:
        """Decode the JSON value at the cursor, reading more when it runs past the window."""
        self._peek()
        while True:
            try:
                value, end = _DECODER.raw_decode(self._buf, self._pos)
            except json.JSONDecodeError:
                # A malformed event in mid-file would otherwise pull the rest of the file into
                # the window looking for its end: give up once one value outgrows MAX_VALUE.
                if len(self._buf) - self._pos < MAX_VALUE and self._fill():
                    continue
                raise
            # A number cut by the window edge decodes "successfully" ("12" of "123"): only
            # trust a value that ends before the window does.
            if end >= len(self._buf) and not self._eof:
                self._fill()
                continue
            self._pos = end
            return value

    def _expect(self, chars: str, where: str) -> str:
        c = self._peek()
        if c == "" or c not in chars:
            got = "end of file" if c == "" else repr(c)
            expected = " or ".join(map(repr, chars))
            raise json.JSONDecodeError(
                f"expected {expected} {where}, got {got}", self._buf, self._pos
            )
        self._pos += 1
        return c

    # --- events -----------------------------------------------------------------------------
    def __iter__(self) -> Iterator[dict[str, Any]]:
        return self.events()

    def events(self) -> Generator[dict[str, Any], None, None]:
        """The events, once; ``close()`` the generator to stop early and close the file."""
        with open_text(self.path) as raw:
            self._raw = raw
            try:
                first = self._peek()
            except OSError as e:
                raise TraceFormatError(f"cannot read {self.path}: {e}") from e
            if first == "[":  # the bare-array form of the Chrome trace format
                self._pos += 1
                yield from self._array()
                return
            if first != "{":
                raise TraceFormatError(
                    f"{self.path} is not a Chrome-trace JSON file (it starts with {first or 'nothing'!r})"
                )
            self._pos += 1
            seen_events = False
            try:
                while True:
                    c = self._peek()
                    if c == "}":
                        break
                    if c == ",":
                        self._pos += 1
                        continue
                    key = self._value()
                    if not isinstance(key, str):
                        raise json.JSONDecodeError(
                            "object key is not a string", self._buf, self._pos
                        )
                    self._expect(":", f"after key {key!r}")
                    if key == "traceEvents":
                        seen_events = True
                        self._expect("[", "to open traceEvents")
                        yield from self._array()
                        if self.problem is not None:
                            return
                    else:
                        self.metadata[key] = self._value()
            except json.JSONDecodeError as e:
                if not seen_events:
                    raise TraceFormatError(f"{self.path} is not valid JSON: {e.msg}") from e
                self.problem = (
                    f"malformed JSON after the event list ({e.msg}); metadata may be incomplete"
                )
                return
            if not seen_events:
                raise TraceFormatError(
                    f"{self.path} has no 'traceEvents' array: not a torch.profiler / Kineto trace"
                )

    def _array(self) -> Iterator[dict[str, Any]]:
        while True:
            batch: list[Any] | None = None
            try:
                c = self._peek()
                if c == "]":
                    self._pos += 1
                    return
                if c == ",":
                    self._pos += 1
                    continue
                if c == "":
                    self.problem = (
                        f"truncated after {self.events_read} events (file ends inside traceEvents)"
                    )
                    return
                if not self._eof and len(self._buf) - self._pos < self.chunk_size // 2:
                    self._fill()
                if self._single > 0:
                    self._single -= 1
                elif len(self._buf) - self._pos >= BULK_MIN:
                    batch = self._bulk()
                    if batch is None:
                        # Odd layout: go one event at a time for a while rather than paying
                        # failed whole-window parses before every event.
                        self._single = SINGLE_AFTER_MISS
                if batch is None:
                    batch = [self._value()]
            except json.JSONDecodeError as e:
                where = "file ends inside an event" if self._eof else e.msg
                self.problem = f"truncated or malformed after {self.events_read} events ({where})"
                return
            for ev in batch:
                if isinstance(ev, dict):
                    self.events_read += 1
                    yield ev

    def _bulk(self) -> list[Any] | None:
        """Decode every whole event in the window with one C-level ``json.loads``.

        The window is cut after the last ``}`` that is followed by ``,`` and ``{`` (blanks
        allowed): the usual boundary between two events. A cut that falls inside an event (an
        array of objects in ``args``, or those characters inside a string) leaves a bracket or
        a string open, so the parse fails and the previous candidate is tried; after a few
        misses the caller decodes one event at a time. Measured on Kineto traces this is ~2x
        faster than one ``raw_decode`` per event, which pays Python overhead per event.
        """
        buf, lo = self._buf, self._pos
        hi = len(buf)
        for _ in range(4):
            j = buf.rfind("{", lo + 1, hi)
            if j < 0:
                return None
            hi = j
            k = j - 1
            while k > lo and buf[k] in " \t\r\n":
                k -= 1
            if buf[k] != ",":
                continue
            k -= 1
            while k > lo and buf[k] in " \t\r\n":
                k -= 1
            if buf[k] != "}":
                continue
            try:
                events = json.loads("[" + buf[lo : k + 1] + "]")
            except json.JSONDecodeError:
                continue
            self._pos = k + 1
            return events  # type: ignore[no-any-return]
        return None
