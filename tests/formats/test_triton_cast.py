"""The Triton cast op (integer bit manipulation) against the reference, in Triton's interpreter."""

from __future__ import annotations

import os

import pytest
import torch

from anyware.formats.element import code_values
from anyware.formats.triton_cast import FORMATS, cast_to_codes_reference, triton_usable

pytest.importorskip("triton")


def _inputs() -> torch.Tensor:
    g = torch.Generator().manual_seed(7)
    rand = torch.randint(-(2**31), 2**31 - 1, (8_000,), generator=g, dtype=torch.int64)
    scaled = torch.randn(8_000, generator=g) * torch.exp2(
        torch.randint(-22, 18, (8_000,), generator=g).float()
    )
    special = torch.tensor(
        [
            0.0,
            -0.0,
            float("inf"),
            -float("inf"),
            float("nan"),
            448.0,
            464.0,
            465.0,
            61440.0,
            2.0**-17,
            1e-40,
        ]
    )
    parts = [rand.to(torch.int32).view(torch.float32), scaled, special]
    for f in FORMATS.values():  # every value and every midpoint of every format
        v = code_values(f).double()
        v = v[torch.isfinite(v)].unique()
        mids = ((v[1:] + v[:-1]) / 2).float()
        parts += [
            v.float(),
            mids,
            torch.nextafter(mids, torch.tensor(1e30)),
            torch.nextafter(mids, torch.tensor(-1e30)),
        ]
    return torch.cat(parts)


def test_interpreter_is_on_for_these_tests() -> None:
    assert os.environ.get("TRITON_INTERPRET") == "1"
    assert triton_usable(torch.zeros(1))


@pytest.mark.parametrize("fmt", sorted(FORMATS))
@pytest.mark.parametrize("saturate", [True, False])
def test_triton_cast_is_bit_exact(fmt: str, saturate: bool) -> None:
    x = _inputs()
    for scale in (1.0, 0.3):
        s = torch.tensor(scale)
        got = torch.ops.anyware_formats.cast_to_codes(x, s, fmt, saturate)
        want = cast_to_codes_reference(x, s, fmt, saturate)
        bad = (got != want).nonzero().flatten()
        assert not len(bad), (
            f"{len(bad)} mismatches, first x={float(x[bad[0]])!r}: {int(got[bad[0]]):#x} vs {int(want[bad[0]]):#x}"
        )


def test_matches_torch_fp8_cast_for_e4m3() -> None:
    x = _inputs()
    got = torch.ops.anyware_formats.cast_to_codes(x, torch.tensor(1.0), "e4m3", True)
    assert torch.equal(got, x.to(torch.float8_e4m3fn).view(torch.uint8))


def test_opcheck_and_errors() -> None:
    x = torch.randn(3, 33)
    torch.library.opcheck(
        torch.ops.anyware_formats.cast_to_codes.default, (x, torch.tensor(0.5), "e5m2", False)
    )
    with pytest.raises(ValueError, match="unknown element format 'e4m4'"):
        torch.ops.anyware_formats.cast_to_codes(x, torch.tensor(1.0), "e4m4", True)
    with pytest.raises(ValueError, match="one element"):
        torch.ops.anyware_formats.cast_to_codes(x, torch.ones(2), "e4m3", True)
    assert (
        torch.ops.anyware_formats.cast_to_codes(
            torch.empty(0), torch.tensor(1.0), "e2m1", True
        ).numel()
        == 0
    )
