"""Demo section: profile a few training steps of the tiny GPT and say where the time went."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anyware.demo import DemoContext

STEPS = 6


def run(ctx: DemoContext) -> None:
    from torch.optim.optimizer import register_optimizer_step_post_hook

    from anyware import runtime
    from anyware.cli.profile import render_summary
    from anyware.demo._workload import tiny_gpt, train_step
    from anyware.profile.capture import Capture, CaptureConfig, StepRange
    from anyware.profile.report import analyze_path

    backend = runtime.select(ctx.device)
    dev = backend.device()
    _, model, opt, data = tiny_gpt(dev, sentences=500)
    out = ctx.workdir / "profile"
    # What `anyware run --profile DIR` does in each process: steps 2-4, counted by the optimizer.
    capture = Capture(CaptureConfig(out=out, steps=StepRange(start=2, stop=5)), backend.device_type)
    handle = register_optimizer_step_post_hook(capture.on_optimizer_step)
    try:
        for _ in range(STEPS):
            x, y = next(data)
            train_step(model, opt, x.to(dev), y.to(dev))
    finally:
        handle.remove()
        capture.stop()
    ctx.console.print(f"profiled steps 2-4 on {backend.name} with torch.profiler → {out}")
    report = analyze_path(out)
    render_summary(report, ctx.console, top=5)
    rank = report.ranks[0]
    ctx.results["profile"] = {
        "trace": str(capture.written) if capture.written else None,
        "mode": rank.mode,
        "steps": [s.step for s in rank.steps],
        "breakdown_pct": {k: round(v, 2) for k, v in rank.whole.pct().items()},
        "biggest_cost": report.biggest_cost,
    }
