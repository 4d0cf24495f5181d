"""Benchmark cases for ``anyware ops bench`` and ``benchmarks/ops/bench_<op>.py``.

Each case builds its inputs on the current device, times the Triton path and the torch/aten
path that does the same job (the anchor), and reports TFLOP/s for compute-bound ops or GB/s
for memory-bound ones, with ``ratio = ours / aten`` measured in the same run.

Timing: warm up, then the median of ``reps`` runs, each bracketed by the backend's
synchronize. On cpu the Triton path runs only in the interpreter, which is a correctness tool:
its figures are reported as not applicable rather than timed.
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch
import torch.nn.functional as F

from anyware.ops._registry import triton_blocker


@dataclass(frozen=True, slots=True, kw_only=True)
class Case:
    """One measured configuration of one op."""

    op: str
    """Op name in the registry."""
    label: str
    """Shape and dtype, for the table."""
    ours: Callable[..., Any]
    """Runs anyware's op once; takes ``impl=`` ("triton" or "reference")."""
    aten: Callable[[], Any]
    """Runs the torch/aten equivalent once (the anchor)."""
    flops: float | None = None
    """Work per run in FLOPs (compute-bound ops)."""
    bytes: float | None = None
    """Memory traffic per run in bytes (memory-bound ops)."""

    def __post_init__(self) -> None:
        if (self.flops is None) == (self.bytes is None):
            raise ValueError(f"Case {self.op}/{self.label}: give exactly one of flops or bytes")


def time_ms(fn: Callable[[], Any], *, reps: int = 10, warmup: int = 2) -> float:
    """Median wall time of ``fn`` in milliseconds, synchronising the device around each run."""
    from anyware import runtime

    backend = runtime.current()
    for _ in range(warmup):
        fn()
    backend.synchronize()
    samples = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        backend.synchronize()
        samples.append((time.perf_counter() - t0) * 1e3)
    return statistics.median(samples)


def measure(case: Case, *, reps: int = 10) -> dict[str, Any]:
    """Time one case; the Triton side is ``None`` where Triton cannot run fast here."""
    device = torch.device(case_device())
    unit, work = ("TFLOP/s", case.flops) if case.flops is not None else ("GB/s", case.bytes)
    scale = 1e12 if unit == "TFLOP/s" else 1e9
    aten_ms = time_ms(case.aten, reps=reps)
    ref_ms = time_ms(partial(case.ours, impl="reference"), reps=reps)
    blocker = triton_blocker(device)
    if device.type == "cpu":  # the interpreter is for correctness; its timings mean nothing
        blocker = "not timed on cpu (Triton runs in its interpreter)"
    ours_ms = None if blocker else time_ms(partial(case.ours, impl="triton"), reps=reps)
    assert work is not None

    def rate(ms: float | None) -> float | None:
        return None if ms is None else work / (ms * 1e-3) / scale

    return {
        "op": case.op,
        "case": case.label,
        "unit": unit,
        "aten_ms": round(aten_ms, 4),
        "reference_ms": round(ref_ms, 4),
        "triton_ms": None if ours_ms is None else round(ours_ms, 4),
        "aten": rate(aten_ms),
        "reference": rate(ref_ms),
        "triton": rate(ours_ms),
        "ratio": None if ours_ms is None else aten_ms / ours_ms,
        "reference_ratio": aten_ms / ref_ms,
        "note": blocker or "",
    }


def case_device() -> str:
    from anyware import runtime

    return str(runtime.device())


# --- the cases ------------------------------------------------------------------------------
def _matmul(dev: str, dt: torch.dtype, small: bool) -> list[Case]:
    from anyware import ops

    out = []
    for n in (256,) if small else (4096, 8192):
        a = torch.randn(n, n, device=dev, dtype=dt)
        b = torch.randn(n, n, device=dev, dtype=dt)
        out.append(
            Case(op="matmul", label=f"{n}³ {dt}", ours=partial(ops.matmul, a, b),
                 aten=partial(torch.matmul, a, b), flops=2.0 * n**3)
        )  # fmt: skip
    return out


def _rms_norm(dev: str, dt: torch.dtype, small: bool) -> list[Case]:
    from anyware import ops

    m, n = (512, 1024) if small else (16384, 8192)
    x = torch.randn(m, n, device=dev, dtype=dt)
    w = torch.randn(n, device=dev, dtype=dt)
    return [Case(op="rms_norm", label=f"{m}×{n} {dt}", ours=lambda impl: ops.rms_norm(x, w, impl=impl),
                 aten=lambda: F.rms_norm(x, (n,), w, 1e-6), bytes=2.0 * x.numel() * x.element_size())]  # fmt: skip


def _swiglu(dev: str, dt: torch.dtype, small: bool) -> list[Case]:
    from anyware import ops

    n = 1 << (20 if small else 27)
    g = torch.randn(n, device=dev, dtype=dt)
    u = torch.randn(n, device=dev, dtype=dt)
    return [Case(op="swiglu", label=f"{n} {dt}", ours=lambda impl: ops.swiglu(g, u, impl=impl),
                 aten=lambda: F.silu(g) * u, bytes=3.0 * n * g.element_size())]  # fmt: skip


def _rope(dev: str, dt: torch.dtype, small: bool) -> list[Case]:
    from anyware import ops

    b, h, s, d = (2, 8, 256, 64) if small else (8, 32, 4096, 128)
    x = torch.randn(b, h, s, d, device=dev, dtype=dt)
    th = torch.arange(s, device=dev)[:, None] * torch.rand(d // 2, device=dev)[None]
    cos, sin = th.cos().to(dt), th.sin().to(dt)
    return [Case(op="rope", label=f"{b}×{h}×{s}×{d} {dt}", ours=lambda impl: ops.rope(x, cos, sin, impl=impl),
                 aten=lambda: ops.rope_reference(x, cos, sin), bytes=2.0 * x.numel() * x.element_size())]  # fmt: skip


def _cross_entropy(dev: str, dt: torch.dtype, small: bool) -> list[Case]:
    from anyware import ops

    n, v = (256, 4096) if small else (8192, 131072)
    x = torch.randn(n, v, device=dev, dtype=dt)
    t = torch.randint(0, v, (n,), device=dev)
    return [Case(op="cross_entropy", label=f"{n}×{v} {dt}", ours=lambda impl: ops.cross_entropy(x, t, impl=impl),
                 aten=lambda: F.cross_entropy(x.float(), t), bytes=1.0 * x.numel() * x.element_size())]  # fmt: skip


def _flash_attention(dev: str, dt: torch.dtype, small: bool) -> list[Case]:
    from anyware import ops

    out = []
    b, h, s, d = (1, 4, 256, 64) if small else (4, 16, 8192, 128)
    adt = dt if small else torch.float16  # the FA2/FA3 anchors are quoted in fp16
    for causal in (False, True):
        q, k, v = (torch.randn(b, h, s, d, device=dev, dtype=adt) for _ in range(3))
        work = 4.0 * b * h * s * s * d / (2 if causal else 1)
        out.append(Case(op="flash_attention", label=f"{b}×{h}×{s}×{d} causal={causal} {adt}",
                        ours=partial(ops.flash_attention, q, k, v, causal),
                        aten=partial(F.scaled_dot_product_attention, q, k, v, is_causal=causal),
                        flops=work))  # fmt: skip
    return out


def _embedding_bag(dev: str, dt: torch.dtype, small: bool) -> list[Case]:
    from anyware import ops

    rows, d, bags, per = (10000, 64, 512, 20) if small else (1_000_000, 128, 65536, 64)
    w = torch.randn(rows, d, device=dev, dtype=torch.float32)
    idx = torch.randint(0, rows, (bags * per,), device=dev)
    off = torch.arange(bags, device=dev) * per
    return [Case(op="embedding_bag", label=f"{rows}×{d} bags={bags}×{per} fp32",
                 ours=lambda impl: ops.embedding_bag(w, idx, off, "sum", impl=impl),
                 aten=lambda: F.embedding_bag(idx, w, off, mode="sum"),
                 bytes=float(bags * per * (d * 4 + 8) + bags * d * 4))]  # fmt: skip


def _hadamard(dev: str, dt: torch.dtype, small: bool) -> list[Case]:
    from anyware import ops
    from anyware.formats.hadamard import hadamard_matrix

    m, n = (256, 1024) if small else (65536, 4096)
    x = torch.randn(m, n, device=dev, dtype=dt)
    hm = hadamard_matrix(n, dtype=dt).to(dev)  # the anchor: a dense GEMM by H
    return [Case(op="hadamard", label=f"{m}×{n} {dt}", ours=lambda impl: ops.hadamard(x, impl=impl),
                 aten=lambda: x @ hm, bytes=2.0 * x.numel() * x.element_size())]  # fmt: skip


_BASE: dict[str, Callable[[str, torch.dtype, bool], list[Case]]] = {
    "matmul": _matmul,
    "rms_norm": _rms_norm,
    "swiglu": _swiglu,
    "rope": _rope,
    "cross_entropy": _cross_entropy,
    "flash_attention": _flash_attention,
    "embedding_bag": _embedding_bag,
    "hadamard": _hadamard,
}


def _fp8_matmul(dev: str, dt: torch.dtype, small: bool) -> list[Case]:
    from anyware import ops

    n = 256 if small else 8192
    a = torch.randn(n, n, device=dev).to(torch.float8_e4m3fn)
    b = torch.randn(n, n, device=dev).to(torch.float8_e4m3fn)
    sa, sb = torch.ones(n, 1, device=dev), torch.ones(n, 1, device=dev)
    out_dt = torch.float32 if small else torch.bfloat16

    def aten() -> torch.Tensor:  # rowwise-scaled cuBLASLt FP8 GEMM (b column-major, as it needs)
        return torch._scaled_mm(a, b.t(), scale_a=sa, scale_b=sb.t(), out_dtype=out_dt)

    return [Case(op="fp8_matmul", label=f"{n}³ e4m3 rowwise", ours=lambda impl: ops.fp8_matmul(a, b, sa, sb, out_dtype=out_dt, impl=impl),
                 aten=aten, flops=2.0 * n**3)]  # fmt: skip


def _mx_matmul(dev: str, dt: torch.dtype, small: bool) -> list[Case]:
    from anyware import ops

    n = 256 if small else 8192
    a = torch.randn(n, n, device=dev).to(torch.float8_e4m3fn)
    b = torch.randn(n, n, device=dev).to(torch.float8_e4m3fn)
    s = torch.full((n, n // 32), 127, dtype=torch.uint8, device=dev)
    out_dt = torch.float32 if small else torch.bfloat16
    da, db = a.to(dt), b.to(dt)  # the anchor: the same GEMM in the 16-bit dtype, no scales
    return [Case(op="mx_matmul", label=f"{n}³ mxfp8 e4m3", ours=lambda impl: ops.mx_matmul(a, b, s, s, out_dtype=out_dt, impl=impl),
                 aten=lambda: da @ db.t(), flops=2.0 * n**3)]  # fmt: skip


def _grouped_matmul(dev: str, dt: torch.dtype, small: bool) -> list[Case]:
    from anyware import ops

    experts, tokens, k, n = (8, 512, 128, 256) if small else (64, 65536, 4096, 2048)
    sizes = torch.full((experts,), tokens // experts, dtype=torch.int64)
    x = torch.randn(tokens, k, device=dev, dtype=dt)
    w = torch.randn(experts, k, n, device=dev, dtype=dt)

    def aten() -> list[torch.Tensor]:  # one aten GEMM per expert, what eager MoE code does
        return [rows @ w[e] for e, rows in enumerate(torch.split(x, sizes.tolist()))]

    return [Case(op="grouped_matmul", label=f"{experts}×({tokens // experts}×{k}×{n}) {dt}",
                 ours=lambda impl: ops.grouped_matmul(x, w, sizes, impl=impl), aten=aten, flops=2.0 * tokens * k * n)]  # fmt: skip


def _moe_route(dev: str, dt: torch.dtype, small: bool) -> list[Case]:
    from anyware import ops

    tokens, experts = (4096, 64) if small else (65536, 256)
    logits = torch.randn(tokens, experts, device=dev, dtype=dt)
    bias = torch.randn(experts, device=dev) * 0.01
    return [Case(op="moe_route", label=f"{tokens}×{experts} top8 groups 8/4",
                 ours=lambda impl: ops.moe_route(logits, 8, bias=bias, n_groups=8, topk_groups=4, impl=impl),
                 aten=lambda: ops.moe_route_reference(logits, 8, bias=bias, n_groups=8, topk_groups=4), bytes=1.0 * logits.numel() * logits.element_size())]  # fmt: skip


def _sparse_attention(dev: str, dt: torch.dtype, small: bool) -> list[Case]:
    from anyware import ops

    # large: the aten anchor gathers (S, topk, H, D) fp32 keys; 1024×512×16×128 is 4 GiB
    b, h, s, t, d, topk = (1, 4, 64, 256, 64, 32) if small else (1, 16, 1024, 8192, 128, 512)
    q = torch.randn(b, h, s, d, device=dev, dtype=dt)
    kv = torch.randn(b, 1, t, d, device=dev, dtype=dt)
    idx = torch.randint(0, t, (b, s, topk), device=dev)
    return [Case(op="sparse_attention", label=f"{b}×{h}×{s} over {topk}/{t} keys d={d}",
                 ours=lambda impl: ops.sparse_attention(q, kv, kv, idx, impl=impl),
                 aten=lambda: ops.sparse_attention_reference(q, kv, kv, idx), flops=4.0 * b * h * s * topk * d)]  # fmt: skip


for _name, _make in (
    ("fp8_matmul", _fp8_matmul), ("mx_matmul", _mx_matmul), ("grouped_matmul", _grouped_matmul),
    ("moe_route", _moe_route), ("sparse_attention", _sparse_attention),
):  # fmt: skip
    _BASE[_name] = _make


def cases(op: str, *, small: bool) -> list[Case]:
    """The benchmark cases of ``op``: ``small`` sizes for a cpu, large ones for an accelerator
    (fp32 when small, bf16 when large)."""
    dt = torch.float32 if small else torch.bfloat16
    if op in _BASE:
        return _BASE[op](case_device(), dt, small)
    extra = _extra_cases(op, small=small)
    if extra is None:
        raise KeyError(f"no benchmark cases for op {op!r}")
    return extra


def _extra_cases(op: str, *, small: bool) -> list[Case] | None:
    """Cases of ops added later (MoE, sparse attention, low-precision GEMMs)."""
    hook = _EXTRA.get(op)
    return None if hook is None else hook(small)


_EXTRA: dict[str, Callable[[bool], list[Case]]] = {}


def register_cases(op: str, make: Callable[[bool], list[Case]]) -> None:
    _EXTRA[op] = make


def all_ops() -> list[str]:
    base = [
        "matmul",
        "rms_norm",
        "swiglu",
        "rope",
        "cross_entropy",
        "flash_attention",
        "embedding_bag",
        "hadamard",
    ]
    return base + sorted(_EXTRA)


def fmt_rate(x: float | None) -> str:
    return "—" if x is None or not math.isfinite(x) else f"{x:.3g}"
