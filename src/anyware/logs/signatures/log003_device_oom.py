"""LOG003 device out of memory: an allocation on the accelerator failed.

Detects the old and new wordings: ``RuntimeError: CUDA out of memory. Tried to allocate 2.00 GiB``,
``torch.OutOfMemoryError: CUDA out of memory.`` (2.5+), ``torch.cuda.OutOfMemoryError``,
``CUDA error: out of memory``, ``NPU out of memory``, ``HIP out of memory``, ``MLU out of
memory``, ``XPU out of memory``. (The host's OOM killer is LOG012.)
Why it matters: one rank's OOM takes the job down; the others only time out.
Fix: smaller micro-batch, activation checkpointing, ``PYTORCH_CUDA_ALLOC_CONF=expandable_segments:True``
against fragmentation; check the rank's batch for an outlier sequence length.
"""

from __future__ import annotations

from anyware.logs.model import Category, Rule, Signature

SIGNATURE = Signature(
    code="LOG003",
    name="device out of memory",
    category=Category.DEVICE_OOM,
    needles=("out of memory", "OutOfMemoryError"),
    rules=(
        Rule(
            pattern=r"(?P<device>CUDA|NPU|HIP|MLU|XPU|MPS|ACL|GPU) out of memory"
            r"(?:\. Tried to allocate (?P<tried>[\d.]+ [KMGT]i?B))?",
            specificity=3,
        ),
        Rule(pattern=r"OutOfMemoryError", specificity=3),
        Rule(pattern=r"(?:CUDA|HIP|NPU|MLU) error: out of memory", specificity=3),
        Rule(pattern=r"(?i)device out of memory|out of memory on device", specificity=3),
    ),
    doc=__doc__ or "",
)
