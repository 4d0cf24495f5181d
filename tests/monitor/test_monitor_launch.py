"""``anyware run --monitor`` end to end: the launcher starts the aggregator through
``start_for_run``, the unmodified script is monitored through autostart, and the run's
directory holds the rank's JSONL in the shared schema."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from anyware.events import Kind, read_dir
from anyware.monitor.launch import start_for_run

SCRIPT = """
import torch
m = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1)).cuda()
opt = torch.optim.SGD(m.parameters(), lr=0.05)
for i in range(25):
    loss = m(torch.randn(8, 16).cuda()).pow(2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
"""


def test_start_for_run_handle(tmp_path: Path) -> None:
    handle = start_for_run(tmp_path / "run")
    try:
        assert handle.url == f"http://{handle.addr}/"
        assert httpx.get(handle.url + "healthz", timeout=5).json() == {"status": "ok"}
    finally:
        handle.stop()
        handle.stop()  # idempotent
    assert handle.process.poll() is not None


@pytest.mark.slow
@pytest.mark.timeout(180)
def test_anyware_run_monitor_writes_the_run(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    events = tmp_path / "run"
    out = subprocess.run(
        [sys.executable, "-m", "anyware.cli.main", "run", "--monitor", "--events", str(events), str(script)],
        capture_output=True, text=True, timeout=170,
    )  # fmt: skip
    assert out.returncode == 0, out.stderr[-2000:]
    assert "monitor dashboard at http://127.0.0.1:" in out.stderr
    evs = read_dir(events)
    assert [e.step for e in evs if e.kind is Kind.SPAN and e.name == "step"] == list(range(25))
    assert {"forward", "backward", "loss", "grad_norm", "memory"} <= {e.name for e in evs}
    assert not [e for e in evs if e.kind is Kind.ALERT]
