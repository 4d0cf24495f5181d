"""Each check on a hand-built state: fires on its fault with the right culprit, stays quiet on
the near miss next to it."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from anyware.events import Kind, read_dir
from anyware.monitor.aggregator import Aggregator
from anyware.monitor.checks import CHECKS, get_check
from anyware.monitor.checks.memory_growth import theil_sen
from anyware.monitor.config import CheckConfig, MonitorConfig, parse_addr
from anyware.monitor.testing import collective, hello, step


def agg_for(tmp_path: Path | None = None, **cfg: float) -> Aggregator:
    return Aggregator(events_dir=tmp_path, checks=CheckConfig(**cfg))


def alerts(agg: Aggregator, check: str) -> list[dict]:  # type: ignore[type-arg]
    return [a for a in agg.alerts.alerts() if a["check"] == check]


def test_registry_codes_are_stable_and_unique() -> None:
    assert {c.name: c.code for c in CHECKS.values()} == {
        "nonfinite": "HM001", "loss_spike": "HM002", "straggler": "HM003", "hang": "HM004",
        "slow_collective": "HM005", "memory_growth": "HM006", "dataloader_stall": "HM007",
        "rank_exit": "HM008",
    }  # fmt: skip
    assert get_check("HM004").name == "hang"
    with pytest.raises(KeyError, match="did you mean 'straggler'"):
        get_check("stragler")


def test_config_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="straggler_score"):
        CheckConfig(straggler_score=1.5)
    with pytest.raises(ValueError, match="hang_min_s"):
        CheckConfig(hang_min_s=-1)
    with pytest.raises(ValueError, match="did you mean 'hang_min_s'"):
        CheckConfig.from_mapping({"hang_mins": 2})
    with pytest.raises(ValueError, match="ship_hz"):
        MonitorConfig(ship_hz=100)
    with pytest.raises(ValueError, match="host:port"):
        MonitorConfig(addr="localhost")
    assert parse_addr(":8765") == ("127.0.0.1", 8765)


@pytest.mark.parametrize("world", [2, 4])
def test_straggler_named_with_robust_z_and_nvrx_score(world: int) -> None:
    agg = agg_for()
    t = 1000.0
    for s in range(30):
        for r in range(world):
            slow = r == world - 1 and s >= 10
            step(agg.state, r, s, t=t, compute=0.030 if slow else 0.020 + 0.0003 * r, world=world)
        t += 0.05
        agg.tick(t)
    fired = [a for a in alerts(agg, "straggler") if a["state"] == "firing"]
    assert [a["culprit_rank"] for a in fired] == [world - 1]
    assert fired[0]["step"] - 10 <= 10
    table = {row["rank"]: row for row in agg.state.tables["straggler"]["rows"]}
    assert table[world - 1]["score"] == pytest.approx(0.020 / 0.030, rel=0.05)
    if world >= 3:
        assert table[world - 1]["z"] > 3.5


def test_uniform_noise_is_not_a_straggler() -> None:
    agg = agg_for()
    t = 1000.0
    for s in range(40):
        for r in range(4):
            step(agg.state, r, s, t=t, compute=0.020 * (1 + 0.1 * math.sin(7 * s + 3 * r)), world=4)
        t += 0.05
        agg.tick(t)
    assert agg.alerts.alerts() == []


def test_arrival_lag_catches_waiting_hidden_in_backward() -> None:
    # DDP waits inside backward, so busy times look equal; rank 1 always arrives 12 ms late.
    agg = agg_for()
    t = 1000.0
    for s in range(20):
        for r in range(2):
            collective(
                agg.state, r, s + 1, enter=t + (0.012 if r == 1 else 0.0), exit=t + 0.013, step=s
            )
            step(agg.state, r, s, t=t + 0.014, compute=0.025)
        t += 0.03
        agg.tick(t)
    fired = [a for a in alerts(agg, "straggler") if a["state"] == "firing"]
    assert [a["culprit_rank"] for a in fired] == [1]


def test_nonfinite_names_the_rank_whose_loss_went_bad_and_waits_for_all_ranks(
    tmp_path: Path,
) -> None:
    agg = agg_for(tmp_path)
    for s in range(5):
        for r in range(2):
            step(agg.state, r, s, t=1000 + s, compute=0.01)
    step(agg.state, 0, 5, t=1005.0, compute=0.01, grad_norm=math.nan)  # inherited via allreduce
    agg.tick(1005.1)
    (a,) = alerts(agg, "nonfinite")
    assert a["state"] == "pending"  # rank 1's record of step 5 is not in yet
    step(agg.state, 1, 5, t=1005.2, compute=0.01, loss=math.nan, grad_norm=math.nan)
    agg.tick(1005.3)
    (a,) = alerts(agg, "nonfinite")
    assert (a["state"], a["step"], a["culprit_rank"]) == ("firing", 5, 1)
    (rec,) = [e for e in read_dir(tmp_path) if e.kind is Kind.ALERT]
    assert (rec.name, rec.step, rec.attrs["check"], rec.attrs["culprit_rank"]) == (
        "HM001",
        5,
        "nonfinite",
        1,
    )
    assert rec.rank == 1


def test_single_loss_blip_stays_pending_and_writes_nothing(tmp_path: Path) -> None:
    agg = agg_for(tmp_path, loss_spike_window=10)
    t = 1000.0
    for s in range(40):
        loss = 2.0 + 0.01 * math.sin(s) + (20.0 if s == 25 else 0.0)
        for r in range(2):
            step(agg.state, r, s, t=t, compute=0.01, loss=loss)
        t += 0.1
        agg.tick(t)
    assert alerts(agg, "loss_spike") == []
    assert [e for e in read_dir(tmp_path) if e.kind is Kind.ALERT] == []


def test_loss_spike_fires_then_resolves(tmp_path: Path) -> None:
    agg = agg_for(tmp_path, loss_spike_window=10)
    t = 1000.0
    for s in range(50):
        loss = 2.0 + 0.01 * math.sin(s) + (20.0 if 25 <= s < 28 else 0.0)
        for r in range(2):
            step(agg.state, r, s, t=t, compute=0.01, loss=loss)
        t += 0.1
        agg.tick(t)
    (a,) = alerts(agg, "loss_spike")
    assert a["state"] == "resolved" and a["step"] == 25 and a["culprit_rank"] is None
    states = [e.attrs["state"] for e in read_dir(tmp_path) if e.kind is Kind.ALERT]
    assert states == ["firing", "resolved"]


def test_slow_collective_blames_nobody() -> None:
    agg = agg_for(slow_collective_min_s=0.01)
    t = 1000.0
    for seq in range(1, 30):
        transfer = 0.2 if seq > 15 else 0.003
        for r in range(2):
            collective(agg.state, r, seq, enter=t + 0.0005 * r, exit=t + 0.001 + transfer, step=seq)
        t += 0.5
        agg.tick(t)
    (a,) = alerts(agg, "slow_collective")
    assert a["state"] == "firing" and a["culprit_rank"] is None
    assert a["attrs"]["transfer_s"] > 10 * a["attrs"]["baseline_s"]


def test_late_arrival_is_not_a_slow_collective() -> None:
    agg = agg_for(slow_collective_min_s=0.01)
    t = 1000.0
    for seq in range(1, 30):
        late = 0.2 if seq > 15 else 0.0  # a straggler: transfer after the last arrival stays short
        for r in range(2):
            collective(
                agg.state,
                r,
                seq,
                enter=t + (late if r == 1 else 0),
                exit=t + late + 0.003,
                step=seq,
            )
        t += 0.5
        agg.tick(t)
    assert alerts(agg, "slow_collective") == []


def test_memory_growth_slope_test() -> None:
    pts = [(float(i), 2.0 * i) for i in range(8)] + [(8.0, 500.0)]  # one jump does not move it
    assert theil_sen(pts) == pytest.approx(2.0)
    agg = agg_for(memory_window=20, memory_min_growth_bytes=50 * 2**20, memory_warmup_steps=2)
    st = agg.state
    hello(st, 0, 1000.0, 2)
    hello(st, 1, 1000.0, 2)
    base = 500 * 2**20
    for s in range(3, 40):
        for r, value in (
            (0, base + (s % 3) * 30 * 2**20),
            (1, base + s * 4 * 2**20),
        ):  # sawtooth vs leak
            ev = {
                "t": 1000.0 + s,
                "rank": r,
                "step": s,
                "kind": "scalar",
                "name": "memory",
                "value": float(value),
            }
            st.ingest({"rank": r, "events": [ev]}, now=1000.0 + s)
        agg.tick(1000.0 + s)
    fired = alerts(agg, "memory_growth")
    assert [a["culprit_rank"] for a in fired] == [1]


def test_dataloader_stall_needs_persistence() -> None:
    agg = agg_for(dataloader_persist=4)
    t = 1000.0
    for s in range(30):
        for r in range(2):
            blip = r == 0 and s == 5
            stall = r == 1 and s >= 15
            step(agg.state, r, s, t=t, compute=0.02, data=0.05 if (blip or stall) else 0.0005)
        t += 0.1
        agg.tick(t)
    fired = [a for a in alerts(agg, "dataloader_stall") if a["state"] == "firing"]
    assert [a["culprit_rank"] for a in fired] == [1]


def test_rank_exit_names_the_first_to_go_not_the_one_that_crashed_after() -> None:
    agg = agg_for(heartbeat_timeout_s=2.0)
    st = agg.state
    for s in range(5):
        for r in range(3):
            step(st, r, s, t=1000.0 + 0.1 * s, compute=0.01, world=3)
    # rank 2 finishes cleanly, rank 1 goes silent at 1000.4, rank 0 crashes 50 ms later
    st.ingest({"rank": 2, "state": {"goodbye": {"clean": True}}, "events": []}, now=1000.41)
    st.ingest(
        {
            "rank": 0,
            "state": {"goodbye": {"clean": False, "reason": "RuntimeError: peer closed"}},
            "events": [],
        },
        now=1000.45,
    )
    agg.tick(1001.0)
    (a,) = alerts(agg, "rank_exit")
    assert a["state"] == "pending"
    agg.tick(1002.6)
    (a,) = alerts(agg, "rank_exit")
    assert (a["state"], a["culprit_rank"]) == ("firing", 1)
    assert a["attrs"]["gone"] == [0, 1]


def test_clean_goodbyes_are_not_alerts() -> None:
    agg = agg_for(heartbeat_timeout_s=1.0)
    for r in range(2):
        step(agg.state, r, 0, t=1000.0, compute=0.01)
        agg.state.ingest(
            {"rank": r, "state": {"goodbye": {"clean": True}}, "events": []}, now=1000.1
        )
    agg.tick(1100.0)
    assert agg.alerts.alerts() == []


def test_hang_culprit_is_lowest_sequence_then_the_one_outside_a_collective() -> None:
    agg = agg_for(hang_min_s=1.0)
    st = agg.state
    for s in range(5):
        step(st, 0, s, t=1000.0 + 0.1 * s, compute=0.01, last_seq=s + 1)
        step(st, 1, s, t=1000.0 + 0.1 * s, compute=0.01, last_seq=s + 1)
    hello(st, 0, 1000.5, 2, last_seq=6, inflight=[6, "all_reduce", 1000.5])
    hello(st, 1, 1000.5, 2, last_seq=5)
    agg.tick(1001.0)
    assert alerts(agg, "hang") == []
    agg.tick(1001.6)
    (a,) = alerts(agg, "hang")
    assert (a["state"], a["culprit_rank"]) == ("firing", 1)
    assert st.stack_requests == {0, 1}
    # tie on sequence number: the rank not inside a collective is the one stuck
    agg2 = agg_for(hang_min_s=1.0)
    for s in range(3):
        step(agg2.state, 0, s, t=1000.0 + 0.1 * s, compute=0.01, last_seq=3)
        step(agg2.state, 1, s, t=1000.0 + 0.1 * s, compute=0.01, last_seq=3)
    hello(agg2.state, 0, 1000.3, 2, last_seq=3, inflight=[3, "barrier", 1000.3])
    hello(agg2.state, 1, 1000.3, 2, last_seq=3)
    agg2.tick(1002.0)
    (b,) = alerts(agg2, "hang")
    assert b["culprit_rank"] == 1
    # progress resumes: resolved
    for r in range(2):
        step(agg2.state, r, 3, t=1002.1, compute=0.01, last_seq=4)
    agg2.tick(1002.2)
    (b,) = alerts(agg2, "hang")
    assert b["state"] == "resolved"


def test_importing_the_monitor_and_its_cli_stays_cheap() -> None:
    import subprocess
    import sys

    code = (
        "import sys, anyware.monitor, anyware.monitor.autostart, anyware.cli.monitor; "
        "heavy = [m for m in ('torch', 'fastapi', 'uvicorn') if m in sys.modules]; "
        "assert not heavy, heavy"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
