"""Train a DeepSeek-style MoE with expert parallelism — written the way CUDA scripts are.

It asks for ``cuda`` devices and the ``nccl`` backend, as a script written for NVIDIA GPUs
does; ``anyware run`` makes it run unchanged on whatever device is present::

    anyware run --nproc 2 --monitor examples/moe/train.py --steps 50
    anyware run --nproc 2 --profile runs/prof examples/moe/train.py --steps 20
    anyware run --trace runs/fp32 examples/moe/train.py --steps 1
    anyware run --nproc 2 examples/moe/train.py --fp8 rowwise --steps 300 --out fp8.json

Launched without ``torchrun`` (no ``WORLD_SIZE``) it trains in one process.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time

import torch
import torch.distributed as dist

from anyware.models import moe_parallel
from anyware.models.data import VOCAB_SIZE, batches, encode, make_text
from anyware.models.moe import MoEConfig


def parse_args() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=16, help="global batch, split over ranks")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--bias-rate", type=float, default=1e-3, help="expert-balancing bias step")
    p.add_argument(
        "--fp8",
        default=None,
        help="train the linear layers under an anyware.formats FP8 recipe "
        "(tensorwise-delayed, tensorwise-current, rowwise, deepseek-blockwise, mxfp8)",
    )
    p.add_argument("--sparse-attention", type=int, default=None, metavar="K", help="keys per query")
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--out", default=None, help="write per-step losses and expert loads as JSON")
    return p.parse_args()


def main() -> None:
    args = parse_args()
    distributed = "WORLD_SIZE" in os.environ
    if distributed:
        dist.init_process_group(backend="nccl")
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
    else:
        rank, world, local_rank = 0, 1, 0
    torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank)

    cfg = MoEConfig(
        vocab_size=VOCAB_SIZE,
        seq_len=args.seq_len,
        d_model=args.d_model,
        n_heads=4,
        n_layers=args.layers,
        n_routed_experts=args.experts,
        top_k=args.top_k,
        d_expert=args.d_model // 2,
        d_ff=2 * args.d_model,
        sparse_attention_topk=args.sparse_attention,
        bias_update_rate=args.bias_rate,
    )
    if args.batch_size % world:
        raise SystemExit(f"--batch-size {args.batch_size} must be divisible by the {world} ranks")
    model = moe_parallel.build(cfg, seed=args.seed).cuda()
    if args.fp8:
        from anyware.formats import convert_to_fp8_training

        # The router and the output head stay in high precision, as in DeepSeek-V3.
        report = convert_to_fp8_training(
            model, recipe=args.fp8, skip=("head", "gate", "index_q", "index_k", "index_w")
        )
        if rank == 0:
            print(f"fp8 {args.fp8}: {len(report.converted)} linear layer(s) converted", flush=True)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    data = batches(encode(make_text(4000)), args.batch_size, cfg.seq_len, seed=args.seed)
    part = args.batch_size // world

    history: dict[str, list[float]] = {"loss": [], "imbalance": []}
    t0 = time.perf_counter()
    for step in range(args.steps):
        x, y = next(data)
        x = x[rank * part : (rank + 1) * part].to(device, non_blocking=True)
        y = y[rank * part : (rank + 1) * part].to(device, non_blocking=True)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        moe_parallel.sync_gradients(model)
        opt.step()
        loads = moe_parallel.update_router_bias(model)
        mean_loss = loss.detach().clone()
        if distributed:
            dist.all_reduce(mean_loss)
            mean_loss /= world
        history["loss"].append(mean_loss.item())
        history["imbalance"].append(max(moe_parallel.imbalance(load) for load in loads))
        if rank == 0 and (step % args.log_every == 0 or step == args.steps - 1):
            print(
                f"step {step:4d} | loss {history['loss'][-1]:.4f} | "
                f"expert load max/mean {history['imbalance'][-1]:.2f}",
                flush=True,
            )
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    if rank == 0:
        tokens = args.steps * args.batch_size * cfg.seq_len
        print(
            f"done: {args.steps} steps on {world} rank(s), loss {history['loss'][0]:.3f} -> "
            f"{history['loss'][-1]:.3f} (uniform {math.log(VOCAB_SIZE):.3f}), "
            f"{tokens / seconds:,.0f} tokens/s, {cfg.flops_per_token() * tokens / seconds / 1e9:.2f} GFLOP/s"
        )
        if args.out:
            with open(args.out, "w", encoding="utf-8") as f:
                json.dump({"world": world, "fp8": args.fp8, **history}, f)
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
