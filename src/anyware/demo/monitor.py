"""Demo section: train the tiny GPT with the training-health monitor attached, print the live
dashboard's URL, then poison one step's loss and show the alert that names it."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anyware.demo import DemoContext

STEPS = 30
NAN_STEP = 22
BATCH = 8


def run(ctx: DemoContext) -> None:
    import torch

    from anyware import monitor, runtime
    from anyware.models.data import VOCAB_SIZE, batches, encode, make_text
    from anyware.models.gpt import GPT, GPTConfig
    from anyware.monitor.aggregator import Aggregator
    from anyware.monitor.serve import serve_in_thread

    backend = runtime.select(ctx.device)
    dev = backend.device()
    events = ctx.workdir / "monitor"
    agg = Aggregator(events_dir=events)
    server = serve_in_thread(agg)
    ctx.console.print(f"dashboard (live while this section runs): [bold]{server.url}[/]")
    torch.manual_seed(0)
    threads = torch.get_num_threads()
    if dev.type == "cpu":
        # A model this small gains nothing from intra-op threads, and on a busy 2-core box their
        # spin-waiting made each step ~35x slower (306 ms vs 8.6 ms forward, measured).
        torch.set_num_threads(1)
    cfg = GPTConfig(vocab_size=VOCAB_SIZE, seq_len=32, d_model=64, n_heads=4, n_layers=2)
    model = GPT(cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    data = batches(encode(make_text(2000)), batch_size=BATCH, seq_len=cfg.seq_len)
    mon = monitor.attach(model, opt, addr=server.addr, events_dir=events,
                         flops_per_step=cfg.flops_per_token() * BATCH * cfg.seq_len)  # fmt: skip
    try:
        for step in range(STEPS):
            x, y = next(data)
            _, loss = model(x.to(dev), y.to(dev))
            assert loss is not None
            if step == NAN_STEP:
                loss = loss * float("nan")  # the fault: one bad batch
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        mon.close()
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and not agg.alerts.firing():
            time.sleep(0.05)
        agg.tick()
        snap = agg.snapshot()
        rows = [r for r in agg.state.rows if r["rank"] == 0]
        breakdown = {k: sum(float(r[k] or 0) for r in rows) / max(len(rows), 1) * 1e3
                     for k in ("data", "forward", "backward", "optimizer")}  # fmt: skip
        ctx.console.print(
            f"{snap['steps']} steps monitored, {snap['ingest']['accepted']} records shipped; mean step: "
            + ", ".join(f"{k} {v:.1f} ms" for k, v in breakdown.items())
        )
        for a in snap["alerts"]:
            who = f"rank {a['culprit_rank']}" if a["culprit_rank"] is not None else "no rank"
            ctx.console.print(
                f"[red]{a['state']}[/] {a['code']} {a['check']} at step {a['step']} ({who}): {a['message']}"
            )
        ctx.console.print(f"events and alerts: {events}/rank0.jsonl · metrics: {server.url}metrics")
        ctx.results["monitor"] = {
            "url": server.url,
            "steps": snap["steps"],
            "alerts": [(a["check"], a["step"]) for a in snap["alerts"]],
        }
    finally:
        mon.close()
        server.stop()
        torch.set_num_threads(threads)
