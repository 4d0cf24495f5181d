"""FP8-scaled and MX block-scaled GEMMs: kernels vs the dequantise-then-multiply reference,
which itself must equal anyware.formats' dequantisation; opcheck; layouts; bad input."""

from __future__ import annotations

import pytest
import torch

from anyware import formats, ops
from anyware.testing.tolerances import assert_close

LAYOUTS = [("tensor", "tensor"), ("row", "row"), ("block1x128", "block128x128")]


@pytest.mark.parametrize("fmt", ["fp8_e4m3", "fp8_e5m2"])
@pytest.mark.parametrize(("ga", "gb"), LAYOUTS)
@pytest.mark.parametrize(("m", "k", "n"), [(5, 64, 7), (33, 200, 130)])
def test_fp8_matches_dequantised_reference(
    m: int, k: int, n: int, ga: str, gb: str, fmt: str
) -> None:
    qa = formats.quantize(torch.randn(m, k), fmt, granularity=ga)
    qb = formats.quantize(torch.randn(n, k), fmt, granularity=gb)
    got = ops.fp8_matmul(qa, qb, out_dtype=torch.float32, impl="triton")
    ref = ops.fp8_matmul_reference(
        qa.fp8_view(), qb.fp8_view(), qa.scales, qb.scales, out_dtype=torch.float64
    )
    exact = formats.dequantize(qa).double() @ formats.dequantize(qb).double().t()
    assert torch.equal(ref, exact)  # the reference is the formats' own dequantisation
    # Products of FP8 values are exact in fp32; the error is the fp32 accumulation over K terms,
    # which the fp32 row of the table covers only up to cancellation: bound it by √K·u·Σ|ab|.
    bound = (
        (k**0.5)
        * 2.0**-24
        * (formats.dequantize(qa).abs().double() @ formats.dequantize(qb).abs().double().t())
    )
    assert bool(((got.double() - ref).abs() <= bound + 1e-6).all())
    f16 = ops.fp8_matmul(qa, qb, out_dtype=torch.float16, impl="triton")
    assert_close(f16, ref, dtype=torch.float16)


def _mx_operand(q: formats.QuantizedTensor) -> torch.Tensor:
    return q.codes if q.packed else q.fp8_view()


@pytest.mark.parametrize(
    ("fa", "fb"),
    [
        ("mxfp8_e4m3", "mxfp8_e4m3"),
        ("mxfp8_e5m2", "mxfp8_e4m3"),
        ("mxfp4_e2m1", "mxfp4_e2m1"),
        ("mxfp8_e4m3", "mxfp4_e2m1"),
    ],
)
@pytest.mark.parametrize(("m", "k", "n"), [(5, 64, 7), (33, 160, 70)])
def test_mx_matches_dequantised_reference(m: int, k: int, n: int, fa: str, fb: str) -> None:
    qa, qb = formats.quantize(torch.randn(m, k), fa), formats.quantize(torch.randn(n, k), fb)
    got = ops.mx_matmul(qa, qb, out_dtype=torch.float32, impl="triton")
    ref = ops.mx_matmul_reference(
        _mx_operand(qa), qa.scales, _mx_operand(qb), qb.scales, out_dtype=torch.float64
    )
    assert torch.equal(ref, formats.dequantize(qa).double() @ formats.dequantize(qb).double().t())
    bound = (
        (k**0.5)
        * 2.0**-24
        * (formats.dequantize(qa).abs().double() @ formats.dequantize(qb).abs().double().t())
    )
    assert bool(((got.double() - ref).abs() <= bound + 1e-6).all())


def test_bf16_output_falls_back_on_cpu() -> None:
    qa, qb = (
        formats.quantize(torch.randn(4, 32), "fp8_e4m3"),
        formats.quantize(torch.randn(3, 32), "fp8_e4m3"),
    )
    out = ops.fp8_matmul(qa, qb)  # default bf16 out, reference on cpu
    assert out.dtype == torch.bfloat16 and out.shape == (4, 3)
    with pytest.raises(ops.ImplUnavailableError, match="bf16"):
        ops.fp8_matmul(qa, qb, impl="triton")


# opcheck's schema test multiplies the inputs, which aten has no cpu kernel for in float8
_FP8_CHECKS = ("test_faketensor", "test_autograd_registration", "test_aot_dispatch_dynamic")


def test_opcheck() -> None:
    a = torch.randn(4, 32).to(torch.float8_e4m3fn)
    b = torch.randn(3, 32).to(torch.float8_e4m3fn)
    torch.library.opcheck(
        torch.ops.anyware.fp8_matmul.default,
        (a, b, torch.ones(4, 1), torch.ones(3, 1), 1, torch.float32),
        test_utils=_FP8_CHECKS,
    )
    s = torch.full((4, 1), 127, dtype=torch.uint8)
    torch.library.opcheck(
        torch.ops.anyware.mx_matmul.default, (a, s, b, s[:3], torch.float32), test_utils=_FP8_CHECKS
    )


def test_bad_input() -> None:
    a = torch.randn(4, 32).to(torch.float8_e4m3fn)
    with pytest.raises(ValueError, match="match no layout"):
        ops.fp8_matmul(a, a, torch.ones(4, 1), torch.ones(()))
    with pytest.raises(ValueError, match="expected one of float8"):
        ops.fp8_matmul(torch.randn(4, 32), a, torch.ones(()), torch.ones(()))
    with pytest.raises(ValueError, match="multiple of the MX block"):
        ops.mx_matmul(
            a[:, :20],
            a[:, :20],
            torch.zeros(4, 1, dtype=torch.uint8),
            torch.zeros(4, 1, dtype=torch.uint8),
        )
