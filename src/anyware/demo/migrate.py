"""Demo section: a CUDA-written training script runs unchanged through ``anyware run``, then
the codemod shows what a permanent rewrite would change."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import anyware

if TYPE_CHECKING:
    from anyware.demo import DemoContext

EXAMPLE = Path(anyware.__file__).resolve().parents[2] / "examples" / "cuda_train.py"


def run(ctx: DemoContext) -> None:
    import json

    from rich.markup import escape

    from anyware.migrate.codemod import run_codemod
    from anyware.migrate.launch import RunOptions, run
    from anyware.migrate.reporting import summary

    if not EXAMPLE.is_file():
        ctx.console.print(f"[dim]skipped: {EXAMPLE} is not here (a source checkout has it)")
        return
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    report_path = ctx.workdir / "migrate_report.json"
    log_path = ctx.workdir / "cuda_train.log"
    ctx.console.print(f"$ anyware run --report {report_path} examples/cuda_train.py --steps 4")
    opts = RunOptions(
        target=[str(EXAMPLE), "--steps", "4", "--batch-size", "2"],
        device=ctx.device,
        report=report_path,
    )
    with log_path.open("wb") as log:
        code = run(opts, quiet=True, output=log)
    for line in log_path.read_text(encoding="utf-8", errors="replace").splitlines():
        if not line.startswith("anyware: warning"):
            ctx.console.print(f"  {escape(line)}")
    data = json.loads(report_path.read_text())
    ctx.console.print(escape(summary(data, limit=8)))
    check = run_codemod([EXAMPLE], write=False)
    tot = check["totals"]
    ctx.console.print(
        f"anyware migrate check examples/cuda_train.py: {tot['converted']} CUDA reference(s) "
        f"`fix` would convert, {tot['unconverted']} left for a person (cuDNN flags, hazards)"
    )
    ctx.results["migrate"] = {
        "exit_status": code,
        "redirects": sum(r["count"] for r in data["redirects"]),
        "apis": len(data["redirects"]),
        "unsupported": len(data["unsupported"]),
        "codemod_converted": tot["converted"],
    }
    if code != 0:
        raise RuntimeError(f"examples/cuda_train.py exited with status {code}; see {log_path}")
