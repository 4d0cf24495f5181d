"""LOG007 non-finite loss or gradients: NaN/Inf appeared in training.

Detects Megatron (``Rank 5: found NaN in local grad norm``, ``lm loss: nan``), DeepSpeed
(``[deepspeed] OVERFLOW! Rank 0 Skipping step``, ``Current loss scale already at minimum``),
apex/fairseq (``Gradient overflow.  Skipping step``) and plain ``loss nan`` / ``loss: inf`` lines.
An fp16 overflow that skips one step is routine: it is a warning, not a root cause, unless
the loss scale hits its minimum.
Why it matters: a NaN on one rank is all-reduced into every rank's weights within a step.
Fix: find the first rank/step (the analyser does), check that batch, lower the LR or use bf16.
"""

from __future__ import annotations

from anyware.logs.model import Category, Rule, Severity, Signature

SIGNATURE = Signature(
    code="LOG007",
    name="non-finite loss or gradient",
    category=Category.NONFINITE,
    needles=("NaN", "nan", "inf", "Inf", "OVERFLOW", "overflow", "loss scale"),
    rules=(
        Rule(pattern=r"[Rr]ank (?P<rank>\d+): found (?P<what>NaN|Inf) in local", specificity=3),
        Rule(
            pattern=r"(?i)loss scale (?:already )?at minimum|minimum loss scale reached",
            specificity=3,
        ),
        Rule(
            pattern=r"OVERFLOW! Rank (?P<rank>\d+) Skipping step|Gradient overflow\.\s+Skipping"
            r" step",
            severity=Severity.WARNING,
            specificity=3,
        ),
        Rule(
            pattern=r"(?i)\b(?:lm )?loss(?: is|:|=| )\s*(?P<value>[-+]?(?:nan|inf))\b",
            specificity=3,
        ),
        Rule(
            pattern=r"(?i)\bgrad(?:ient)?[ _]norm(?: is|:|=| )\s*(?P<value>[-+]?(?:nan|inf))\b",
            specificity=3,
        ),
    ),
    doc=__doc__ or "",
)
