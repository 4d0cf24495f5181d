"""The injected-fault suite: each fault sits in one op of one module (or the optimizer); the
diff must name that op, module and phase first (top-1), at op level."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from trace_workloads import train

import anyware.trace as tr

# (model, fault, expected phase, module, op, train kwargs)
FAULTS = [
    ("gpt", "scale", "forward", "blocks.1.attn", "aten.mul", {}),
    ("gpt", "softmax_dim", "forward", "blocks.1.attn", "aten._softmax", {}),
    ("gpt", "missing_scale", "forward", "blocks.1.attn", "aten.mul", {}),
    ("mlp", "lower_dtype", "forward", "layers.2", "aten._to_copy", {}),
    ("cnn", "fp8_matmul", "forward", "fc", "aten._to_copy", {}),
    ("cnn", "nan", "forward", "act1", "aten.pow", {}),
    (
        "mlp",
        "fp16_overflow",
        "forward",
        "norm",
        "aten.pow",
        {"dtype": torch.float16, "scale": 3000.0},
    ),
    ("moe", "backward_bug", "backward", "experts.2", "aten.mul", {}),
    ("mlp", "optimizer_bug", "optimizer", "layers.1", "aten.add_", {}),
]


@pytest.mark.parametrize(
    ("model", "fault", "phase", "module", "op", "kw"), FAULTS, ids=[f[1] for f in FAULTS]
)
def test_fault_is_located_top1(
    tmp_path: Path, model: str, fault: str, phase: str, module: str, op: str, kw: dict
) -> None:
    train(tmp_path / "a", model, **kw)
    train(tmp_path / "b", model, fault, **kw)
    res = tr.diff(tmp_path / "a", tmp_path / "b")
    fd = res.first_divergence
    assert fd is not None, (
        f"{fault}: no divergence found ({res.divergent} records beyond tolerance)"
    )
    got = (fd["phase"], fd["module"], fd["op"], fd["step"], fd["rank"])
    assert got == (phase, module, op, 0, 0), f"{fault}: located at {got}, metrics {fd['metrics']}"
    assert fd["location"].rsplit(":", 1)[-1].isdigit(), fd["location"]
    if fault in ("nan", "fp16_overflow"):
        nf = res.nonfinite["b"]
        assert nf is not None and (nf["module"], nf["op"]) == (module, op), nf
        assert res.nonfinite["a"] is None


def test_missing_op_is_reported_as_missing(tmp_path: Path) -> None:
    train(tmp_path / "a", "gpt")
    train(tmp_path / "b", "gpt", "missing_scale")
    fd = tr.diff(tmp_path / "a", tmp_path / "b").first_divergence
    assert fd is not None and fd["metrics"]["kind"] == "missing_op"
    assert fd["location"].endswith("gpt.py:70")  # the `* self.scale` line in run A


@pytest.mark.parametrize("level", ["module", "mix"])
def test_module_level_names_the_module(tmp_path: Path, level: str) -> None:
    train(tmp_path / "a", "gpt", level=level)
    train(tmp_path / "b", "gpt", "softmax_dim", level=level)
    fd = tr.diff(tmp_path / "a", tmp_path / "b").first_divergence
    assert fd is not None
    assert (fd["phase"], fd["module"]) == ("forward", "blocks.1.attn"), fd


def test_backward_bug_at_module_level(tmp_path: Path) -> None:
    train(tmp_path / "a", "moe", level="module")
    train(tmp_path / "b", "moe", "backward_bug", level="module")
    fd = tr.diff(tmp_path / "a", tmp_path / "b").first_divergence
    assert fd is not None and fd["phase"] == "backward" and fd["module"] == "experts.2", fd


def test_reduction_order_control_reports_nothing(tmp_path: Path) -> None:
    a = train(tmp_path / "a", "mlp")
    b = train(tmp_path / "b", "mlp", "split_k")
    assert not torch.equal(a["loss"], b["loss"]) or any(not torch.equal(a[k], b[k]) for k in a), (
        "the control must differ in rounding, or it tests nothing"
    )
    res = tr.diff(tmp_path / "a", tmp_path / "b")
    assert res.first_divergence is None, res.first_divergence


@pytest.mark.parametrize("level", ["op", "module"])
def test_bf16_control_reports_nothing_when_calibrated(tmp_path: Path, level: str) -> None:
    train(tmp_path / "fp32", "gpt", level=level)
    train(tmp_path / "bf16", "gpt", level=level, autocast=True)
    train(tmp_path / "fp64", "gpt", level=level, dtype=torch.float64)
    res = tr.diff(
        tmp_path / "fp32", tmp_path / "bf16", calibrate=(tmp_path / "fp32", tmp_path / "fp64")
    )
    assert res.precision_change
    assert res.first_divergence is None, res.first_divergence
    # ... while the same calibration still finds a real fault in the bf16 run
    train(tmp_path / "bad", "gpt", "softmax_dim", level=level, autocast=True)
    bad = tr.diff(
        tmp_path / "fp32", tmp_path / "bad", calibrate=(tmp_path / "fp32", tmp_path / "fp64")
    )
    assert bad.first_divergence is not None
    assert bad.first_divergence["module"] == "blocks.1.attn", bad.first_divergence
