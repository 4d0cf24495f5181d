"""Capture on cpu: real torch.profiler traces of the tiny GPT, through autostart and the CLI."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from anyware.profile.capture import CaptureConfig, Record, StepRange, activities_for
from anyware.profile.report import analyze_path

TRAIN = textwrap.dedent(
    """
    import sys
    import torch
    import anyware._autostart as autostart
    from anyware.models.data import VOCAB_SIZE, batches, encode, make_text
    from anyware.models.gpt import GPT, GPTConfig

    started = autostart.start_features()
    assert autostart.start_features() == []  # idempotent
    steps = int(sys.argv[1])
    cfg = GPTConfig(vocab_size=VOCAB_SIZE, seq_len=16, d_model=32, n_heads=2, n_layers=1)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    second = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=0.1)  # not the step clock
    data = batches(encode(make_text(200)), batch_size=4, seq_len=cfg.seq_len)
    for _ in range(steps):
        x, y = next(data)
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        second.step()
        opt.zero_grad()
    print("started", started)
    """
)


CUDA_STYLE = textwrap.dedent(
    """
    import sys
    import torch
    model = torch.nn.Sequential(torch.nn.Linear(32, 64), torch.nn.ReLU(), torch.nn.Linear(64, 4)).cuda()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    for _ in range(int(sys.argv[1])):
        x = torch.randn(16, 32, device="cuda")
        model(x).square().mean().backward()
        opt.step()
        opt.zero_grad()
    torch.cuda.synchronize()
    print("trained on", next(model.parameters()).device.type)
    """
)


def _run(tmp_path: Path, steps: int, **env: str) -> subprocess.CompletedProcess[str]:
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    full = {k: v for k, v in os.environ.items() if not k.startswith("ANYWARE_")}
    full.update(env)
    return subprocess.run(
        [sys.executable, str(script), str(steps)],
        env=full,
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_autostart_profiles_the_chosen_steps_with_stacks(tmp_path: Path) -> None:
    out = tmp_path / "prof"
    proc = _run(
        tmp_path,
        6,
        ANYWARE_PROFILE_DIR=str(out),
        ANYWARE_PROFILE_STEPS="2:4",
        ANYWARE_PROFILE_RECORD="stack,memory",
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "anyware.profile.autostart" in proc.stdout
    trace = out / "rank0.pt.trace.json"
    meta = json.loads(trace.read_text())
    assert meta["anyware"]["rank"] == 0 and meta["anyware"]["steps"] == "2:4"
    assert not list(out.glob(".*tmp*")), "temporary export left behind"
    report = analyze_path(out)
    r = report.ranks[0]
    # Steps counted by the first optimizer only: the SGD stepping too would double the count.
    assert [s.step for s in r.steps] == [2, 3]
    assert r.mode == "host" and r.whole.compute_us > 0
    assert r.whole.span_us == pytest.approx(sum(s.duration_us for s in r.steps))
    names = {o.name for o in r.top_ops}
    assert names & {"aten::mm", "aten::addmm", "aten::bmm", "aten::matmul"}
    # with stacks, ops know their module and the user's source line
    assert any(o.module for o in r.top_ops) and any(
        o.source and "train.py" in o.source for o in r.top_ops
    )
    assert any(m["peak_allocated"] > 0 for m in r.memory)


def test_bad_steps_warn_and_the_program_runs_on(tmp_path: Path) -> None:
    code = "import anyware._autostart as a; print(a.start_features())"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYWARE_")}
    env.update(ANYWARE_PROFILE_DIR=str(tmp_path / "p"), ANYWARE_PROFILE_STEPS="5")
    proc = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0 and proc.stdout.strip() == "[]"
    assert "could not start profile" in proc.stderr and "expected A:B" in proc.stderr
    assert not (tmp_path / "p").exists()


def test_profile_record_cli_runs_through_the_launcher_and_writes_at_exit(tmp_path: Path) -> None:
    # A CUDA-written script: the migration shim runs it on the present device.
    script = tmp_path / "train.py"
    script.write_text(CUDA_STYLE)
    out = tmp_path / "rec"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYWARE_")}
    # Steps 1:10 of a 3-step program: the profile is still recording at exit.
    argv = ["profile", "record", "--out", str(out), "--steps", "1:10", "--", str(script), "3"]
    proc = subprocess.run(
        [sys.executable, "-m", "anyware.cli.main", *argv],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "trained on cpu" in proc.stdout
    assert f"next: anyware profile summary {out}" in proc.stderr
    report = analyze_path(out)
    # Step 3 is the program's tail after the last optimizer step: left out, and said so.
    assert [s.step for s in report.ranks[0].steps] == [1, 2]
    assert any("ended during step 3" in p for p in report.problems)


def test_step_range_and_schedule() -> None:
    s = StepRange.parse("2:6")
    assert (s.wait, s.warmup, s.active) == (1, 1, 4)
    z = StepRange.parse("0:3")
    assert (z.wait, z.warmup, z.active) == (0, 0, 3)
    for bad in ("3:3", "5", "a:b", "-1:2"):
        with pytest.raises(ValueError, match=r"A:B|0 <= A < B"):
            StepRange.parse(bad)


def test_config_from_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    assert CaptureConfig.from_env() is None
    monkeypatch.setenv("ANYWARE_PROFILE_DIR", str(tmp_path))
    monkeypatch.setenv("ANYWARE_PROFILE_RECORD", "shapes,stack")
    cfg = CaptureConfig.from_env()
    assert cfg is not None and cfg.record == {Record.SHAPES, Record.STACK} and cfg.steps.start == 2
    monkeypatch.setenv("ANYWARE_PROFILE_RECORD", "shape")
    with pytest.raises(
        ValueError, match="unknown 'shape'; choose from shapes, stack, memory, threads"
    ):
        CaptureConfig.from_env()


def test_activities_follow_the_backend() -> None:
    from torch.profiler import ProfilerActivity as A

    assert activities_for("cpu") == [A.CPU]
    assert activities_for("cuda") == [A.CPU, A.CUDA]
    assert activities_for("xpu") == [A.CPU, A.XPU]
    assert activities_for("npu") == [A.CPU, A.PrivateUse1]
    assert activities_for("mps") == [A.CPU]
