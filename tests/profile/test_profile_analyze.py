"""Breakdowns of hand-built traces against the figures worked out in profile_traces."""

from __future__ import annotations

from pathlib import Path

import pytest
from profile_traces import GEMM, H2D, NCCL, RELU, device_trace, host_trace

from anyware.profile.report import analyze_path


def _parts(bd: object) -> dict[str, float]:
    return {k: round(v, 6) for k, v in bd.parts().items()}  # type: ignore[attr-defined]


def test_device_whole_run_breakdown(device_dir: Path) -> None:
    r = analyze_path(device_dir).ranks[0]
    assert r.mode == "device"
    assert r.whole.span_us == pytest.approx(250.0)
    assert _parts(r.whole) == {
        "compute": 70.0,
        "comm": 30.0,
        "memory": 10.0,
        "other": 5.0,
        "idle": 135.0,
    }
    assert r.overlap_pct == pytest.approx(40.0)


def test_device_per_step_breakdown_follows_the_launch(device_dir: Path) -> None:
    steps = analyze_path(device_dir).ranks[0].steps
    assert [s.step for s in steps] == [1, 2]
    one, two = steps[0].breakdown, steps[1].breakdown
    assert one is not None and two is not None
    assert one.span_us == pytest.approx(95.0)
    assert _parts(one) == {
        "compute": 40.0,
        "comm": 20.0,
        "memory": 10.0,
        "other": 5.0,
        "idle": 20.0,
    }
    assert steps[0].overlap_pct == pytest.approx(50.0)
    assert two.span_us == pytest.approx(50.0)
    assert _parts(two) == {"compute": 30.0, "comm": 10.0, "memory": 0.0, "other": 0.0, "idle": 10.0}
    assert steps[1].overlap_pct == pytest.approx(0.0)
    assert steps[0].duration_us == 100.0


def test_launch_rate_and_host_bound(device_dir: Path) -> None:
    launch = analyze_path(device_dir).ranks[0].launch
    assert launch is not None
    # 6 cudaLaunchKernel calls (memcpy and sync are not kernel launches) over 200 µs of steps.
    assert launch.launches == 6
    assert launch.launches_per_s == pytest.approx(6 / 200e-6)
    # The only gap that ends with a kernel launched after the device went idle: 105 → 210.
    assert launch.starved_us == pytest.approx(105.0)
    assert launch.starved_pct == pytest.approx(42.0)
    assert launch.host_bound
    assert launch.mean_launch_us == pytest.approx(4.0)


def test_top_kernels_with_launching_op(device_dir: Path) -> None:
    r = analyze_path(device_dir).ranks[0]
    top = {k.name: k for k in r.top_kernels}
    assert [k.name for k in r.top_kernels[:2]] == [GEMM, NCCL]
    assert top[GEMM].count == 3 and top[GEMM].total_us == pytest.approx(70.0)
    assert top[GEMM].bucket == "compute" and top[GEMM].launched_by == "aten::mm"
    assert top[NCCL].bucket == "communication" and top[NCCL].total_us == pytest.approx(50.0)
    assert top[H2D].bucket == "memory copy"
    assert top[RELU].launched_by is None
    assert top["Event Sync"].bucket == "other (sync)"


def test_memory_peak(device_dir: Path) -> None:
    mem = analyze_path(device_dir).ranks[0].memory
    assert mem == [{"device": "device:0", "peak_allocated": 5000, "peak_reserved": 8192}]


def test_host_only_breakdown_from_self_intervals(host_dir: Path) -> None:
    report = analyze_path(host_dir)
    r = report.ranks[0]
    assert r.mode == "host" and r.launch is None
    assert _parts(r.whole) == {
        "compute": 45.0,
        "comm": 20.0,
        "memory": 5.0,
        "other": 0.0,
        "idle": 30.0,
    }
    assert r.overlap_pct == pytest.approx(50.0)
    assert any("no device events" in p for p in report.problems)


def test_host_self_time_module_and_source(host_dir: Path) -> None:
    ops = {o.name: o for o in analyze_path(host_dir).ranks[0].top_ops}
    assert {n: o.total_us for n, o in ops.items()} == pytest.approx(
        {
            "gloo:all_reduce": 40.0,
            "aten::addmm": 25.0,
            "aten::linear": 10.0,
            "aten::relu": 10.0,
            "aten::copy_": 5.0,
        }
    )
    assert ops["aten::addmm"].module == "Linear_0"
    # The torch frame inside the module is library code; the user's frame is the source.
    assert ops["aten::addmm"].source == "train.py(12): step"
    assert ops["aten::relu"].module is None and ops["aten::relu"].source == "train.py(12): step"
    assert (
        ops["gloo:all_reduce"].bucket == "communication" and ops["gloo:all_reduce"].source is None
    )


def test_slowest_rank_and_what_it_spends_extra_on(tmp_path: Path) -> None:
    device_trace(0, 3).write(tmp_path / "rank0.pt.trace.json")
    device_trace(1, 3, extra_gemm=30.0).write(tmp_path / "rank1.pt.trace.json")
    device_trace(2, 3).write(tmp_path / "rank2.pt.trace.json")
    report = analyze_path(tmp_path)
    s = report.slowest
    assert s is not None and s.rank == 1
    # 30 µs more gemm over 2 steps.
    assert s.busy_per_step_us == pytest.approx((70 + 30 + 10 + 5) / 2)
    assert s.extra_per_step_us["compute"] == pytest.approx(15.0)
    assert s.top_extra[0] == (GEMM, pytest.approx(15.0))
    assert "compute" in report.biggest_cost or "idle" in report.biggest_cost


def test_biggest_cost_names_host_bound_idle(device_dir: Path) -> None:
    text = analyze_path(device_dir).biggest_cost
    assert text.startswith("idle time: 54.0% of device time") and "host-bound" in text


def test_report_json_round_numbers(device_dir: Path, host_dir: Path) -> None:
    j = analyze_path(device_dir).to_json()
    assert j["ranks"][0]["breakdown"]["pct"] == {
        "compute": 28.0,
        "comm": 12.0,
        "memory": 4.0,
        "other": 2.0,
        "idle": 54.0,
    }
    assert j["ranks"][0]["launch"]["host_bound"] is True
    assert j["buckets"] == ["compute", "comm", "memory", "other", "idle"]
    assert analyze_path(host_dir).to_json()["ranks"][0]["launch"] is None


def test_host_trace_without_steps_uses_op_extent(tmp_path: Path) -> None:
    b = host_trace()
    b.events = [e for e in b.events if not str(e.get("name", "")).startswith("ProfilerStep")]
    b.write(tmp_path / "t.json")
    r = analyze_path(tmp_path / "t.json").ranks[0]
    assert r.steps == [] and r.whole.span_us == pytest.approx(70.0)  # 10 → 80
    assert r.whole.idle_us == pytest.approx(0.0)


def test_parallel_ranks_give_the_same_report(tmp_path: Path) -> None:
    device_trace(0, 2).write(tmp_path / "rank0.pt.trace.json")
    device_trace(1, 2, extra_gemm=30.0).write(tmp_path / "rank1.pt.trace.json")
    serial = analyze_path(tmp_path, workers=1).to_json()
    parallel = analyze_path(tmp_path, workers=2).to_json()
    assert parallel == serial and parallel["slowest"]["rank"] == 1
