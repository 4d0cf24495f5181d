"""LOG001 collective timeout: a CCL watchdog gave up waiting for a collective.

Detects: PyTorch's watchdog line for NCCL, HCCL, CNCL (and XCCL/gloo) process groups, e.g.
``[Rank 3] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=1234, OpType=ALLREDUCE,
NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600047 milliseconds before timing out.``
Why it matters: in a job of N ranks one failure makes N-1 ranks print this; these are *victims*.
The rank that is *not* waiting (or waits on a lower SeqNum) is the one to look at.
Fix: find the originating failure (``anyware logs analyze`` does); raise the timeout only for
known long collectives (``init_process_group(timeout=...)``).
"""

from __future__ import annotations

from anyware.logs.model import Category, Role, Rule, Signature

SIGNATURE = Signature(
    code="LOG001",
    name="collective timeout",
    category=Category.COLLECTIVE_TIMEOUT,
    needles=(
        "Watchdog caught collective operation timeout",
        "collective operation timeout",
        "Timeout(ms)=",
    ),
    rules=(
        Rule(
            pattern=r"Work(?P<ccl>[A-Z]+)\(SeqNum=(?P<seq>\d+), OpType=(?P<op>\w+)"
            r".*?Timeout\(ms\)=(?P<timeout_ms>\d+)\)",
            role=Role.VICTIM,
        ),
        Rule(pattern=r"collective operation timeout", role=Role.VICTIM),
    ),
    doc=__doc__ or "",
)
