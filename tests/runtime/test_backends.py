from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import torch

from anyware import runtime
from anyware.runtime.protocol import DTYPE_NAMES, HostEvent

ACCELERATORS = ("cuda", "rocm", "xpu", "npu", "mlu", "mps")


def _has_accelerator(name: str) -> bool:
    return runtime.get_backend(name).probe().available


@pytest.mark.parametrize("name", ACCELERATORS)
def test_absent_accelerators_report_a_reason(name: str) -> None:
    backend = runtime.get_backend(name)
    status = backend.probe()
    if status.available:
        pytest.skip(f"{name} is present here; covered by device tests")
    assert status.reason  # never an empty "unavailable"
    assert backend.device_count() == 0
    assert not backend.triton_supported()


def test_cpu_only_torch_reasons_are_specific() -> None:
    if torch.version.cuda is not None or getattr(torch.version, "hip", None):
        pytest.skip("this torch has an accelerator build")
    assert "has no CUDA support" in runtime.get_backend("cuda").probe().reason
    assert "not a ROCm build" in runtime.get_backend("rocm").probe().reason


def test_probing_never_imports_absent_vendor_packages() -> None:
    code = (
        "import sys, anyware.runtime as r\n"
        "[b.probe() for b in r.all_backends()]\n"
        "print([m for m in ('torch_npu', 'torch_mlu') if m in sys.modules])\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize(
    ("name", "dist", "var"),
    [
        ("cuda", "nccl", "CUDA_VISIBLE_DEVICES"),
        ("rocm", "nccl", "HIP_VISIBLE_DEVICES"),
        ("xpu", "xccl", "ZE_AFFINITY_MASK"),
        ("npu", "hccl", "ASCEND_RT_VISIBLE_DEVICES"),
        ("mlu", "cncl", "MLU_VISIBLE_DEVICES"),
        ("mps", "gloo", None),
        ("cpu", "gloo", None),
    ],
)
def test_static_facts(name: str, dist: str, var: str | None) -> None:
    backend = runtime.get_backend(name)
    assert backend.dist_backend == dist
    assert backend.visible_devices_var == var


def test_rocm_and_cuda_share_the_torch_device_type_but_not_availability() -> None:
    cuda, rocm = runtime.get_backend("cuda"), runtime.get_backend("rocm")
    assert cuda.device_type == rocm.device_type == "cuda"
    assert not (cuda.probe().available and rocm.probe().available)


def test_cpu_backend_answers_everything() -> None:
    cpu = runtime.get_backend("cpu")
    assert cpu.probe().available and cpu.device_count() == 1
    assert cpu.device() == torch.device("cpu")
    cap = cpu.capability()
    assert {"fp64", "fp32", "fp16", "bf16"} <= cap.dtypes
    assert cap.dtypes <= set(DTYPE_NAMES)
    mem = cpu.memory_stats()
    assert mem.allocated is not None and mem.total is not None
    assert 0 < mem.allocated < mem.total
    assert mem.peak is not None and mem.peak >= mem.allocated * 0.5
    cpu.synchronize()
    mod = cpu.device_module()
    assert mod.is_available() and mod.device_count() == 1


def test_cpu_events_measure_wall_time() -> None:
    cpu = runtime.get_backend("cpu")
    start, end = cpu.new_event(), cpu.new_event()
    start.record()
    time.sleep(0.02)
    end.record()
    end.synchronize()
    assert end.query()
    ms = start.elapsed_time(end)
    assert 15.0 <= ms < 2000.0
    with pytest.raises(ValueError, match="recorded"):
        HostEvent().elapsed_time(HostEvent())
    with pytest.raises(ValueError, match="enable_timing"):
        HostEvent(enable_timing=False).elapsed_time(end)
    with cpu.new_stream() as s:
        s.wait_event(end)
        assert s.query()


def test_cpu_triton_support_follows_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = runtime.get_backend("cpu")
    monkeypatch.setenv("TRITON_INTERPRET", "0")
    assert not cpu.triton_supported()
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    try:
        import triton  # noqa: F401
    except ImportError:
        assert not cpu.triton_supported()
    else:
        assert cpu.triton_supported()


def test_fake_backend_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = runtime.get_backend("fake")
    assert fake.probe().available and fake.device_count() == 1
    assert not fake.capability().supports("fp64")  # a dtype gap to exercise by default
    assert fake.memory_stats().total == 16 * 2**30
    assert fake.device(0) == torch.device("cpu")
    with pytest.raises(ValueError, match="out of range"):
        fake.capability(1)


def test_fake_backend_table_from_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = runtime.get_backend("fake")
    monkeypatch.setenv("ANYWARE_FAKE_DEVICES", "4")
    assert fake.device_count() == 4
    table = {
        "count": 2,
        "name": "X1",
        "arch": "x1",
        "memory_total": 1024,
        "dtypes": ["fp64", "fp32"],
        "triton": True,
    }
    monkeypatch.setenv("ANYWARE_FAKE_DEVICES", json.dumps(table))
    cap = fake.capability(1)
    assert (cap.name, cap.arch, cap.dtypes, cap.triton) == (
        "X1",
        "x1",
        frozenset({"fp64", "fp32"}),
        True,
    )
    assert fake.memory_stats(1).total == 1024
    monkeypatch.setenv("ANYWARE_FAKE_DEVICES", "0")
    assert not fake.probe().available
    with pytest.raises(runtime.BackendUnavailableError, match="0 devices"):
        runtime.select("fake")


@pytest.mark.parametrize(
    ("raw", "match"),
    [
        ("{not json", "neither a count nor JSON"),
        ("[1, 2]", "must be a count or a JSON object"),
        ('{"count": 2, "colour": "red"}', "unknown key"),
        ('{"dtypes": ["fp128"]}', "unknown dtype"),
        ('{"count": -1}', "count must be >= 0"),
    ],
)
def test_fake_backend_rejects_bad_tables(
    monkeypatch: pytest.MonkeyPatch, raw: str, match: str
) -> None:
    monkeypatch.setenv("ANYWARE_FAKE_DEVICES", raw)
    with pytest.raises(ValueError, match=match):
        runtime.get_backend("fake").probe()


def test_accelerator_compat_api_on_cpu() -> None:
    from anyware.runtime import accelerator

    assert accelerator.current_accelerator() == torch.device("cpu")
    assert not accelerator.is_available()
    assert accelerator.device_count() == 1
    assert accelerator.current_device_index() == 0
    accelerator.set_device_index(0)
    accelerator.synchronize()
    with pytest.raises(ValueError, match="out of range"):
        accelerator.set_device_index(3)


@pytest.mark.device
@pytest.mark.skipif(
    not any(_has_accelerator(n) for n in ACCELERATORS), reason="needs an accelerator"
)
def test_accelerator_backend_round_trip() -> None:
    backend = runtime.current()
    x = torch.ones(1024, device=backend.device())
    start, end = backend.new_event(), backend.new_event()
    start.record()
    (x * 2).sum().item()
    end.record()
    backend.synchronize()
    assert start.elapsed_time(end) >= 0
    assert backend.memory_stats().allocated
