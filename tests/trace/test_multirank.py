"""Two gloo ranks, one file each: the diff names the rank (and step, op) that diverged first."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

import anyware.trace as tr

WORKER = Path(__file__).with_name("dp_worker.py")


def _launch(out: Path, bad_rank: int, world: int = 2) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank in range(world):
        env = dict(
            os.environ,
            RANK=str(rank),
            WORLD_SIZE=str(world),
            MASTER_ADDR="127.0.0.1",
            MASTER_PORT=str(port),
        )
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), str(out), str(bad_rank)],
                env=env,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
        )
    try:
        for p in procs:
            output, _ = p.communicate(timeout=180)
            assert p.returncode == 0, output
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.distributed
@pytest.mark.slow  # four interpreter starts: ~15 s idle, far more on a loaded machine
def test_first_diverging_rank_is_named(tmp_path: Path) -> None:
    _launch(tmp_path / "a", bad_rank=-1)
    _launch(tmp_path / "b", bad_rank=1)
    assert sorted(p.name for p in (tmp_path / "b").glob("rank*.parquet")) == [
        "rank0.parquet",
        "rank1.parquet",
    ]
    res = tr.diff(tmp_path / "a", tmp_path / "b")
    fd = res.first_divergence
    assert fd is not None
    assert (fd["rank"], fd["step"], fd["module"], fd["op"]) == (
        1,
        0,
        "layers.2",
        "aten._to_copy",
    ), fd
    assert res.ranks == [0, 1]
    # rank 0 diverges too, but only after the all-reduce brought rank 1's gradients over
    assert res.divergent > 0
