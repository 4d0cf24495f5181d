"""Demo section: the reference MoE workload end to end.

A CUDA-style script (``examples/moe/train.py``: ``device="cuda"``, ``backend="nccl"``) trains a
DeepSeek-style MoE on two expert-parallel ranks through ``anyware run --nproc 2 --monitor``,
exchanging tokens over ``anyware.comm``; then one training step is traced in fp32 and under an
FP8 recipe (linear layers and the experts' grouped GEMMs) and the tracer names the first
operator FP8 changed. The training run also times how much of the token all-to-all the shared
experts' compute covered and reports the final expert balance.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anyware

if TYPE_CHECKING:
    from anyware.demo import DemoContext

EXAMPLE = Path(anyware.__file__).resolve().parents[2] / "examples" / "moe" / "train.py"
STEPS = 30
FP8_RECIPE = "rowwise"


def _launch(ctx: DemoContext, log: Path, **options: Any) -> int:
    from anyware.migrate.launch import RunOptions, run

    with log.open("wb") as out:
        return run(RunOptions(device=ctx.device, **options), quiet=True, output=out)


def _train(ctx: DemoContext) -> dict[str, Any]:
    from rich.markup import escape

    from anyware.events import Kind, read_dir

    events = ctx.workdir / "moe_events"
    log = ctx.workdir / "moe_train.log"
    out = ctx.workdir / "moe_train.json"
    extra = ["--measure-overlap", "10", "--eval-batches", "2", "--out", str(out)]
    ctx.console.print(
        f"$ anyware run --nproc 2 --monitor --events {events} examples/moe/train.py "
        f"--steps {STEPS} {' '.join(extra[:2])}"
    )
    code = _launch(
        ctx,
        log,
        target=[str(EXAMPLE), "--steps", str(STEPS), "--log-every", "10", *extra],
        nproc=2,
        monitor=True,
        events=events,
    )
    lines = log.read_text(encoding="utf-8", errors="replace").splitlines()
    for line in lines:
        if line.startswith(
            ("step", "done", "token all-to-all", "anyware migrate", "dashboard", "anyware monitor")
        ):
            ctx.console.print(f"  {escape(line)}")
    if code != 0:
        raise RuntimeError(f"examples/moe/train.py exited with status {code}; see {log}")
    recorded = read_dir(events) if events.is_dir() else []
    alerts = [e for e in recorded if e.kind is Kind.ALERT]
    steps = {e.step for e in recorded if e.kind is Kind.SPAN and e.step is not None}
    ranks = sorted({e.rank for e in recorded})
    ctx.console.print(
        f"monitor: {len(recorded)} events from ranks {ranks} over {len(steps)} steps, "
        f"{len(alerts)} alert(s){': ' + ', '.join(a.name for a in alerts) if alerts else ''}"
    )
    done = next((ln for ln in lines if ln.startswith("done:")), "")
    run = json.loads(out.read_text(encoding="utf-8"))
    overlap = run["overlap"]["overlap_fraction"] if run.get("overlap") else None
    balance = run["imbalance"][-1] if run.get("imbalance") else None
    if overlap is not None and balance is not None:
        done += f"; all-to-all {overlap:.0%} overlapped; expert load max/mean {balance:.2f}"
    return {
        "exit_status": code,
        "events": len(recorded),
        "alerts": len(alerts),
        "summary": done,
        "overlap_fraction": overlap,
        "expert_load_max_over_mean": balance,
    }


def _trace(ctx: DemoContext) -> dict[str, Any]:
    from anyware.trace import diff
    from anyware.trace.report import print_summary

    runs = {}
    for name, extra in (("fp32", []), (FP8_RECIPE, ["--fp8", FP8_RECIPE])):
        out = ctx.workdir / "moe_trace" / name
        code = _launch(
            ctx,
            ctx.workdir / f"moe_trace_{name}.log",
            target=[
                str(EXAMPLE),
                "--steps",
                "1",
                "--log-every",
                "1",
                "--eval-batches",
                "0",
                *extra,
            ],
            trace=out,
            trace_level="module",
        )
        if code != 0:
            raise RuntimeError(f"the traced {name} step exited with status {code}")
        runs[name] = out
    ctx.console.print(f"[bold]one step, fp32 vs FP8 {FP8_RECIPE}[/] (module level):")
    result = diff(runs["fp32"], runs[FP8_RECIPE])
    print_summary(result, ctx.console, "fp32", f"fp8 {FP8_RECIPE}")
    fd = result.first_divergence
    return {"first_divergence": None if fd is None else f"{fd['module']} {fd['op']}"}


def run(ctx: DemoContext) -> None:
    if not EXAMPLE.is_file():
        ctx.console.print(f"[dim]skipped: {EXAMPLE} is not here (a source checkout has it)")
        return
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    ctx.results["moe"] = {**_train(ctx), **_trace(ctx)}
