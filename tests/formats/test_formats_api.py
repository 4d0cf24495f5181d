"""The contract: options per format, clear errors, shapes and dtypes."""

from __future__ import annotations

import pytest
import torch

from anyware.formats import Format, dequantize, fake_quantize, info, quantize


@pytest.mark.parametrize("fmt", [f.value for f in Format])
def test_round_trip_shape_dtype_and_equals_dequantize(fmt: str) -> None:
    x = torch.randn(3, 70, dtype=torch.float16)
    y = fake_quantize(x, fmt)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert torch.equal(y, dequantize(quantize(x, fmt)))


def test_unknown_names_suggest_the_closest() -> None:
    with pytest.raises(ValueError, match="did you mean 'fp8_e4m3'"):
        fake_quantize(torch.ones(2), "fp8_e4m4")
    with pytest.raises(ValueError, match="did you mean 'block1x128'"):
        fake_quantize(torch.ones(2), "fp8_e4m3", granularity="block1x12")
    with pytest.raises(ValueError, match="did you mean 'rceil'"):
        fake_quantize(torch.ones(2), "mxfp8_e4m3", scale_rounding="ceil")


def test_options_that_do_not_apply_are_errors() -> None:
    with pytest.raises(
        ValueError, match="scale_rounding='rceil' does not apply to format fp8_e4m3"
    ):
        fake_quantize(torch.ones(2), "fp8_e4m3", scale_rounding="rceil")
    with pytest.raises(ValueError, match="granularity"):
        fake_quantize(torch.ones(2), "mxfp4_e2m1", granularity="row")
    with pytest.raises(ValueError, match="group_size"):
        fake_quantize(torch.ones(2), "fp8_e5m2", group_size=32)
    with pytest.raises(ValueError, match="positive"):
        fake_quantize(torch.ones(2), "int4", group_size=0)
    with pytest.raises(TypeError, match="floating-point"):
        quantize(torch.ones(2, dtype=torch.int64), "int4")
    with pytest.raises(TypeError, match=r"tensor or an nn\.Module"):
        quantize([1.0], "int4")  # type: ignore[call-overload]


def test_fp8_view_for_scaled_mm() -> None:
    q = quantize(torch.randn(4, 8), "fp8_e4m3")
    assert q.fp8_view().dtype == torch.float8_e4m3fn
    with pytest.raises(ValueError, match="no torch float8"):
        quantize(torch.randn(4, 8), "int4").fp8_view()


def test_info_rows() -> None:
    rows = {r["format"]: r for r in info()}
    assert rows["fp8_e4m3"]["max"] == 448.0 and rows["fp8_e4m3"]["min_subnormal"] == 2.0**-9
    assert rows["fp8_e5m2"]["max"] == 57344.0 and rows["fp8_e5m2"]["min_normal"] == 2.0**-14
    assert rows["mxfp4_e2m1"]["bits"] == 4 and rows["mxfp4_e2m1"]["max"] == 6.0
    assert rows["mxfp6_e3m2"]["max"] == 28.0 and rows["mxfp6_e2m3"]["max"] == 7.5
    assert rows["mxint8"]["max"] == 127 / 64


def test_import_is_cheap_and_touches_no_device() -> None:
    import subprocess
    import sys

    code = "import anyware.formats, sys; print('torch.cuda' in sys.modules and __import__('torch').cuda.is_initialized())"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() in ("False",)
