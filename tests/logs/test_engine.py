"""The cluster layer: the same map and merge on a real Dask cluster give the same report."""

from __future__ import annotations

import dataclasses
import difflib
import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from anyware.logs.analyze import analyze
from anyware.logs.engine import Engine, EngineError, EngineKind, scan_at
from anyware.logs.ingest import discover
from anyware.logs.scan import scan_source


def _report(d: dict[str, Any]) -> str:
    """The JSON report without its only timing field, as bytes would be written."""
    return json.dumps({k: v for k, v in d.items() if k != "seconds"}, indent=2)


def _same(a: dict[str, Any], b: dict[str, Any]) -> None:
    ra, rb = _report(a), _report(b)
    diff = difflib.unified_diff(ra.splitlines(), rb.splitlines(), "local", "engine", n=3)
    assert ra == rb, "\n".join(list(diff)[:60])


def _cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYWARE_")}
    return subprocess.run(
        [sys.executable, "-m", "anyware.cli.main", "logs", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd,
        timeout=180,
    )


@pytest.fixture(scope="module")
def scheduler() -> Iterator[str]:
    """A real two-process Dask cluster on this machine, shared by the tests of this module."""
    import logging

    from distributed import LocalCluster

    with LocalCluster(
        n_workers=2,
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    ) as cluster:
        yield str(cluster.scheduler_address)


@pytest.mark.parametrize(
    ("spec", "kind", "address"),
    [
        ("local", EngineKind.LOCAL, None),
        ("dask", EngineKind.DASK, None),
        ("DASK:tcp://head:8786", EngineKind.DASK, "tcp://head:8786"),
        ("dask:10.0.0.5:8786", EngineKind.DASK, "10.0.0.5:8786"),
    ],
)
def test_engine_spec(spec: str, kind: EngineKind, address: str | None) -> None:
    e = Engine.parse(spec, workers=3)
    assert (e.kind, e.address, e.workers) == (kind, address, 3)


@pytest.mark.parametrize(
    ("spec", "words"),
    [
        ("dsak", "did you mean 'dask'"),
        ("ray", "choose local, dask"),
        ("dask:", "names no scheduler"),
        ("local:tcp://x:1", "takes no address"),
    ],
)
def test_bad_engine_spec_names_it(spec: str, words: str) -> None:
    with pytest.raises(EngineError, match=words):
        Engine.parse(spec)


def test_scan_at_reports_the_path_as_written(
    corpus: ModuleType, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    corpus.generate(tmp_path / "logs", failure="xid", ranks=4, seed=3)
    monkeypatch.chdir(tmp_path)
    src = max(discover(["logs"]), key=lambda s: len(scan_source(s).findings))
    here = scan_source(src)
    there = scan_at(dataclasses.replace(src, path=src.path.absolute()), str(src.path))
    assert here == there
    assert there.findings and all(f.file == str(src.path) for f in there.findings)


def test_file_missing_on_a_worker_is_reported(tmp_path: Path) -> None:
    (tmp_path / "rank3.log").write_text("step 1 loss 2.0\n")
    src = discover([tmp_path / "rank3.log"])[0]
    gone = dataclasses.replace(src, path=tmp_path / "elsewhere" / "rank3.log")
    scan = scan_at(gone, "rank3.log")
    assert (scan.file, scan.rank, scan.lines) == ("rank3.log", 3, 0)
    assert len(scan.errors) == 1 and "workers must see the log files" in scan.errors[0]


def test_scheduler_without_workers_is_a_clear_error(tmp_path: Path) -> None:
    from distributed import LocalCluster

    (tmp_path / "rank0.log").write_text("step 1 loss 2.0\n")
    with LocalCluster(n_workers=0, processes=False, dashboard_address=None) as empty:
        eng = Engine.parse(f"dask:{empty.scheduler_address}", connect_timeout=0.5)
        with pytest.raises(EngineError, match=r"has no workers after 0\.5 s"):
            analyze([tmp_path], engine=eng)


@pytest.mark.parametrize(("failure", "layout"), [("device_oom", "per-rank"), ("hang", "mixed")])
def test_dask_cluster_report_is_byte_identical(
    corpus: ModuleType,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    scheduler: str,
    failure: str,
    layout: str,
) -> None:
    truth = corpus.generate(
        tmp_path / "logs", failure=failure, ranks=24, seed=7, layout=layout, gzip_some=True
    )
    # Relative inputs: the workers get absolute paths, the report keeps the ones written here.
    monkeypatch.chdir(tmp_path)
    local = analyze(["logs"])
    seen: list[int] = []
    remote = analyze(["logs"], engine=Engine.parse(f"dask:{scheduler}"), on_bytes=seen.append)
    assert (remote.root_cause.rank, str(remote.root_cause.category)) == (truth.rank, failure)
    _same(local.to_dict(), remote.to_dict())
    # Progress counts files as they finish, in on-disk bytes (what ``on_total`` announced).
    assert sum(seen) == sum(s.size for s in discover(["logs"]))
    assert remote.bytes == truth.bytes


def test_cli_dask_local_cluster_matches_local(corpus: ModuleType, tmp_path: Path) -> None:
    truth = corpus.generate(tmp_path / "logs", failure="network", ranks=16, seed=5)
    local = _cli("analyze", "logs", "--json", "local.json", cwd=tmp_path)
    assert local.returncode == 0, local.stderr
    # --engine dask with no address: the command starts (and stops) its own 2-process cluster.
    remote = _cli("analyze", "logs", "--engine", "dask", "--json", "dask.json", cwd=tmp_path)
    assert remote.returncode == 0, remote.stderr
    assert "Traceback" not in remote.stderr
    a = json.loads((tmp_path / "local.json").read_text())
    b = json.loads((tmp_path / "dask.json").read_text())
    assert (b["root_cause"]["rank"], b["root_cause"]["category"]) == (truth.rank, "network")
    _same(a, b)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_unreachable_scheduler_is_one_line_error(tmp_path: Path) -> None:
    (tmp_path / "rank0.log").write_text("step 1 loss 2.0\n")
    addr = f"tcp://127.0.0.1:{_closed_port()}"
    proc = _cli(
        "analyze",
        str(tmp_path),
        "--engine",
        f"dask:{addr}",
        "--connect-timeout",
        "1",
        "--json",
        "-",
    )
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert proc.stderr.strip().count("\n") == 0, proc.stderr
    assert f"cannot reach the Dask scheduler at '{addr}'" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (("--engine", "spark"), "unknown engine 'spark'"),
        (("--engine", "dask", "--connect-timeout", "0"), "--connect-timeout) must be > 0 s"),
    ],
)
def test_bad_engine_on_the_command_line(tmp_path: Path, args: tuple[str, ...], words: str) -> None:
    (tmp_path / "rank0.log").write_text("step 1 loss 2.0\n")
    proc = _cli("analyze", str(tmp_path), *args)
    assert proc.returncode == 2
    assert words in proc.stderr and "Traceback" not in proc.stderr
