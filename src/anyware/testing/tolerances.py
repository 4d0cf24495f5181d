"""Every numerical tolerance the tests use, keyed by dtype, with the argument for each.

A kernel is compared against its pure-PyTorch reference evaluated in float64, so the error
budget is the kernel dtype's rounding plus accumulation-order differences:

* fp32: unit roundoff 2^-24 ≈ 6e-8; reductions over K terms add ~sqrt(K)·u. rtol 1e-5 leaves
  room for K up to ~1e4 with different summation order.
* fp16: u = 2^-11 ≈ 4.9e-4; results are rounded once on store, accumulation is fp32.
* bf16: u = 2^-8 ≈ 3.9e-3, same structure.
* fp8 e4m3 / e5m2: u = 2^-4 / 2^-3 for a single rounding; compare quantised values bit-exactly
  and GEMM outputs against a reference that applies the same quantisation.

Casts (quantise/dequantise) are never compared with a tolerance: they must be bit-exact.
Lossy formats are checked with a signal-to-quantisation-noise floor (``SQNR_FLOOR_DB``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True, slots=True, kw_only=True)
class Tolerance:
    rtol: float
    """Relative tolerance."""
    atol: float
    """Absolute tolerance (for values near zero)."""


_BY_NAME: dict[str, Tolerance] = {
    "float64": Tolerance(rtol=1e-10, atol=1e-12),
    "float32": Tolerance(rtol=1e-5, atol=1e-6),
    "float16": Tolerance(rtol=2e-3, atol=1e-3),
    "bfloat16": Tolerance(rtol=1.6e-2, atol=1e-2),
    "float8_e4m3fn": Tolerance(rtol=1.25e-1, atol=2e-2),
    "float8_e5m2": Tolerance(rtol=2.5e-1, atol=4e-2),
}

#: fp8 round trips must keep at least this signal-to-noise ratio (torchao's bar).
SQNR_FLOOR_DB: dict[str, float] = {
    "fp8_e4m3": 25.0,
    "fp8_e5m2": 18.0,
}


def tolerance(dtype: torch.dtype | str) -> Tolerance:
    """The tolerance for results computed in ``dtype``."""
    name = dtype if isinstance(dtype, str) else str(dtype).removeprefix("torch.")
    try:
        return _BY_NAME[name]
    except KeyError:
        raise KeyError(f"no tolerance for dtype {name!r}; known: {sorted(_BY_NAME)}") from None


def sqnr_db(reference: torch.Tensor, approx: torch.Tensor) -> float:
    """Signal-to-quantisation-noise ratio in dB (inf when identical)."""
    import torch

    ref = reference.double()
    noise = (ref - approx.double()).pow(2).sum()
    if noise == 0:
        return float("inf")
    return float(10 * torch.log10(ref.pow(2).sum() / noise))


def assert_close(
    actual: torch.Tensor,
    expected: torch.Tensor,
    *,
    dtype: torch.dtype | str | None = None,
    msg: str = "",
) -> None:
    """``torch.testing.assert_close`` with the table's tolerance and a message that shows the
    max/mean difference and the first mismatching index."""
    import torch

    tol = tolerance(dtype if dtype is not None else actual.dtype)
    if actual.shape != expected.shape:
        raise AssertionError(
            f"{msg} shape {tuple(actual.shape)} != expected {tuple(expected.shape)}"
        )
    a, e = actual.detach().double(), expected.detach().double()
    bad = ~torch.isclose(a, e, rtol=tol.rtol, atol=tol.atol, equal_nan=True)
    if bad.any():
        diff = (a - e).abs().nan_to_num(nan=float("inf"))
        first = tuple(int(i) for i in bad.nonzero()[0].tolist())
        raise AssertionError(
            f"{msg} {int(bad.sum())}/{bad.numel()} elements differ beyond rtol={tol.rtol} atol={tol.atol}: "
            f"max abs diff {float(diff.max()):.3g}, mean {float(diff.mean()):.3g}; first at {first}: "
            f"{float(a[first]):.6g} vs expected {float(e[first]):.6g}"
        )
