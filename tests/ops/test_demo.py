"""The demo section: the GPT runs under ops.use() and the child runs the Triton kernels."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from rich.console import Console


@pytest.mark.slow
def test_demo_section(tmp_path: Path) -> None:
    from anyware import demo

    out = io.StringIO()
    results = demo.run(
        device="cpu", workdir=tmp_path, console=Console(file=out, width=120), only=["ops"]
    )
    r = results["ops"]
    assert set(r["calls"]) == {"matmul", "cross_entropy", "embedding_bag"}
    assert r["losses"][-1] < r["losses"][0]
    kernels = r["kernels"]
    assert "error" not in kernels, kernels
    assert kernels["calls"]["matmul"] == {"triton": 7}
    assert kernels["loss_diff"] < 1e-5 and kernels["grad_max_diff"] < 1e-5
    assert "Triton kernels (interpreter" in out.getvalue()
