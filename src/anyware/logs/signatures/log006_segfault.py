"""LOG006 segfault / illegal memory access: the process or a kernel touched memory it may not.

Detects: ``Segmentation fault (core dumped)``, ``Fatal Python error: Segmentation fault``,
``SIGSEGV``, ``CUDA error: an illegal memory access was encountered``, ``misaligned address``,
``device-side assert triggered``.
Why it matters: the faulting rank dies at once; with CUDA's asynchronous errors the reported
line is after the real culprit kernel. Fix: rerun with ``CUDA_LAUNCH_BLOCKING=1`` (or
``compute-sanitizer``) on that rank; check index bounds for a device-side assert.
"""

from __future__ import annotations

from anyware.logs.model import Category, Rule, Signature

SIGNATURE = Signature(
    code="LOG006",
    name="segfault or illegal memory access",
    category=Category.SEGFAULT,
    needles=(
        "Segmentation fault",
        "SIGSEGV",
        "illegal memory access",
        "misaligned address",
        "device-side assert",
        "segfault",
    ),
    rules=(
        Rule(pattern=r"illegal memory access|misaligned address|device-side assert", specificity=3),
        Rule(pattern=r"Segmentation fault|SIGSEGV|segfault", specificity=3),
    ),
    doc=__doc__ or "",
)
