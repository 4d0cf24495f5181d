"""The copy sweep the fit takes to pin the per-copy-op cost: its schedule is k copies and no
message, every transport runs it, and the run reports one row per (copies, bytes)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from anyware.comm.schedule import Buf, run_local
from anyware.comm.simulate import Topology, stats
from anyware.comm.simulate.calibrate import SWEEP_COPIES, copy_schedule, copy_sweep
from anyware.comm.simulate.fit import COLUMNS, CopySweep


def test_copy_schedule_is_k_copies_and_no_message() -> None:
    s = copy_schedule(rank=1, world=2, copies=4, count=5)
    assert len(s.rounds) == 1 and s.messages == 0 and not s.rounds[0].recvs
    assert len(s.rounds[0].pre) == 4 and s.tmp_count == 20
    src = torch.arange(20.0)
    bufs = [{Buf.IN: torch.zeros(20), Buf.OUT: torch.empty(0)}, {Buf.IN: src, Buf.OUT: src[:0]}]
    run_local([copy_schedule(0, 2, 4, 5), s], bufs)
    assert torch.equal(bufs[1][Buf.TMP], src)  # every copy landed where the schedule says


def test_sweep_rows_price_copies_as_the_collectives_do() -> None:
    # k copies of m bytes: k copy ops and k·m copied bytes, working set 2·k·m — the same
    # columns a collective's copies fill (Bruck at 2 ranks: 6 copy ops).
    row = CopySweep(copies=4, bytes=1024, seconds=1e-5)
    f = row.features(cache_bytes=8192.0)
    g = 1 / (1 + (8192 / (2 * 4096)) ** 2)
    col = {c: f[i] for i, c in enumerate(COLUMNS)}
    assert col["copy_op"] == 4 and col["gamma_inner"] == 0 and col["beta"] == 0
    assert col["gamma"] == pytest.approx((1 - g) * 4096)
    assert col["gamma_large"] == pytest.approx(g * 4096)
    assert stats(Topology(ranks=2), "alltoall", "bruck").copies == 6
    with pytest.raises(ValueError, match="copies >= 1"):
        CopySweep(copies=0, bytes=8, seconds=1e-6)


@pytest.mark.distributed
@pytest.mark.timeout(120)
def test_copy_sweep_runs_on_both_transports(tmp_path: Path) -> None:
    got = copy_sweep(tmp_path / "sweep.json", sizes=(8, 4096), timeout_s=100)
    for t in ("shm", "p2p"):
        rows = got[t]
        assert [(r["copies"], r["bytes"]) for r in rows] == [
            (k, m) for m in (8, 4096) for k in SWEEP_COPIES
        ]
        assert all(r["time_min_s"] > 0 for r in rows)
