"""Multi-process checks over gloo: every algorithm × collective × transport against
torch.distributed's own result, plus failure behaviour (mismatches, a missing rank, a rank
killed mid-collective) and the DDP hook / MoE / override features. Each test is one launch
running hundreds of checks (process start-up with torch costs ~2 s)."""

from __future__ import annotations

from pathlib import Path

import pytest
from tests.comm._launch import launch

pytestmark = pytest.mark.distributed


@pytest.mark.parametrize("world", [2, 3, 4])
@pytest.mark.timeout(150)
def test_every_algorithm_matches_torch_distributed(world: int, tmp_path: Path) -> None:
    results = launch("matrix", world, tmp_path, timeout=140)
    for rank, r in enumerate(results):
        assert "fails" in r, f"rank {rank} crashed: {r}"
        assert r["fails"] == [], (
            f"rank {rank}: {len(r['fails'])} mismatches, first: {r['fails'][:5]}"
        )
        assert r["checks"] > 500  # the matrix really ran


@pytest.mark.timeout(90)
def test_mismatch_and_missing_rank_are_named(tmp_path: Path) -> None:
    r0, r1 = launch("errors", 2, tmp_path, timeout=80)
    assert "error" not in r0 and "error" not in r1, (r0, r1)
    for t in ("shm", "p2p"):
        assert "element count 5 on rank 0 vs 7 on rank 1" in r1[f"{t}_shape"], r1
        assert "rank 1" in r0[f"{t}_shape"] and "element count" in r0[f"{t}_shape"], r0
        assert "dtype float64 on rank 1 vs float32 on rank 0" in r0[f"{t}_dtype"], r0
        assert r0[f"{t}_timeout"].startswith("rank=1 "), r0  # CommTimeoutError.rank
        assert "rank 1 never arrived" in r0[f"{t}_timeout"], r0
    assert "needs an integer or bool tensor" in r0["bitwise_float"]
    assert "did you mean 'ring'" in r0["unknown_algo"]
    assert "input_split_sizes [3, 3]" in r0["bad_splits"]


@pytest.mark.timeout(60)
def test_killed_rank_is_named_and_leaves_no_segment(tmp_path: Path) -> None:
    before = {p.name for p in Path("/dev/shm").glob("anyware-comm-*")}
    r0, r1 = launch("die", 2, tmp_path, timeout=50)
    assert r1.get("exit") == -9, r1  # rank 1 really died
    assert "rank 1" in r0["error"] and "died" in r0["error"], r0
    assert r0["leftover_after_setup"] == [] or set(r0["leftover_after_setup"]) <= before
    assert set(r0["leftover_after_death"]) <= before
    assert {p.name for p in Path("/dev/shm").glob("anyware-comm-*")} <= before


@pytest.mark.timeout(90)
def test_override_ddp_hook_and_moe(tmp_path: Path) -> None:
    results = launch(
        "features",
        2,
        tmp_path,
        timeout=80,
        env={"ANYWARE_COMM_ALGO": "allreduce:tree@<=1K,ring@>1K"},
    )
    for r in results:
        assert "error" not in r, r
        assert r["kind"] == "shm" and r["cost_source"] == "ping-pong"
        assert r["override"] == {"16": "double_binary_tree", "65536": "ring"}
        assert r["ddp_max_grad_diff"] < 1e-6
        assert r["moe_err"] is None
        assert r["loaded_cost"] is True
        assert r["exact_framing"] == []
    assert sum(r["moe_rows"] for r in results) == sum(2 * (7 + k) for k in range(2))


@pytest.mark.parametrize("world", [2, pytest.param(3, marks=pytest.mark.slow)])
@pytest.mark.timeout(120)
def test_shm_fast_path_matches_the_general_loop_bit_for_bit(world: int, tmp_path: Path) -> None:
    results = launch("fastpath", world, tmp_path, timeout=110)
    for rank, r in enumerate(results):
        assert "fails" in r, f"rank {rank} crashed: {r}"
        assert r["fails"] == [], f"rank {rank}: {r['fails'][:5]}"
        assert r["checks"] > 300
