"""Recording: numerics unchanged, every phase seen, ops however spelled, files well formed."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch
import torch.nn.functional as F
from torch import nn, relu
from trace_workloads import train

import anyware.trace as tr
from anyware.trace.load import load_run


@pytest.mark.parametrize("level", ["module", "op", "mix"])
@pytest.mark.parametrize("model", ["gpt", "moe"])
def test_numerics_are_bit_identical_with_the_tracer_on(
    tmp_path: Path, level: str, model: str
) -> None:
    plain = train(None, model, steps=2)
    traced = train(tmp_path / level, model, level=level, steps=2)
    assert plain.keys() == traced.keys()
    for k in plain:
        assert torch.equal(plain[k], traced[k]), f"{k} changed with the {level} tracer on"


def test_autocast_numerics_are_bit_identical(tmp_path: Path) -> None:
    plain = train(None, "gpt", autocast=True)
    traced = train(tmp_path / "t", "gpt", level="mix", autocast=True)
    for k in plain:
        assert torch.equal(plain[k], traced[k]), k


class InPlace(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.lin(x)
        h.relu_()  # in place: module hooks never see this
        return relu(h) + F.silu(h)  # `from torch import relu`


def test_op_level_sees_in_place_and_bare_functions_forward_and_backward(tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = InPlace()
    opt = torch.optim.SGD(m.parameters(), lr=0.1)
    with tr.record(tmp_path, "op"):
        m(torch.randn(3, 4)).sum().backward()
        opt.step()
    df = load_run(tmp_path).frame
    fwd = set(df.filter(pl.col("phase") == "forward")["op"].to_list())
    assert {"aten.relu_", "aten.relu", "aten.silu", "aten.addmm"} <= fwd
    bwd = df.filter(pl.col("phase") == "backward")
    assert "aten.silu_backward" in set(bwd["op"].to_list())
    # backward ops are attributed to the module that created their autograd node
    assert "lin" in set(bwd.filter(pl.col("op") == "aten.mm")["module"].to_list())
    assert df.filter(pl.col("phase") == "optimizer").height > 0
    assert df["location"].str.contains("test_record.py").any()


def test_module_level_records_gradients_and_updates(tmp_path: Path) -> None:
    train(tmp_path, "mlp", level="module", steps=2)
    df = load_run(tmp_path).frame
    assert sorted(df["step"].unique().to_list()) == [0, 1]
    slots = set(df["slot"].to_list())
    assert {
        "in0",
        "out0",
        "grad_out0",
        "grad_in0",
        "weight",
        "update:weight",
        "param:weight",
    } <= slots
    keys = df["key"].to_list()
    assert len(keys) == len(set(keys)), "keys must be unique"
    row = df.filter(pl.col("key") == "0/forward/layers.0/Linear#0/out0").row(0, named=True)
    assert row["dtype"] == "float32" and row["shape"] == "8x32" and row["numel"] == 256
    assert row["min"] <= row["mean"] <= row["max"] and row["l2"] > 0 and row["nan"] == 0


def test_stats_match_the_tensor(tmp_path: Path) -> None:
    x = torch.tensor([[1.0, -2.0, float("nan")], [float("inf"), 0.5, 3.0]])
    lin = nn.Identity()
    with tr.record(tmp_path, "module"):
        lin(x)
    row = load_run(tmp_path).frame.filter(pl.col("slot") == "out0").row(0, named=True)
    # a tensor holding both a NaN and an Inf counts its non-finite values as NaN
    assert (row["nan"], row["inf"]) == (2, 0)
    finite = torch.tensor([1.0, -2.0, 0.5, 3.0])
    assert row["l2"] == pytest.approx(float(finite.norm()), rel=1e-6)
    assert row["mean"] == pytest.approx(float(finite.sum()) / 6, rel=1e-6)
    assert (row["min"], row["max"]) != (row["min"], row["min"])  # NaN min/max: NaN present


def test_inf_only_tensor_counts_infs(tmp_path: Path) -> None:
    x = torch.tensor([1.0, float("inf"), -float("inf"), 2.0])
    with tr.record(tmp_path, "module"):
        nn.Identity()(x)
    row = load_run(tmp_path).frame.filter(pl.col("slot") == "out0").row(0, named=True)
    assert (row["nan"], row["inf"], row["min"], row["max"]) == (0, 2, -float("inf"), float("inf"))


def test_same_program_twice_is_bit_identical_in_the_trace(tmp_path: Path) -> None:
    train(tmp_path / "a", "gpt", level="mix")
    train(tmp_path / "b", "gpt", level="mix")
    res = tr.diff(tmp_path / "a", tmp_path / "b")
    assert res.first_divergence is None and res.divergent == 0 and res.unmatched == 0
    assert res.compared > 100


def test_full_tensors_for_a_filtered_subset(tmp_path: Path) -> None:
    torch.manual_seed(0)
    m = nn.Sequential(nn.Linear(4, 4), nn.Linear(4, 2))
    with tr.record(tmp_path, "module", tensors="1"):
        m(torch.randn(2, 4))
    run = load_run(tmp_path)
    saved = run.tensors(0)
    assert saved and all(k.split("/")[2] == "1" for k in saved)


def test_nested_recording_is_refused(tmp_path: Path) -> None:
    with (
        tr.record(tmp_path / "a"),
        pytest.raises(RuntimeError, match="already active"),
        tr.record(tmp_path / "b"),
    ):
        pass


def test_bad_level_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="module, op, mix"), tr.record(tmp_path, "kernel"):
        pass


def test_uninitialised_memory_is_never_measured(tmp_path: Path) -> None:
    """empty() holds garbage and initialisers overwrite it: neither is an input to compare."""
    with tr.record(tmp_path / "t", "op"):
        w = torch.empty(64, 64)
        torch.nn.init.uniform_(w)
        buf = torch.empty(64)
        buf.copy_(w.sum(0))
        (buf * 2).sum()
    df = load_run(tmp_path / "t").frame
    assert df.filter(pl.col("op").str.starts_with("aten.empty")).height == 0
    overwritten = df.filter(
        pl.col("op").is_in(["aten.uniform_", "aten.copy_"]) & (pl.col("slot") == "in0")
    )
    assert overwritten.height == 0
    assert df.filter(pl.col("op") == "aten.uniform_").height > 0  # the written values are measured
