"""Demo section: train the tiny GPT on the fabricated corpus on the selected device."""

from __future__ import annotations

import math
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anyware.demo import DemoContext

STEPS = 40


def run(ctx: DemoContext) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from anyware import runtime
    from anyware.demo._workload import tiny_gpt, train_step
    from anyware.models.data import VOCAB_SIZE

    backend = runtime.select(ctx.device)
    dev = backend.device()
    cfg, model, opt, data = tiny_gpt(dev, seq_len=64, batch_size=16)
    losses: list[float] = []
    t0 = time.perf_counter()
    with Progress(
        TextColumn("step {task.completed}/{task.total}"),
        BarColumn(),
        TextColumn("loss {task.fields[loss]}"),
        TimeElapsedColumn(),
        console=ctx.console,
    ) as bar:
        task = bar.add_task("train", total=STEPS, loss="—")
        for _ in range(STEPS):
            x, y = next(data)
            losses.append(train_step(model, opt, x.to(dev), y.to(dev)).item())
            bar.update(task, advance=1, loss=f"{losses[-1]:.3f}")
    backend.synchronize()
    secs = time.perf_counter() - t0
    tokens = STEPS * 16 * cfg.seq_len
    ctx.console.print(
        f"{STEPS} steps on {backend.name}: loss {losses[0]:.3f} → {losses[-1]:.3f} "
        f"(uniform guess {math.log(VOCAB_SIZE):.3f}), {tokens / secs:,.0f} tokens/s, {secs:.1f} s"
    )
    ctx.results["train"] = {
        "first_loss": losses[0],
        "last_loss": losses[-1],
        "tokens_per_s": tokens / secs,
    }
