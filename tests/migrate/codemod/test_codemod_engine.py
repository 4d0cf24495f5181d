"""``anyware migrate check|fix``: the JSON contract, atomic idempotent writes, files left alone,
and rewritten code that runs under plain python on the cpu."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

CUDA_SCRIPT = '''\
"""A GPU training script."""
import torch

device = torch.device("cuda" if torch.cuda.is_available() else "cpu")  # pick a device
torch.cuda.manual_seed(0)
model = torch.nn.Linear(4, 1).cuda()
opt = torch.optim.SGD(model.parameters(), lr=0.1)
scaler = torch.cuda.amp.GradScaler(enabled=False)
for step in range(3):
    x = torch.randn(8, 4).cuda(non_blocking=True)
    with torch.autocast(device_type="cuda", dtype=torch.bfloat16):
        loss = model(x.to("cuda:0")).pow(2).mean()
    opt.zero_grad()
    scaler.scale(loss).backward()
    scaler.step(opt)
    scaler.update()
    torch.cuda.synchronize()
    print(f"step {step} loss {loss.item():.4f}")
torch.save(model.state_dict(), "ck.pt")
state = torch.load("ck.pt")
if "cuda" in str(device):
    print("fast path")
'''


def cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anyware.cli.main", *args],
        capture_output=True, text=True, cwd=cwd, timeout=120,
    )  # fmt: skip


def test_check_json_contract_changes_nothing(tmp_path: Path) -> None:
    f = tmp_path / "train.py"
    f.write_text(CUDA_SCRIPT)
    (tmp_path / "plain.py").write_text("print('no cuda here')\n")
    out = tmp_path / "report.json"
    proc = cli("migrate", "check", str(tmp_path), "--json", str(out))
    assert proc.returncode == 0, proc.stderr
    assert f.read_text() == CUDA_SCRIPT
    data = json.loads(out.read_text())
    assert set(data) >= {"files", "totals"}
    assert data["totals"]["files"] == 2
    entry = next(e for e in data["files"] if e["path"].endswith("train.py"))
    assert set(entry) == {"path", "converted", "unconverted", "findings"}
    for x in entry["findings"]:
        assert set(x) == {"code", "line", "kind", "message", "fixed"}
    assert entry["converted"] >= 10
    hazards = [x for x in entry["findings"] if x["kind"] == "hazard"]
    assert [(h["code"], h["line"]) for h in hazards] == [("MIG020", 21)]
    assert data["totals"]["converted"] == entry["converted"]


def test_fix_is_atomic_idempotent_and_runs_without_anyware(tmp_path: Path) -> None:
    f = tmp_path / "train.py"
    f.write_text(CUDA_SCRIPT)
    plain = tmp_path / "plain.py"
    plain.write_bytes(b"# -*- coding: utf-8 -*-\r\nprint('no cuda')  \r\n")
    before_plain = plain.read_bytes()
    os.chmod(f, 0o640)
    proc = cli("migrate", "fix", str(tmp_path), "--diff")
    assert proc.returncode == 0, proc.stderr
    assert "-model = torch.nn.Linear(4, 1).cuda()" in proc.stdout
    fixed = f.read_text()
    assert ".cuda(" not in fixed and "torch.cuda." not in fixed
    assert "# pick a device" in fixed
    assert stat.S_IMODE(f.stat().st_mode) == 0o640
    assert plain.read_bytes() == before_plain  # no CUDA code: byte-identical
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp files
    again = cli("migrate", "fix", str(tmp_path))
    assert again.returncode == 0 and f.read_text() == fixed
    # plain python, no anyware shim, on this cpu machine
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYWARE_")}
    run = subprocess.run(
        [sys.executable, str(f)], capture_output=True, text=True, cwd=tmp_path, env=env, timeout=120
    )
    assert run.returncode == 0, run.stderr
    assert "step 2 loss" in run.stdout


def test_files_that_cannot_be_fixed_are_left_alone(tmp_path: Path) -> None:
    broken = tmp_path / "broken.py"
    broken.write_text("x = torch.ones(1).cuda(\n")
    latin = tmp_path / "latin.py"
    latin.write_bytes(b"# caf\xe9\nx = t.cuda()\n")
    ro = tmp_path / "ro.py"
    ro.write_text("import torch\nx = torch.ones(1).cuda()\n")
    os.chmod(ro, 0o444)
    snapshot = {p: p.read_bytes() for p in (broken, latin, ro)}
    proc = cli("migrate", "fix", str(tmp_path))
    assert proc.returncode == 2
    assert "3 file(s) could not be rewritten" in proc.stderr
    assert (
        "does not parse" in proc.stdout
        and "not UTF-8" in proc.stdout
        and "read-only" in proc.stdout
    )
    assert {p: p.read_bytes() for p in snapshot} == snapshot


def test_missing_path_is_one_clear_error(tmp_path: Path) -> None:
    proc = cli("migrate", "check", str(tmp_path / "nope.py"))
    assert proc.returncode == 2
    assert "path(s) not found" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.parametrize("sub", ["check", "fix"])
def test_json_to_stdout(tmp_path: Path, sub: str) -> None:
    f = tmp_path / "a.py"
    f.write_text("import torch\nx = torch.ones(1).cuda()\n")
    proc = cli("migrate", sub, str(f), "--json", "-")
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["totals"] == {"files": 1, "converted": 1, "unconverted": 0}
    assert data["files"][0]["findings"][0]["fixed"] is True
