"""LOG013 hang: a rank stopped making progress without saying why.

There is no line to match: the evidence is the *absence* of progress on one rank while the
others report collective timeouts. The analyser (:mod:`anyware.logs.rootcause`) names the rank
whose last step is behind the others (or that did not time out while they did), at the time of
its last progress line. PyTorch's heartbeat monitor line (``watchdog got stuck``) is matched here.
Why it matters: dataloader deadlocks, a stuck storage read or a rank spinning in Python look
exactly like a network problem from every other rank. Fix: ``py-spy dump`` the named rank.
"""

from __future__ import annotations

from anyware.logs.model import Category, Role, Rule, Signature

SIGNATURE = Signature(
    code="LOG013",
    name="hang",
    category=Category.HANG,
    needles=("watchdog got stuck", "heartbeat monitor"),
    rules=(Rule(pattern=r"watchdog got stuck|heartbeat monitor", role=Role.VICTIM),),
    doc=__doc__ or "",
)
