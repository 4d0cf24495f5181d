"""LOG009 launcher: torchrun / the elastic agent reported a failure.

Detects the agent's ``failed (exitcode: 1) local_rank: 0 (pid: 4242) of binary``, rendezvous and
store errors (``RendezvousTimeoutError``, ``RendezvousConnectionError``, ``DistStoreError``) and
each entry of the ``ChildFailedError`` summary (``rank : 5 (local_rank: 1)``, ``exitcode : -9``).
Summary entries are *reports*: torchrun's "Root Cause (first observed failure)" is the first
rank the agent saw exit, usually a victim. A negative exit code is a signal: -9 becomes a
``killed`` origin and -11 a ``segfault`` origin for that rank.
Fix: for rendezvous errors check the master address/port and that every node started.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

from anyware.logs.model import Category, Role, Rule, Signature

_FIELD = re.compile(r"^\s*(?:\[\w+\]:)?\s*(?P<k>time|host|rank)\s*:\s*(?P<v>\S+)")
_SIGNALS = {9: Category.KILLED, 15: Category.KILLED, 11: Category.SEGFAULT, 7: Category.SEGFAULT}


def _extra(line: str, before: Sequence[str], after: Sequence[str]) -> dict[str, Any]:
    m = re.search(r"exitcode\s*:\s*(?P<code>-?\d+)", line)
    if m is None or "local_rank:" in line:
        return {}
    out: dict[str, Any] = {}
    for text in before[-5:]:
        f = _FIELD.match(text)
        if f is not None:
            key = {"time": "time_text", "host": "summary_host"}.get(f["k"], f["k"])
            out[key] = f["v"]
    if any("Root Cause" in b for b in before[-8:]):
        out["torchrun_root_cause"] = True
    code = int(m["code"])
    if code < 0 and -code in _SIGNALS:
        out.update(_category=_SIGNALS[-code], _role=Role.ORIGIN, _specificity=1, signal=-code)
    return out


SIGNATURE = Signature(
    code="LOG009",
    name="launcher failure",
    category=Category.LAUNCHER,
    needles=("exitcode", "Rendezvous", "DistStoreError", "ChildFailedError", "elastic.agent"),
    rules=(
        Rule(pattern=r"Rendezvous\w*Error|DistStoreError|RendezvousClosed", specificity=2),
        Rule(
            pattern=r"failed \(exitcode: (?P<exitcode>-?\d+)\) local_rank: (?P<local_rank>\d+)",
            role=Role.REPORT,
            specificity=0,
        ),
        Rule(pattern=r"exitcode\s*:\s*(?P<exitcode>-?\d+)", role=Role.REPORT, specificity=0),
        Rule(pattern=r"ChildFailedError", role=Role.REPORT, specificity=0),
    ),
    doc=__doc__ or "",
    context_before=8,
    extra=_extra,
)
