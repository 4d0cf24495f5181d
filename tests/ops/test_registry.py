"""Selection order, fallbacks and errors of the op registry."""

from __future__ import annotations

import logging

import pytest
import torch

from anyware import ops, runtime
from anyware.ops import _registry


def test_every_op_has_reference_and_triton() -> None:
    names = ops.op_names()
    for expected in (
        "matmul",
        "rms_norm",
        "rope",
        "swiglu",
        "cross_entropy",
        "flash_attention",
        "embedding_bag",
        "hadamard",
    ):
        assert expected in names
    for name in names:
        spec = ops.get_op(name)
        assert spec.impls[0] is ops.Impl.REFERENCE
        assert callable(getattr(ops, name)) and callable(getattr(ops, f"{name}_reference"))


def test_cpu_default_is_reference() -> None:
    choice = ops.choose("rms_norm")
    assert choice.impl is ops.Impl.REFERENCE and "cpu" in choice.reason


def test_env_beats_default_and_explicit_beats_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYWARE_OPS_IMPL", "triton")
    assert ops.choose("swiglu").impl is ops.Impl.TRITON
    assert ops.choose("swiglu", "reference").impl is ops.Impl.REFERENCE
    x = torch.randn(5)
    before = _registry.CALLS[("swiglu", "triton")]
    ops.swiglu(x, x)  # env says triton and the interpreter is on: the kernel runs
    assert _registry.CALLS[("swiglu", "triton")] == before + 1


def test_fake_backend_with_triton_defaults_to_triton(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYWARE_FAKE_DEVICES", '{"count": 1, "triton": true}')
    runtime.set_current("fake")
    assert ops.choose("matmul").impl is ops.Impl.TRITON


def test_bad_names_suggest() -> None:
    with pytest.raises(KeyError, match="Did you mean 'rms_norm'"):
        ops.get_op("rms_nrom")
    with pytest.raises(ValueError, match="Did you mean 'triton'"):
        ops.swiglu(torch.ones(2), torch.ones(2), impl="trition")


def test_bad_env_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANYWARE_OPS_IMPL", "fast")
    with pytest.raises(ValueError, match="ANYWARE_OPS_IMPL"):
        ops.choose("matmul")


def test_auto_fallback_logs_once_explicit_raises(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    # bf16 on cpu tensors cannot be computed by the interpreter: auto falls back, explicit raises
    monkeypatch.setenv("ANYWARE_OPS_IMPL", "triton")
    monkeypatch.setattr(_registry, "_logged", set())
    x = torch.randn(4, 8, dtype=torch.bfloat16)
    w = torch.ones(8, dtype=torch.bfloat16)
    with caplog.at_level(logging.WARNING, logger="anyware.ops"):
        for _ in range(3):
            y = ops.rms_norm(x, w)
    assert y.dtype == torch.bfloat16
    assert len([r for r in caplog.records if "rms_norm" in r.getMessage()]) == 1
    with pytest.raises(ops.ImplUnavailableError, match="bf16"):
        ops.rms_norm(x, w, impl="triton")


def test_no_interpreter_means_fallback(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_registry, "interpreted", lambda: False)
    monkeypatch.setattr(_registry, "_logged", set())
    monkeypatch.setenv("ANYWARE_OPS_IMPL", "triton")
    rows = {r["name"]: r for r in ops.describe()}
    assert rows["matmul"]["active"] == "reference"
    assert "TRITON_INTERPRET" in rows["matmul"]["reason"]
    with pytest.raises(ops.ImplUnavailableError, match="TRITON_INTERPRET"):
        ops.matmul(torch.ones(2, 2), torch.ones(2, 2), impl="triton")


def test_describe_shape() -> None:
    rows = ops.describe()
    assert [r["name"] for r in rows] == sorted(r["name"] for r in rows)
    for r in rows:
        assert set(r) >= {"name", "impls", "active", "reason"}
        assert r["active"] in r["impls"] and r["reason"]


def test_import_defers_triton() -> None:
    # Triton fixes interpreter-vs-compiler when it is imported: anyware.ops must not import it
    import subprocess
    import sys

    code = "import sys, anyware.ops; print('triton' in sys.modules)"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    assert out.stdout.strip() == "False"
