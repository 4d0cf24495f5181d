"""LOG008 Python traceback: an uncaught exception ended (or will end) a rank.

Detects ``Traceback (most recent call last):`` and reads the following lines for the innermost
frame (``File "train.py", line 88, in step``) and the exception (``ValueError: bad shape``).
The analyser re-classifies the exception's message with the other signatures, so a traceback
that ends in ``torch.OutOfMemoryError`` counts as device_oom and one that ends in a watchdog
timeout counts as a victim.
Why it matters: the first traceback in time is often the bug. Fix: read the innermost frame.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from anyware.logs.model import Category, Rule, Signature

_FRAME = re.compile(r'File "(?P<file>[^"]+)", line (?P<line>\d+), in (?P<func>\S+)')
_EXC = re.compile(
    r"^(?P<type>[A-Za-z_][\w.]*(?:Error|Exception|Exit|Interrupt|Warning|Failure|"
    r"Timeout))(?::\s?(?P<msg>.*))?$"
)
_PREFIX = re.compile(r"^(?:\[(?:rank|default)\d+\]:|\d+: )\s?")


def _extra(line: str, before: Sequence[str], after: Sequence[str]) -> dict[str, Any]:
    frame: dict[str, Any] = {}
    for raw in after:
        text = _PREFIX.sub("", raw, count=1).rstrip()
        f = _FRAME.search(text)
        if f is not None:
            frame = {"frame": f"{f['file']}:{f['line']} in {f['func']}"}
            continue
        if text.startswith((" ", "\t")) or not text:
            continue
        e = _EXC.match(text)
        if e is not None:
            return {"exception": e["type"], "exception_message": (e["msg"] or "")[:400], **frame}
        if frame:  # the first unindented non-exception line after the frames ends the traceback
            break
    return frame


SIGNATURE = Signature(
    code="LOG008",
    name="Python exception",
    category=Category.PYTHON_EXCEPTION,
    needles=("Traceback (most recent call last)",),
    rules=(Rule(pattern=r"Traceback \(most recent call last\)", specificity=1),),
    doc=__doc__ or "",
    context_after=80,
    extra=_extra,
)
