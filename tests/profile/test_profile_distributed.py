"""A two-rank gloo DDP job profiled through ``anyware profile record --nproc 2``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from anyware.profile.merge import PID_STRIDE, write_merged
from anyware.profile.report import analyze_path

pytestmark = pytest.mark.distributed

DDP = textwrap.dedent(
    """
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = DDP(torch.nn.Sequential(torch.nn.Linear(64, 128), torch.nn.ReLU(), torch.nn.Linear(128, 8)))
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    a = torch.randn(256, 256)
    for step in range(4):
        loss = model(torch.randn(16, 64)).square().mean()
        if rank == 1:  # the straggler: extra matmuls inside every step
            for _ in range(16):
                a = torch.tanh(a @ a)
        loss.backward()
        opt.step()
        opt.zero_grad()
    dist.destroy_process_group()
    """
)


def test_two_rank_ddp_profile_names_the_straggler(tmp_path: Path) -> None:
    script = tmp_path / "ddp.py"
    script.write_text(DDP)
    out = tmp_path / "prof"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYWARE_")}
    argv = [
        "profile",
        "record",
        "--out",
        str(out),
        "--steps",
        "1:3",
        "--nproc",
        "2",
        "--",
        str(script),
    ]
    proc = subprocess.run(
        [sys.executable, "-m", "anyware.cli.main", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert sorted(p.name for p in out.glob("*.json")) == [
        "rank0.pt.trace.json",
        "rank1.pt.trace.json",
    ]
    metas = [json.loads((out / f"rank{r}.pt.trace.json").read_text())["anyware"] for r in (0, 1)]
    assert [m["rank"] for m in metas] == [0, 1] and {m["world_size"] for m in metas} == {2}
    assert metas[0]["run_id"] == metas[1]["run_id"]

    report = analyze_path(out)
    assert [r.rank for r in report.ranks] == [0, 1]
    assert all(r.world_size == 2 and [s.step for s in r.steps] == [1, 2] for r in report.ranks)
    # DDP's gradient all-reduce shows up as communication on both ranks.
    for r in report.ranks:
        assert r.whole.comm_us > 0
        assert any(o.bucket == "communication" for o in r.top_ops)
    slowest = report.slowest
    assert slowest is not None and slowest.rank == 1
    assert slowest.extra_per_step_us["compute"] > 0
    assert {n for n, _ in slowest.top_extra[:2]} & {"aten::mm", "aten::tanh", "aten::matmul"}

    merged = tmp_path / "merged.json"
    assert write_merged(out, merged) == []
    events = json.loads(merged.read_text())["traceEvents"]
    groups = {e["pid"] // PID_STRIDE for e in events}
    assert groups == {0, 1}
    names = {e["args"]["name"] for e in events if e.get("name") == "process_name"}
    assert any(n.startswith("rank 0 · ") for n in names) and any(
        n.startswith("rank 1 · ") for n in names
    )
