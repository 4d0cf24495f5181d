"""Demo section: a 32-rank run dies; torchrun blames a victim, the log analyser finds the culprit.

The logs are generated (:mod:`anyware.logs.corpus`): every rank trains the tiny GPT, one rank
runs out of device memory, the other ranks' collective watchdogs fire ten minutes later and
torchrun's summary names the first rank it saw exit. Then ``anyware logs analyze`` reads them.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anyware.demo import DemoContext


def run(ctx: DemoContext) -> None:
    import re
    import shutil
    import time

    from anyware.logs.analyze import analyze
    from anyware.logs.corpus import generate

    logs = ctx.workdir / "failing-run-logs"
    shutil.rmtree(logs, ignore_errors=True)  # a rerun must not read the last run's files
    truth = generate(logs, failure="device_oom", ranks=32, steps=400, seed=3)
    mb = truth.bytes / 1e6
    ctx.console.print(
        f"generated the logs of a failing 32-rank run: {len(truth.files)} files, {mb:.1f} MB "
        f"in {logs}"
    )
    summary = (logs / next(f for f in truth.files if "torchrun" in f)).read_text()
    m = re.search(r"Root Cause \(first observed failure\):.*?rank\s*:\s*(\d+)", summary, re.S)
    if m is not None:
        ctx.console.print(f"torchrun's 'Root Cause (first observed failure)': rank {m[1]}")
    a = analyze([logs])
    rc = a.root_cause
    when = time.strftime("%H:%M:%S", time.gmtime(rc.time)) if rc.time is not None else "?"
    ctx.console.print(
        f"anyware logs analyze → root cause [bold red]{rc.category}[/] on rank "
        f"[bold]{rc.rank}[/] ({rc.host}) at {when}, confidence {rc.confidence:.2f}; "
        f"{len(rc.victims)} victim ranks; {a.lines:,} lines in {a.seconds:.2f} s"
    )
    ctx.console.print(f"  evidence: {rc.message[:120]}")
    ok = rc.rank == truth.rank and str(rc.category) == truth.category
    ctx.console.print(
        f"  injected failure: rank {truth.rank} {truth.category} → "
        + ("[green]found[/]" if ok else "[red]missed[/]")
    )
    ctx.results["logs"] = {
        "root_cause_rank": rc.rank,
        "category": str(rc.category),
        "correct": ok,
        "torchrun_named": int(m[1]) if m is not None else None,
    }
