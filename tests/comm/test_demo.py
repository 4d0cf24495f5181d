"""The demo section runs two ranks end to end and reports agreement."""

from __future__ import annotations

from pathlib import Path

import pytest
from rich.console import Console

pytestmark = [pytest.mark.distributed, pytest.mark.slow]


@pytest.mark.timeout(90)
def test_demo_section_data_parallel_step(tmp_path: Path) -> None:
    from anyware.demo import DemoContext
    from anyware.demo.comm import run

    console = Console(record=True, width=120)
    ctx = DemoContext(console=console, device=None, workdir=tmp_path)
    run(ctx)
    text = console.export_text()
    assert ctx.results["comm"]["ok"], text
    assert ctx.results["comm"]["max_diff_vs_single_process"] < 1e-5
    assert "bit-identical" in text and "vs gloo" in text
