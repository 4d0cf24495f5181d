"""On an accelerator, autograd runs backward in its own device threads: the dispatch mode must
still see those ops, and recording must still leave the numerics bit-identical."""

from __future__ import annotations

from pathlib import Path

import polars as pl
import pytest
import torch

import anyware.trace as tr
from anyware import runtime
from anyware.models.gpt import GPT, GPTConfig
from anyware.testing.markers import require_device
from anyware.trace.load import load_run


def _train(dev: torch.device, out: Path | None) -> list[torch.Tensor]:
    import contextlib

    torch.manual_seed(0)
    m = GPT(GPTConfig(n_layers=2, d_model=64, seq_len=32)).to(dev)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-3)
    g = torch.Generator().manual_seed(1)
    x = torch.randint(0, 96, (4, 32), generator=g).to(dev)
    ctx = tr.record(out, "mix") if out is not None else contextlib.nullcontext()
    with ctx:
        for _ in range(2):
            _, loss = m(x, x)
            assert loss is not None
            opt.zero_grad()
            loss.backward()
            opt.step()
    return [p.detach().cpu() for p in m.parameters()]


@pytest.mark.device
@require_device()
def test_backward_on_engine_threads_is_recorded_and_numerics_unchanged(tmp_path: Path) -> None:
    backend = runtime.current()
    dev = backend.device()
    plain = _train(dev, None)
    traced = _train(dev, tmp_path)
    assert all(torch.equal(a, b) for a, b in zip(plain, traced, strict=True))
    df = load_run(tmp_path).frame
    bwd = df.filter((pl.col("phase") == "backward") & (pl.col("level") == "op"))
    assert bwd.height > 50, "backward ops on the device threads were not seen"
    assert "blocks.1.attn" in set(bwd["module"].to_list())
