"""embedding_bag: kernel vs reference vs F.embedding_bag; modes, offsets, per-sample weights,
empty bags, 2-D input; gradients; opcheck; bad input."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from tests.ops.opcases import KERNEL_DTYPES, check_op, make

from anyware import ops
from anyware.testing.tolerances import assert_close

OFFSETS = torch.tensor([0, 0, 5, 5, 80, 89])  # empty bags first, in the middle and none last


@pytest.mark.parametrize("dtype", KERNEL_DTYPES)
@pytest.mark.parametrize(
    ("mode", "psw"), [("sum", False), ("sum", True), ("mean", False), ("max", False)]
)
def test_kernel_matches_reference(mode: str, psw: bool, dtype: torch.dtype) -> None:
    w = make((50, 37), dtype)
    idx = torch.randint(0, 50, (90,))
    args = [w, idx, OFFSETS] + ([make((90,), dtype)] if psw else [])

    def kernel(
        w: torch.Tensor, i: torch.Tensor, o: torch.Tensor, p: torch.Tensor | None = None
    ) -> torch.Tensor:
        return ops.embedding_bag(w, i, o, mode, p, impl="triton")

    def reference(
        w: torch.Tensor, i: torch.Tensor, o: torch.Tensor, p: torch.Tensor | None = None
    ) -> torch.Tensor:
        return ops.embedding_bag_reference(w, i, o, mode, p)

    check_op(kernel, reference, args, grad=(0, 3) if psw else (0,), msg=f"{mode} psw={psw}")


@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_reference_is_torch_semantics(mode: str) -> None:
    w, idx = make((30, 8), torch.float64), torch.randint(0, 30, (40,))
    assert_close(
        ops.embedding_bag_reference(w, idx, OFFSETS.clamp(max=40), mode),
        F.embedding_bag(idx, w, OFFSETS.clamp(max=40), mode=mode),
    )
    idx2 = torch.randint(0, 30, (4, 7))
    assert_close(
        ops.embedding_bag(w.float(), idx2, mode=mode, impl="triton"),
        F.embedding_bag(idx2, w, mode=mode),
        dtype=torch.float32,
    )


def test_opcheck() -> None:
    w, idx, ends = torch.randn(10, 4), torch.tensor([1, 2, 3, 9]), torch.tensor([0, 1, 1, 4])
    torch.library.opcheck(torch.ops.anyware.embedding_bag.default, (w, idx, ends, 2, None))
    torch.library.opcheck(
        torch.ops.anyware.embedding_bag.default, (w, idx, ends, 0, torch.randn(4))
    )


def test_bad_input() -> None:
    w = torch.randn(10, 4)
    with pytest.raises(ValueError, match=r"indices must lie in \[0, 10\)"):
        ops.embedding_bag(w, torch.tensor([0, 10]), torch.tensor([0]))
    with pytest.raises(ValueError, match="need offsets"):
        ops.embedding_bag(w, torch.tensor([0, 1]))
    with pytest.raises(ValueError, match="per_sample_weights needs mode='sum'"):
        ops.embedding_bag(w, torch.tensor([0, 1]), torch.tensor([0]), "max", torch.ones(2))
    with pytest.raises(ValueError, match="offsets must start at 0"):
        ops.embedding_bag(w, torch.tensor([0, 1]), torch.tensor([1]))


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # numpy reports the inf - inf we ask for
@pytest.mark.parametrize("mode", ["sum", "mean", "max"])
def test_special_values(mode: str) -> None:
    w = torch.tensor(
        [[0.0, 1.0], [float("inf"), -1.0], [float("nan"), 2.0], [-3e38, 1e-40], [-3e38, 5.0]]
    )
    idx, off = torch.tensor([0, 1, 3, 4, 2, 0]), torch.tensor([0, 2, 4, 4])
    got = ops.embedding_bag(w, idx, off, mode, impl="triton")
    # the fp32 reference: -3e38 + -3e38 overflows to -inf in fp32 accumulation, as specified
    assert_close(got, ops.embedding_bag_reference(w, idx, off, mode), dtype=torch.float32)
    if mode == "max":  # NaN propagates like aten's
        assert torch.isnan(got[3, 0]) and bool(
            torch.isnan(torch.nn.functional.embedding_bag(idx, w, off, mode="max")[3, 0])
        )
