"""Communication that runs on another thread (anyware.comm's async worker) is communication,
its overlap with the main thread's compute is overlap, and a wait for it is communication
(exposed), not compute."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from profile_traces import async_comm_trace, device_trace

from anyware.profile.capture import Record, parse_record
from anyware.profile.classify import Bucket, host_bucket, host_span_bucket, is_wait
from anyware.profile.report import analyze_path


@pytest.mark.parametrize(
    ("name", "bucket"),
    [
        ("anyware.comm:alltoall async", Bucket.COMM),
        ("anyware.comm:allreduce", Bucket.COMM),
        ("record_param_comms", Bucket.COMM),
        ("moe.all_to_all_wait", Bucket.COMM),
        ("_AllToAllWait", Bucket.COMM),
        ("moe.overlapped_with_all_to_all", None),  # the user's label around compute
        ("ProfilerStep#3", None),
    ],
)
def test_which_spans_count(name: str, bucket: Bucket | None) -> None:
    assert host_span_bucket(name) is bucket
    assert host_bucket(name) is (bucket or Bucket.COMPUTE)
    assert is_wait(name) is name.lower().endswith("wait")


def test_worker_thread_comm_overlaps_main_thread_compute(tmp_path: Path) -> None:
    async_comm_trace().write(tmp_path / "rank0.pt.trace.json")
    r = analyze_path(tmp_path).ranks[0]
    w = r.whole
    assert r.mode == "host"
    assert (w.compute_us, w.comm_us, w.memory_us, w.other_us, w.idle_us) == pytest.approx(
        (30.0, 32.0, 0.0, 0.0, 38.0)
    )
    assert r.overlap_pct == pytest.approx(100 * 20 / 52)
    assert r.steps[0].overlap_pct == pytest.approx(100 * 20 / 52)
    by_name = {c.name: c for c in r.comm_ops}
    assert list(by_name) == ["anyware.comm:alltoall async", "anyware.comm:allreduce"]
    a2a = by_name["anyware.comm:alltoall async"]
    assert (a2a.count, a2a.total_us, a2a.overlap_pct) == (1, pytest.approx(40.0), 50.0)
    assert by_name["anyware.comm:allreduce"].overlap_pct == 0.0
    ops = {o.name: o for o in r.top_ops}
    assert ops["moe.all_to_all_wait"].bucket == "communication"
    assert ops["anyware.comm:alltoall async"].bucket == "communication"
    # JSON twin
    j = r.to_json()["comm_ops"][0]
    assert j == {
        "name": "anyware.comm:alltoall async",
        "count": 1,
        "total_us": 40.0,
        "overlap_pct": 50.0,
    }


def test_device_comm_ops_are_kernels(device_dir: Path) -> None:
    (nccl,) = analyze_path(device_dir).ranks[0].comm_ops
    assert nccl.name.startswith("ncclDevKernel_AllReduce") and nccl.count == 2
    assert nccl.total_us == pytest.approx(50.0) and nccl.overlap_pct == pytest.approx(40.0)
    assert device_trace().to_json()  # the fixture's trace is the documented one


def test_record_default_follows_the_job(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    assert parse_record(None) == {Record.MEMORY}
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert parse_record(None) == {Record.THREADS}  # torch 2.13 has profile_all_threads
    assert parse_record("stack,memory") == {Record.STACK, Record.MEMORY}
    with pytest.raises(ValueError, match="'memory' and 'threads' cannot be combined"):
        parse_record("memory,threads")


ASYNC = textwrap.dedent(
    """
    import torch
    import torch.distributed as dist

    import anyware.comm as comm

    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = torch.nn.Linear(64, 64)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    a = torch.randn(192, 192)
    for step in range(4):
        if rank == 1:  # rank 1 arrives late: rank 0's exchange is in flight while it computes
            for _ in range(12):
                a = torch.tanh(a @ a)
        send = torch.full((2 * 4096,), float(rank))
        recv = torch.empty_like(send)
        work = comm.all_to_all(recv, send, async_op=True)
        for _ in range(12):
            a = torch.tanh(a @ a)
        with torch.profiler.record_function("test.all_to_all_wait"):
            work.wait()
        assert recv[:4096].eq(0).all() and recv[4096:].eq(1).all()
        loss = model(torch.randn(8, 64)).square().mean()
        loss.backward()
        comm.all_reduce(model.weight.grad)
        opt.step()
        opt.zero_grad()
    comm.destroy()
    dist.destroy_process_group()
    """
)


@pytest.mark.distributed
def test_profiled_async_anyware_comm_is_communication(tmp_path: Path) -> None:
    script = tmp_path / "async_comm.py"
    script.write_text(ASYNC)
    out = tmp_path / "prof"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYWARE_")}
    argv = ["profile", "record", "--out", str(out), "--steps", "1:3", "--nproc", "2"]
    proc = subprocess.run(
        [sys.executable, "-m", "anyware.cli.main", *argv, "--", str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = analyze_path(out)
    assert [r.rank for r in report.ranks] == [0, 1]
    for r in report.ranks:
        names = {c.name: c for c in r.comm_ops}
        assert names["anyware.comm:alltoall async"].count == 2, names  # steps 1 and 2
        assert names["anyware.comm:allreduce"].count == 2
        assert r.whole.comm_us > 0
        # The wait span is kept as a host op, counted as (exposed) communication, and it is
        # not listed as a collective of its own.
        assert "test.all_to_all_wait" in r.totals and "test.all_to_all_wait" not in names
        assert host_bucket("test.all_to_all_wait") is Bucket.COMM
    # Rank 0's exchange waits for the late rank 1 while rank 0 computes on its main thread.
    first = {c.name: c for c in report.rank(0).comm_ops}["anyware.comm:alltoall async"]
    assert first.overlap_pct is not None and first.overlap_pct > 0


def test_summary_names_each_communication_and_its_overlap(tmp_path: Path) -> None:
    from rich.console import Console

    from anyware.cli.profile import render_summary

    async_comm_trace().write(tmp_path / "rank0.pt.trace.json")
    console = Console(record=True, width=200)
    render_summary(analyze_path(tmp_path), console)
    text = console.export_text()
    assert (
        "Communication: anyware.comm:alltoall async 1× 0.0 ms, 50% overlapped; "
        "anyware.comm:allreduce 1× 0.0 ms, 0% overlapped"
    ) in text


@pytest.mark.slow
@pytest.mark.distributed
def test_moe_example_profile_shows_its_all_to_alls(tmp_path: Path) -> None:
    """``anyware run --nproc 2 --profile`` of examples/moe/train.py: the token exchanges on
    anyware.comm's worker thread are in the profile, as communication."""
    example = Path(__file__).resolve().parents[2] / "examples" / "moe" / "train.py"
    out = tmp_path / "prof"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYWARE_")}
    argv = ["run", "--nproc", "2", "--profile", str(out), "--profile-steps", "2:4"]
    args = ["--steps", "4", "--layers", "2", "--eval-batches", "0", "--log-every", "100"]
    proc = subprocess.run(
        [sys.executable, "-m", "anyware.cli.main", *argv, str(example), *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = analyze_path(out)
    assert [r.rank for r in report.ranks] == [0, 1]
    for r in report.ranks:
        names = {c.name: c for c in r.comm_ops}
        # Per MoE layer and step, a dispatch and a combine run asynchronously.
        a2a = names["anyware.comm:alltoall async"]
        assert a2a.count % 2 == 0 and a2a.count >= 2 and a2a.total_us > 0, names
        assert "anyware.comm:alltoall" in names  # the synchronous count exchanges
        assert r.whole.comm_us > 0 and r.overlap_pct is not None
