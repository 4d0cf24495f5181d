"""LOG004 Xid: the GPU driver logged an Xid event (kernel log, or echoed into a rank's log).

Detects: ``NVRM: Xid (PCI:0000:3b:00): 79, pid=1234, GPU has fallen off the bus.`` and the
other Xid codes (13 graphics exception, 31 MMU fault, 43 reset channel, 48 DBE, 63/64 row
remapping, 74 NVLink, 79 off the bus, 94/95 contained/uncontained ECC).
Why it matters: 48, 74, 79, 94, 95 mean broken hardware; 13/31/43 are usually a program bug.
Fix: drain the node for 48/74/79/95 and run the vendor diagnostics (``dcgmi diag -r 3``).
"""

from __future__ import annotations

from anyware.logs.model import Category, Rule, Signature

SIGNATURE = Signature(
    code="LOG004",
    name="Xid error",
    category=Category.XID,
    needles=("Xid",),
    rules=(
        Rule(pattern=r"Xid \((?P<pci>[^)]*)\): (?P<xid>\d+)", specificity=3),
        Rule(pattern=r"\bXid\b.*?(?P<xid>\d+)", specificity=3),
    ),
    doc=__doc__ or "",
)
