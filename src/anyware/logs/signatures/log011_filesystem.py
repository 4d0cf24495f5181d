"""LOG011 file system: a write or read failed on disk or a network file system.

Detects ``No space left on device`` (ENOSPC, errno 28), ``Input/output error`` (EIO, errno 5),
``Disk quota exceeded``, ``Read-only file system``, ``Stale file handle``.
Why it matters: a checkpoint save that fails on rank 0 kills the job at the save step.
Fix: free space / raise the quota, check the mount; write checkpoints to a fresh directory.
"""

from __future__ import annotations

from anyware.logs.model import Category, Rule, Signature

SIGNATURE = Signature(
    code="LOG011",
    name="file system error",
    category=Category.FILESYSTEM,
    needles=(
        "No space left",
        "Input/output error",
        "quota exceeded",
        "Read-only file system",
        "Stale file handle",
        "Errno 28",
        "Errno 5]",
    ),
    rules=(
        Rule(pattern=r"No space left on device|Errno 28|Disk quota exceeded", specificity=3),
        Rule(
            pattern=r"Input/output error|Errno 5\]|Read-only file system|Stale file handle",
            specificity=3,
        ),
    ),
    doc=__doc__ or "",
)
