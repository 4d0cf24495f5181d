"""Demo section: trace one training step of the tiny GPT in fp32 and under bf16 autocast,
diff them (nothing beyond the bf16-scaled tolerance), then plant a bug in the bf16 run (the
missing 1/sqrt(d) attention scale) and watch the tracer name the op, module and line."""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from pathlib import Path

    from anyware.demo import DemoContext


def _step(out: Path, *, low: bool, calib: bool = False, bug: bool = False) -> None:
    import torch

    import anyware.trace as tr
    from anyware import runtime
    from anyware.models.data import VOCAB_SIZE, batches, encode, make_text
    from anyware.models.gpt import GPT, GPTConfig

    dev = runtime.device()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=VOCAB_SIZE, seq_len=32, d_model=64, n_layers=2))
    model = model.to(dev, torch.float64 if calib else torch.float32)
    if bug:  # the classic: attention logits not scaled by 1/sqrt(head_dim) in one block
        attn: Any = model.blocks[1].attn
        attn.scale = 1.0
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    x, y = next(batches(encode(make_text(200)), 8, 32))
    amp = torch.autocast(dev.type, torch.bfloat16) if low else contextlib.nullcontext()
    with tr.record(out, "op"):
        with amp:
            _, loss = model(x.to(dev), y.to(dev))
        assert loss is not None
        loss.backward()
        opt.step()


def run(ctx: DemoContext) -> None:
    import time

    from anyware.trace import diff
    from anyware.trace.report import print_summary

    d = ctx.workdir / "trace"
    t0 = time.perf_counter()
    _step(d / "fp32", low=False)
    _step(d / "fp64", low=False, calib=True)
    _step(d / "bf16", low=True)
    _step(d / "bf16_bug", low=True, bug=True)
    cal = (str(d / "fp32"), str(d / "fp64"))
    ctx.console.print("[bold]fp32 vs bf16 autocast[/] (tolerances calibrated on fp32 vs fp64):")
    ok = diff(d / "fp32", d / "bf16", calibrate=cal)
    print_summary(ok, ctx.console, "fp32", "bf16")
    ctx.console.print(
        "\n[bold]fp32 vs bf16 with a planted bug[/] (attention scale missing in blocks.1):"
    )
    bad = diff(d / "fp32", d / "bf16_bug", calibrate=cal)
    print_summary(bad, ctx.console, "fp32", "bf16+bug")
    fd = bad.first_divergence
    ctx.results["trace"] = {
        "clean_first_divergence": ok.first_divergence,
        "bug_located": None if fd is None else f"{fd['module']} {fd['op']}",
        "records": ok.records,
        "record_and_diff_s": round(time.perf_counter() - t0, 2),
    }
