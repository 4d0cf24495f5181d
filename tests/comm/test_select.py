"""Algorithm choice: ANYWARE_COMM_ALGO parsing and the α-β cost model's decisions."""

from __future__ import annotations

from pathlib import Path

import pytest

from anyware.comm.algorithms import Args, Collective, Links, get
from anyware.comm.select import CostModel, choose, parse_overrides, parse_size


def test_parse_size() -> None:
    assert parse_size("64K") == 65536 and parse_size("1M") == 1 << 20 and parse_size("12") == 12
    assert parse_size("1.5k") == 1536 and parse_size("2MiB") == 2 << 20
    with pytest.raises(ValueError, match="cannot read size"):
        parse_size("lots")


def test_overrides_pick_by_size() -> None:
    rules = parse_overrides("allreduce:tree@<=1M,ring@>1M; alltoall:bruck")
    args = Args(rank=0, world=4, count=10)
    model = CostModel(links=Links(alpha_intra=1e-5, beta_intra=1e-9))
    assert choose(Collective.ALLREDUCE, args, 1 << 20, model, rules).name == "double_binary_tree"
    assert choose(Collective.ALLREDUCE, args, (1 << 20) + 1, model, rules).name == "ring"
    a2a = Args(rank=0, world=4, send_counts=(2,) * 4, recv_counts=(2,) * 4)
    assert choose(Collective.ALLTOALL, a2a, 32, model, rules).name == "bruck"
    # an override that cannot run these arguments falls back to the model
    uneven = Args(rank=0, world=4, send_counts=(1, 2, 3, 4), recv_counts=(1, 1, 1, 1))
    assert choose(Collective.ALLTOALL, uneven, 32, model, rules).name == "pairwise"


@pytest.mark.parametrize(
    ("text", "match"),
    [
        ("allreduce", "lacks 'op:'"),
        ("allreduce:rign", "did you mean 'ring'"),
        ("alreduce:ring", "did you mean 'allreduce'"),
        ("allreduce:ring@~1M", "cannot read condition"),
    ],
)
def test_bad_overrides_say_what_is_wrong(text: str, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        parse_overrides(text)


def test_model_prefers_few_rounds_small_and_bandwidth_large() -> None:
    model = CostModel(links=Links(alpha_intra=20e-6, beta_intra=1 / 2e9, gamma=1 / 5e9))
    small = model.choose(Collective.ALLREDUCE, Args(rank=0, world=8, count=256), 1024).name
    large = model.choose(Collective.ALLREDUCE, Args(rank=0, world=8, count=1 << 22), 16 << 20).name
    assert small == "recursive_doubling"
    assert large in ("ring", "halving_doubling", "hierarchical", "double_binary_tree")
    a2a = Args(rank=0, world=8, send_counts=(1 << 20,) * 8, recv_counts=(1 << 20,) * 8)
    assert model.choose(Collective.ALLTOALL, a2a, 32 << 20).name == "pairwise"


def test_cost_model_round_trips_through_a_file(tmp_path: Path) -> None:
    m = CostModel(links=Links(alpha_intra=3e-6, beta_intra=2e-10, ranks_per_host=4, gamma=1e-10))
    m.save(tmp_path / "cost.json")
    back = CostModel.load(tmp_path / "cost.json")
    assert back.links == m.links and back.source.endswith("cost.json")
    (tmp_path / "bad.json").write_text("{}")
    with pytest.raises(ValueError, match="cannot read the comm cost model"):
        CostModel.load(tmp_path / "bad.json")


def test_hierarchical_refuses_uneven_hosts() -> None:
    reason = get("allreduce", "hierarchical").unsupported(
        Args(rank=0, world=6, count=4, ranks_per_host=4)
    )
    assert reason is not None and "divisible" in reason


def test_simulator_and_selection_do_not_import_torch() -> None:
    """`anyware comm simulate` answers in well under a second because it never loads torch."""
    import subprocess
    import sys

    code = (
        "import sys, anyware.comm, anyware.comm.simulate, anyware.comm.select, anyware.cli.comm;"
        "print('torch' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr
