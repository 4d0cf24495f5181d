"""The in-process side: what one training process records, and that nothing the aggregator or
the disk does can stop the training."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest
import torch

from anyware import monitor
from anyware.events import Kind, rank_file, read_dir, read_events
from anyware.monitor import collector
from anyware.monitor.launch import start_for_run
from anyware.monitor.scenarios import free_port


def _train(mon_steps: int, *, accumulate: int = 1, model: torch.nn.Module | None = None,
           opt: torch.optim.Optimizer | None = None, pause: float = 0.0) -> list[float]:  # fmt: skip
    torch.manual_seed(0)
    model = model or torch.nn.Sequential(
        torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1)
    )
    opt = opt or torch.optim.SGD(model.parameters(), lr=0.05)
    durs = []
    for _ in range(mon_steps):
        t0 = time.perf_counter()
        opt.zero_grad()
        for _ in range(accumulate):
            loss = model(torch.randn(8, 16)).pow(2).mean()
            loss.backward()
        opt.step()
        if pause:
            time.sleep(pause)
        durs.append(time.perf_counter() - t0)
    return durs


@pytest.fixture(autouse=True)
def _no_leftover_monitor():  # type: ignore[no-untyped-def]
    yield
    monitor.detach()
    assert collector.active() is None


def test_attach_records_phases_loss_grad_norm_and_ratio(tmp_path: Path) -> None:
    model = torch.nn.Sequential(torch.nn.Linear(16, 32), torch.nn.ReLU(), torch.nn.Linear(32, 1))
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    mon = monitor.attach(
        model, opt, events_dir=tmp_path, flops_per_step=1e3, peak_flops=1e9, stats_every=5
    )
    _train(12, accumulate=2, model=model, opt=opt)
    mon.close()
    events = list(read_events(rank_file(tmp_path, 0)))
    steps = [e for e in events if e.name == "step"]
    assert [e.step for e in steps] == list(range(12))
    s = steps[3].attrs
    # two forwards per step (gradient accumulation) are summed into one forward span
    fwd = [e for e in events if e.name == "forward" and e.step == 3]
    assert len(fwd) == 1 and fwd[0].dur == pytest.approx(s["forward"]) and s["forward"] > 0
    assert s["compute"] <= steps[3].dur + 1e-9
    by = {(e.name, e.step): e for e in events if e.kind is Kind.SCALAR}
    assert by[("loss", 3)].value is not None and by[("grad_norm", 3)].value > 0
    assert ("update_ratio", 5) in by and ("update_ratio", 6) not in by  # every stats_every steps
    assert 0 < by[("update_ratio", 5)].value < 1
    assert 0 < by[("mfu", 3)].value < 1
    assert by[("samples_per_s", 3)].value > 0
    assert any(e.name == "memory" and e.value and e.value > 0 for e in events)


def test_hot_path_hooks_go_away_on_close(tmp_path: Path) -> None:
    model = torch.nn.Linear(4, 1)
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    mon = monitor.attach(model, opt, events_dir=tmp_path)
    mon.close()
    assert not model._forward_pre_hooks and not model._forward_hooks
    assert not opt._optimizer_step_pre_hooks and not opt._optimizer_step_post_hooks


def test_autostart_finds_the_model_without_being_told(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anyware.monitor import autostart

    monkeypatch.setenv("ANYWARE_MONITOR_EVENTS", str(tmp_path))
    monkeypatch.delenv("ANYWARE_MONITOR_ADDR", raising=False)
    autostart.start()
    autostart.start()  # idempotent
    _train(6)
    collector.active().close()  # type: ignore[union-attr]
    events = read_dir(tmp_path)
    assert len([e for e in events if e.name == "step"]) == 6
    assert len([e for e in events if e.name == "forward"]) == 6
    assert len([e for e in events if e.name == "loss"]) == 6


def test_unreachable_aggregator_spools_bounded_and_warns_once(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    port = free_port()  # nothing listens there
    mon = monitor.attach(
        events_dir=tmp_path, addr=f"127.0.0.1:{port}", spool_bytes=4096, ship_hz=20
    )
    durs = _train(40, pause=0.005)
    time.sleep(0.3)
    shipper = mon._shipper
    assert shipper is not None and shipper.backlog_bytes <= 4096 and shipper.dropped > 0
    mon.close(timeout=1.0)
    err = capfd.readouterr().err
    assert err.count("unreachable") == 1
    assert len([e for e in read_dir(tmp_path) if e.name == "step"]) == 40  # disk keeps everything
    assert max(durs) < 0.5


def test_unwritable_events_dir_warns_once_and_keeps_training(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    mon = monitor.attach(events_dir=blocker / "sub")
    _train(10)
    time.sleep(0.2)
    _train(10)
    mon.close()
    assert capfd.readouterr().err.count("cannot write events") == 1


@pytest.mark.distributed
def test_aggregator_killed_mid_run_does_not_hurt_training(tmp_path: Path) -> None:
    events = tmp_path / "run"
    handle = start_for_run(events)
    assert handle.url.startswith("http://127.0.0.1:") and handle.addr.split(":")[1].isdigit()
    try:
        mon = monitor.attach(events_dir=events, addr=handle.addr)
        before = _train(20, pause=0.01)
        os.kill(handle.process.pid, signal.SIGKILL)
        handle.process.wait(5)
        after = _train(30, pause=0.01)
        mon.close(timeout=1.0)
    finally:
        handle.stop()
    steps = [e for e in read_dir(events) if e.name == "step" and e.rank == 0]
    assert [e.step for e in steps] == list(range(50))
    assert max(after) < 0.5, (max(before), max(after))  # no step waited on the dead aggregator
