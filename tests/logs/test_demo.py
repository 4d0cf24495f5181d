from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from anyware.demo import DemoContext
from anyware.demo.logs import run


def test_demo_section_finds_the_injected_failure(tmp_path: Path) -> None:
    out = io.StringIO()
    ctx = DemoContext(console=Console(file=out, width=120), device="cpu", workdir=tmp_path)
    run(ctx)
    run(ctx)  # a rerun in the same workdir starts from fresh logs
    r = ctx.results["logs"]
    assert r["correct"] and r["category"] == "device_oom"
    assert r["torchrun_named"] != r["root_cause_rank"]
    assert "found" in out.getvalue()
