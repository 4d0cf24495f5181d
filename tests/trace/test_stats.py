"""Per-tensor statistics: the CPU fast path (host_stats) against the device path
(tensor_stats), and the identity map the recorder keys its caches with."""

from __future__ import annotations

import gc
import math

import pytest
import torch

from anyware.trace.stats import Pending, tensor_stats
from anyware.trace.tensormap import TensorMap

CASES = {
    "fp32": lambda: torch.randn(1000),
    "strided": lambda: torch.randn(37, 5).t(),
    "odd_length": lambda: torch.randn(13),
    "shorter_than_sketch": lambda: torch.randn(3),
    "nan_and_inf": lambda: torch.tensor([1.0, float("-inf"), 2.0, float("nan"), 4.0] * 4),
    "inf_only": lambda: torch.tensor([1.0, float("inf"), -3.0] * 5),
    "bf16": lambda: torch.randn(64, dtype=torch.bfloat16),
    "fp64": lambda: torch.randn(40, dtype=torch.float64),
    "int": lambda: torch.arange(10),
    "bool": lambda: torch.randn(9) > 0,
    "empty": lambda: torch.zeros(0),
}


def _row(t: torch.Tensor) -> tuple[object, ...]:
    return (
        0,
        0,
        "forward",
        "m",
        "op",
        0,
        "out0",
        "out",
        0,
        "k",
        "float32",
        "1",
        t.numel(),
        [],
        "",
        "op",
    )


def _same(x: object, y: object) -> bool:
    if isinstance(x, list) and isinstance(y, list):
        return all(_same(u, v) for u, v in zip(x, y, strict=True))
    if isinstance(x, float) and isinstance(y, float):
        return (math.isnan(x) and math.isnan(y)) or math.isclose(x, y, rel_tol=1e-5, abs_tol=1e-5)
    return x == y


@pytest.mark.parametrize("name", sorted(CASES))
def test_cpu_statistics_equal_the_device_path(name: str) -> None:
    torch.manual_seed(0)
    t = CASES[name]()
    host = Pending()
    host.add(_row(t), t)  # cpu tensor: measured at once on the host
    dev = Pending()
    floats, ints = (
        tensor_stats(t) if t.numel() else (torch.zeros(13), torch.zeros((), dtype=torch.int64))
    )
    dev.rows.append(_row(t))
    dev.stats.append(0)
    dev.floats.append(floats)
    dev.ints.append(ints)
    a, b = host.flush(), dev.flush()
    for col in ("min", "max", "mean", "l2", "nan", "inf", "checksum", "sketch"):
        assert _same(a[col][0], b[col][0]), (name, col, a[col][0], b[col][0])


def test_copy_rows_share_their_source_statistics() -> None:
    p = Pending()
    t = torch.randn(100)
    i = p.add(_row(t), t)
    p.add_copy(_row(t), i)
    cols = p.flush()
    assert cols["l2"][0] == cols["l2"][1] == pytest.approx(float(t.norm()), rel=1e-5)
    assert p.flush() == {}


def test_tensor_map_is_by_identity_and_forgets_dead_tensors() -> None:
    m = TensorMap()
    a, b = torch.ones(2), torch.ones(2)  # equal values, different tensors
    m[a] = 1
    assert m.get(a) == 1 and m.get(b) is None and a in m and b not in m
    m[b] = 2
    assert m.pop(a) == 1 and a not in m and m.get(b) == 2
    for _ in range(5000):  # sweeps drop the dead entries; the live one survives every sweep
        m[torch.zeros(1)] = 0
    gc.collect()
    m.sweep()
    assert len(m) == 1 and m.get(b) == 2
