"""``anyware demo``: the end-to-end showcase, one section per capability.

Each section is a function in its own module of this package that takes the
:class:`DemoContext` and prints what it shows. Components add their section to ``SECTIONS``.
"""

from __future__ import annotations

import importlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rich.console import Console

#: (title, "module:function") in the order the demo runs them.
SECTIONS: list[tuple[str, str]] = [
    ("Environment", "anyware.demo.environment:run"),
    ("Training a tiny transformer", "anyware.demo.train:run"),
    ("Running CUDA-written code unchanged (anyware run)", "anyware.demo.migrate:run"),
    ("Operator library: the model on anyware.ops", "anyware.demo.ops:run"),
    ("Low-precision formats: FP8 training against fp32", "anyware.demo.formats:run"),
    ("Precision tracer: fp32 vs bf16, first divergence", "anyware.demo.trace:run"),
    ("Reading the logs of a failing run", "anyware.demo.logs:run"),
    ("Watching training health live", "anyware.demo.monitor:run"),
    ("Collectives: a two-rank data-parallel step on anyware.comm", "anyware.demo.comm:run"),
    ("Where the time went: profiling a few steps", "anyware.demo.profile:run"),
    ("A DeepSeek-style MoE on two expert-parallel ranks", "anyware.demo.moe:run"),
    ("Summary", "anyware.demo.summary:run"),
]


@dataclass(kw_only=True)
class DemoContext:
    """What sections share: the console, the device choice and a scratch directory."""

    console: Console
    device: str | None
    workdir: Path
    results: dict[str, Any] = field(default_factory=dict)


def run(
    *, device: str | None, workdir: Path, console: Console, only: list[str] | None = None
) -> dict[str, Any]:
    ctx = DemoContext(console=console, device=device, workdir=workdir)
    for title, target in SECTIONS:
        key = target.split(":")[0].rsplit(".", 1)[-1]
        if only and key not in only:
            continue
        console.rule(f"[bold]{title}")
        module, _, fn = target.partition(":")
        t0 = time.perf_counter()
        getattr(importlib.import_module(module), fn)(ctx)
        ctx.results.setdefault(key, {})["seconds"] = round(time.perf_counter() - t0, 2)
    return ctx.results
