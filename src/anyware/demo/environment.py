"""Demo section: which device anyware picked and what it can do."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anyware.demo import DemoContext


def run(ctx: DemoContext) -> None:
    from anyware import runtime

    backend = runtime.select(ctx.device)
    cap = backend.capability()
    mem = backend.memory_stats()
    found = [b.name for b in runtime.all_backends() if b.probe().available]
    ctx.console.print(f"backends available here: {', '.join(found)}")
    ctx.console.print(
        f"selected [bold]{backend.name}[/] → torch device '{backend.device()}', "
        f"{cap.name} ({cap.arch}), dist backend {backend.dist_backend}, "
        f"dtypes {' '.join(sorted(cap.dtypes))}, "
        f"memory {(mem.total or 0) / 2**30:.1f} GiB, triton {'yes' if cap.triton else 'no'}"
    )
    ctx.results["environment"] = {"backend": backend.name, "device": str(backend.device())}
