"""Demo section: a two-rank data-parallel training step that averages its gradients with
``anyware.comm`` over shared memory, checked against gloo and against one process.

Two ranks start (gloo for setup, anyware's shared-memory transport for the gradients). Each
computes the tiny GPT's gradients on its half of the batch, averages them with one
``comm.all_reduce(op="avg")`` over the flattened gradients, and steps SGD. The section then
shows: both ranks hold bit-identical weights, they equal a single-process step on the whole
batch, and how long the gradient allreduce took next to gloo's own allreduce of the same
buffer, measured alternately in the same run.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anyware.demo import DemoContext

STEPS = 3
TIMING_REPS = 20


def _model_and_batch() -> tuple[Any, Any, Any]:
    import torch

    from anyware.models.data import VOCAB_SIZE, batches, encode, make_text
    from anyware.models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=VOCAB_SIZE, seq_len=32, d_model=64, n_heads=4, n_layers=2)
    x, y = next(batches(encode(make_text(400)), batch_size=8, seq_len=cfg.seq_len))
    return GPT(cfg), x, y


def worker(rank: int, port: int, out: Path) -> None:
    import torch
    import torch.distributed as dist

    from anyware import comm

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=2)
    model, x, y = _model_and_batch()
    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=0.1)
    half = slice(rank * x.shape[0] // 2, (rank + 1) * x.shape[0] // 2)
    losses, comm_s = [], 0.0
    grads = torch.empty(sum(p.numel() for p in params))
    for _ in range(STEPS):
        _, loss = model(x[half], y[half])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.cat([p.grad.reshape(-1) for p in params], out=grads)
        t0 = time.perf_counter()
        comm.all_reduce(grads, op="avg")
        comm_s += time.perf_counter() - t0
        off = 0
        for p in params:
            p.grad.copy_(grads[off : off + p.numel()].view_as(p))
            off += p.numel()
        opt.step()
        losses.append(float(loss))
    algo = comm.communicator().last_algo
    ours = theirs = 0.0
    buf = grads.clone()
    for _ in range(TIMING_REPS):  # alternate, so both see the same machine load
        t0 = time.perf_counter()
        comm.all_reduce(buf)
        ours += time.perf_counter() - t0
        t0 = time.perf_counter()
        dist.all_reduce(buf)
        theirs += time.perf_counter() - t0
    flat = torch.cat([p.detach().reshape(-1) for p in params])
    both = [torch.empty_like(flat) for _ in range(2)]
    dist.all_gather(both, flat)
    if rank == 0:
        ref, _, _ = _model_and_batch()
        ref_params = [p for p in ref.parameters() if p.requires_grad]
        ref_opt = torch.optim.SGD(ref_params, lr=0.1)
        for _ in range(STEPS):
            _, loss = ref(x, y)
            ref_opt.zero_grad(set_to_none=True)
            loss.backward()
            ref_opt.step()
        ref_flat = torch.cat([p.detach().reshape(-1) for p in ref_params])
        out.write_text(
            json.dumps(
                {
                    "losses": losses,
                    "params": flat.numel(),
                    "grad_bytes": grads.numel() * 4,
                    "algo": algo,
                    "transport": comm.communicator().kind.value,
                    "allreduce_ms": 1e3 * ours / TIMING_REPS,
                    "gloo_ms": 1e3 * theirs / TIMING_REPS,
                    "step_comm_ms": 1e3 * comm_s / STEPS,
                    "ranks_identical": bool(torch.equal(both[0], both[1])),
                    "max_diff_vs_single_process": float((flat - ref_flat).abs().max()),
                }
            )
        )
    dist.barrier()
    os._exit(0)


def run(ctx: DemoContext) -> None:
    ctx.workdir.mkdir(parents=True, exist_ok=True)
    out = ctx.workdir / "comm_dp.json"
    out.unlink(missing_ok=True)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYWARE_COMM")}
    env["OMP_NUM_THREADS"] = "1"
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "anyware.demo.comm", str(r), str(port), str(out)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in range(2)
    ]
    try:
        for p in procs:
            p.wait(timeout=60)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    if not out.exists():
        errs = " | ".join((p.stderr.read() if p.stderr else "")[-400:] for p in procs)
        ctx.console.print(f"[red]the two-rank step did not finish: {errs}")
        ctx.results["comm"] = {"ok": False}
        return
    r = json.loads(out.read_text())
    ctx.console.print(
        f"2 ranks × {STEPS} data-parallel steps of the tiny GPT ({r['params']:,} parameters): "
        f"loss {r['losses'][0]:.3f} → {r['losses'][-1]:.3f}"
    )
    ctx.console.print(
        f"gradient allreduce ({r['grad_bytes'] / 2**20:.2f} MiB) with anyware.comm over "
        f"{r['transport']} ({r['algo']}): {r['allreduce_ms']:.2f} ms vs gloo {r['gloo_ms']:.2f} ms "
        f"= {r['allreduce_ms'] / r['gloo_ms']:.2f}× (same run, alternating)"
    )
    same = "bit-identical" if r["ranks_identical"] else "[red]DIFFERENT[/]"
    ctx.console.print(
        f"weights on both ranks: {same}; vs one process on the whole batch: max |Δ| "
        f"{r['max_diff_vs_single_process']:.2e}"
    )
    ctx.results["comm"] = {
        "ok": r["ranks_identical"],
        **{k: r[k] for k in ("algo", "allreduce_ms", "gloo_ms")},
        "max_diff_vs_single_process": r["max_diff_vs_single_process"],
    }


if __name__ == "__main__":
    worker(int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3]))
