"""``anyware comm``: the simulate/list views and their --json twins, the bench JSON contract,
and one-line errors for bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest


def cli(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYWARE_")}
    return subprocess.run(
        [sys.executable, "-m", "anyware.cli.main", "comm", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=timeout,
    )


def one_line_error(proc: subprocess.CompletedProcess[str], needle: str) -> None:
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("anyware: error: ") and needle in lines[0], (
        proc.stderr
    )


def test_simulate_json_has_every_algorithm() -> None:
    proc = cli(
        "simulate", "--ranks", "16384", "--ranks-per-host", "8", "--sizes", "1K,16M", "--json", "-"
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["ranks"] == 16384 and out["seconds"] < 5
    algos = {(r["op"], r["algo"]) for r in out["results"]}
    assert ("allreduce", "double_binary_tree") in algos and ("alltoall", "bruck") in algos
    for r in out["results"]:
        assert r["time_s"] > 0 and r["busbw_gbps"] >= 0


def test_simulate_table_and_errors(tmp_path: Path) -> None:
    proc = cli(
        "simulate",
        "--ranks",
        "64",
        "--ranks-per-host",
        "8",
        "--sizes",
        "64K",
        "--json",
        str(tmp_path / "s.json"),
    )
    assert proc.returncode == 0 and "★" in proc.stdout
    assert json.loads((tmp_path / "s.json").read_text())["ranks"] == 64
    one_line_error(
        cli("simulate", "--ranks", "10", "--ranks-per-host", "4"), "must divide ranks=10"
    )
    one_line_error(cli("simulate", "--ops", "allredcue"), "unknown collective")
    one_line_error(cli("simulate", "--sizes", "big"), "--sizes")
    one_line_error(cli("simulate", "--overhead", "-3"), "call_overhead must be >= 0")


def test_list_json() -> None:
    proc = cli("list", "--json")
    data = json.loads(proc.stdout)
    assert set(data["allreduce"]) == {
        "ring",
        "double_binary_tree",
        "halving_doubling",
        "recursive_doubling",
        "hierarchical",
    }
    assert set(data["alltoall"]) == {"pairwise", "bruck", "hierarchical"}


def test_bench_rejects_bad_input() -> None:
    one_line_error(cli("bench", "--ops", "allreduse"), "unknown op")
    one_line_error(cli("bench", "--transports", "rdma"), "unknown transport")
    one_line_error(cli("bench", "--nproc", "1"), "--nproc")


@pytest.mark.distributed
@pytest.mark.slow
@pytest.mark.timeout(120)
def test_bench_json_contract(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = cli(
        "bench",
        "--sizes",
        "1K",
        "--ops",
        "allreduce,alltoall",
        "--algos",
        "auto,ring,pairwise",
        "--json",
        str(out),
        timeout=110,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    data = json.loads(out.read_text())
    assert data["world_size"] == 2
    keys = {"op", "algo", "transport", "bytes", "time_s", "busbw_gbps", "gloo_time_s", "ratio"}
    assert data["results"] and all(keys <= set(r) for r in data["results"])
    seen = {(r["op"], r["transport"], r["algo"].split(":")[0]) for r in data["results"]}
    assert ("allreduce", "shm", "ring") in seen and ("alltoall", "p2p", "pairwise") in seen
    assert ("allreduce", "shm", "auto") in seen
    for r in data["results"]:
        assert r["time_s"] > 0 and r["gloo_time_s"] > 0
        assert abs(r["ratio"] - r["time_s"] / r["gloo_time_s"]) < 1e-9
    assert "allreduce, 2 ranks" in proc.stdout  # the table was printed too
