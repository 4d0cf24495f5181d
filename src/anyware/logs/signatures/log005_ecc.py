"""LOG005 ECC: the device memory reported an (uncorrectable) ECC error.

Detects: ``CUDA error: uncorrectable ECC error encountered``, ``double bit ECC error``,
``ECC error`` / ``HBM ECC`` lines from NPU/MLU drivers, ``Row remapping failure``.
A correctable (single-bit) ECC notice is a warning only.
Why it matters: an uncorrectable error kills the process on that device and will recur.
Fix: drain the node, reset the device, check ``nvidia-smi -q -d ECC,ROW_REMAPPER`` (or the vendor's).
"""

from __future__ import annotations

from anyware.logs.model import Category, Rule, Severity, Signature

SIGNATURE = Signature(
    code="LOG005",
    name="ECC error",
    category=Category.ECC,
    needles=("ECC", "Row remapping failure"),
    rules=(
        Rule(
            pattern=r"(?i)\b(?:single[- ]bit|correctable|corrected) ECC",
            severity=Severity.WARNING,
            specificity=3,
        ),
        Rule(
            pattern=r"(?i)uncorrectable ECC|double[- ]bit ECC|\bDBE\b|Row remapping failure",
            specificity=3,
        ),
        Rule(pattern=r"\bECC (?:error|fault)", specificity=3),
    ),
    doc=__doc__ or "",
)
