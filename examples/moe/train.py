"""Train a DeepSeek-style MoE with expert parallelism — written the way CUDA scripts are.

It asks for ``cuda`` devices and the ``nccl`` backend, as a script written for NVIDIA GPUs
does; ``anyware run`` makes it run unchanged on whatever device is present::

    anyware run --nproc 2 --monitor examples/moe/train.py --steps 50
    anyware run --nproc 2 --profile runs/prof examples/moe/train.py --steps 20
    anyware run --trace runs/fp32 examples/moe/train.py --steps 1
    anyware run --nproc 2 examples/moe/train.py --fp8 rowwise --steps 300 --out fp8.json
    anyware run examples/moe/train.py --steps 600 --save fp32.pt          # train, keep weights
    anyware run examples/moe/train.py --init-from fp32.pt --lr 1e-3 --steps 200 --fp8 rowwise

Launched without ``torchrun`` (no ``WORLD_SIZE``) it trains in one process. ``anyware run
--nproc N`` calls :func:`anyware_preflight` before it starts any rank, so a shape that cannot be
sharded over N ranks is one error in the launcher, not N tracebacks.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import math
import os
import time
from pathlib import Path

import torch
import torch.distributed as dist

from anyware.models import moe_parallel
from anyware.models.data import VOCAB_SIZE, batches, encode, make_text
from anyware.models.moe import MoEConfig, convert_experts_to_fp8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--steps", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=16, help="global batch, split over ranks")
    p.add_argument("--seq-len", type=int, default=64)
    p.add_argument("--d-model", type=int, default=64)
    p.add_argument("--layers", type=int, default=3)
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    p.add_argument(
        "--warmup", type=int, default=None, help="linear warm-up steps (default: 5%% of --steps)"
    )
    p.add_argument(
        "--schedule",
        choices=("cosine", "constant"),
        default="cosine",
        help="after warm-up: cosine decay to --min-lr-ratio × --lr, or constant",
    )
    p.add_argument("--min-lr-ratio", type=float, default=0.0, help="end of the cosine decay")
    p.add_argument("--seed", type=int, default=0, help="initial weights (and data order)")
    p.add_argument("--data-seed", type=int, default=None, help="batch order (default: --seed)")
    p.add_argument("--bias-rate", type=float, default=None, help="expert-balancing bias step γ")
    p.add_argument("--aux-alpha", type=float, default=None, help="sequence-wise balance loss α")
    p.add_argument(
        "--eval-batches", type=int, default=8, help="held-out batches for the final eval loss"
    )
    p.add_argument(
        "--fp8",
        default=None,
        help="train the linear layers and the experts' grouped GEMMs under an anyware.formats "
        "FP8 recipe "
        "(tensorwise-delayed, tensorwise-current, rowwise, deepseek-blockwise, mxfp8)",
    )
    p.add_argument("--sparse-attention", type=int, default=None, metavar="K", help="keys per query")
    p.add_argument(
        "--measure-overlap",
        type=int,
        default=0,
        metavar="N",
        help="time the token all-to-all against the shared-expert compute over the last N steps",
    )
    p.add_argument(
        "--init-from",
        default=None,
        metavar="CKPT",
        help="start from these weights (a --save file of the same shape) instead of --seed's",
    )
    p.add_argument(
        "--save",
        default=None,
        metavar="CKPT",
        help="save the trained weights (one file, unsharded)",
    )
    p.add_argument(
        "--perturb-ulp",
        action="store_true",
        help="move one initial weight by one ulp (a control for the noise of a comparison)",
    )
    p.add_argument("--log-every", type=int, default=10)
    p.add_argument("--out", default=None, help="write per-step losses and expert loads as JSON")
    return p.parse_args(argv)


def make_config(args: argparse.Namespace) -> MoEConfig:
    balance = {}
    if args.bias_rate is not None:
        balance["bias_update_rate"] = args.bias_rate
    if args.aux_alpha is not None:
        balance["aux_loss_alpha"] = args.aux_alpha
    return MoEConfig(
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
        **balance,
    )


def check_run(args: argparse.Namespace, world: int) -> MoEConfig:
    """The configuration, or a ``ValueError`` naming the numbers that cannot be run on ``world``
    ranks (experts not divisible by the ranks, top-k above the experts, an unsplittable batch)."""
    cfg = make_config(args)
    moe_parallel.check_shardable(cfg, world)
    if args.batch_size % world:
        raise ValueError(
            f"--batch-size {args.batch_size} is not divisible by the {world} ranks: choose a "
            f"multiple of {world}"
        )
    if args.init_from is not None and not Path(args.init_from).is_file():
        raise ValueError(f"--init-from {args.init_from}: no such file (write one with --save)")
    return cfg


def anyware_preflight(argv: list[str], world_size: int) -> None:
    """Called by ``anyware run --nproc N`` before any rank starts: raises ``ValueError`` for a
    run that cannot work on ``world_size`` ranks. Arguments argparse rejects are left to the
    ranks (they print the usage as usual)."""
    try:
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            args = parse_args(argv)
    except SystemExit:
        return
    check_run(args, world_size)


def load_weights(model: torch.nn.Module, path: str, cfg: MoEConfig, rank: int, world: int) -> None:
    """Load a ``--save`` file; under expert parallelism each rank keeps its own experts."""
    state = torch.load(path, map_location="cpu", weights_only=True)
    per = cfg.n_routed_experts // world
    for name, value in state.items():
        if moe_parallel.is_expert_param(name):
            state[name] = value[rank * per : (rank + 1) * per]
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).splitlines()[1].strip() if "\n" in str(e) else str(e)
        raise SystemExit(
            f"--init-from {path}: it does not fit this model ({first}); pass the shape options "
            "it was saved with"
        ) from None


def save_weights(model: torch.nn.Module, path: str, rank: int, world: int) -> None:
    """Write the unsharded weights (every rank's experts gathered), without FP8 state, atomically."""
    state = {k: v for k, v in model.state_dict().items() if "amax_history" not in k}
    if world > 1:
        for name, value in state.items():
            if moe_parallel.is_expert_param(name):
                parts = [torch.empty_like(value) for _ in range(world)]
                dist.all_gather(parts, value.contiguous())
                state[name] = torch.cat(parts)
    if rank == 0:
        tmp = f"{path}.tmp"
        torch.save({k: v.cpu() for k, v in state.items()}, tmp)
        os.replace(tmp, path)


def lr_factor(step: int, warmup: int, steps: int, schedule: str, floor: float = 0.0) -> float:
    """Linear warm-up, then cosine decay to ``floor`` (or constant): the loss settles at the
    end, so two runs' final losses compare the formats, not where each is in its oscillation."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = (step - warmup) / max(1, steps - warmup)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))


@torch.no_grad()
def evaluate(
    model: torch.nn.Module,
    cfg: MoEConfig,
    n: int,
    batch: int,
    rank: int,
    world: int,
    device: torch.device,
) -> float:
    """Mean cross-entropy over fixed held-out windows (the same text for every run), with the
    model as trained (an FP8 run evaluates with its FP8 forward)."""
    if n <= 0:
        return float("nan")
    model.eval()
    held = batches(encode(make_text(400, seed=1000)), batch, cfg.seq_len, seed=1000)
    part = batch // world
    total = torch.zeros((), device=device)
    for _ in range(n):
        x, y = next(held)
        x = x[rank * part : (rank + 1) * part].to(device)
        y = y[rank * part : (rank + 1) * part].to(device)
        total += model(x, y)[1]
    if world > 1:
        dist.all_reduce(total)
    model.train()
    return total.item() / (n * world)


def main() -> None:
    args = parse_args()
    distributed = "WORLD_SIZE" in os.environ
    world = int(os.environ.get("WORLD_SIZE", 1))
    # Check the shapes before joining the process group: a configuration that cannot be
    # sharded fails on every rank with the numbers named, before any collective starts.
    # (``anyware run --nproc`` already ran the same check in :func:`anyware_preflight`.)
    try:
        cfg = check_run(args, world)
    except ValueError as e:
        raise SystemExit(f"examples/moe/train.py: {e}") from None
    if distributed:
        dist.init_process_group(backend="nccl")
        rank, world = dist.get_rank(), dist.get_world_size()
        local_rank = int(os.environ.get("LOCAL_RANK", 0))
    else:
        rank, world, local_rank = 0, 1, 0
    torch.cuda.set_device(local_rank)
    device = torch.device("cuda", local_rank)

    model = moe_parallel.build(cfg, seed=args.seed).cuda()
    if args.init_from:
        load_weights(model, args.init_from, cfg, rank, world)
    if args.perturb_ulp:
        with torch.no_grad():
            w = model.layers[0].attn.wqkv.weight
            w[0, 0] = torch.nextafter(w[0, 0], torch.tensor(math.inf, device=w.device))
    if args.fp8:
        from anyware.formats import convert_to_fp8_training

        # The router, embeddings, norms and output head stay in high precision (DeepSeek-V3).
        report = convert_to_fp8_training(
            model, recipe=args.fp8, skip=("head", "gate", "index_q", "index_k", "index_w")
        )
        experts = convert_experts_to_fp8(model, args.fp8)
        if rank == 0:
            print(
                f"fp8 {args.fp8}: {len(report.converted)} linear layer(s) and the experts of "
                f"{len(experts)} MoE layer(s) converted",
                flush=True,
            )
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr)
    warmup = args.warmup if args.warmup is not None else max(1, args.steps // 20)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(step, warmup, args.steps, args.schedule, args.min_lr_ratio)
    )
    data_seed = args.seed if args.data_seed is None else args.data_seed
    data = batches(encode(make_text(4000)), args.batch_size, cfg.seq_len, seed=data_seed)
    part = args.batch_size // world

    history: dict[str, list[float]] = {"loss": [], "imbalance": []}
    t0 = time.perf_counter()
    overlap: dict[str, float] | None = None
    measure_from = max(args.steps - args.measure_overlap, 0) if args.measure_overlap > 0 else -1
    flights = contextlib.ExitStack()
    for step in range(args.steps):
        if step == measure_from:
            recorder = flights.enter_context(moe_parallel.record_flights())
        x, y = next(data)
        x = x[rank * part : (rank + 1) * part].to(device, non_blocking=True)
        y = y[rank * part : (rank + 1) * part].to(device, non_blocking=True)
        _, loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        moe_parallel.sync_gradients(model)
        opt.step()
        sched.step()
        loads = moe_parallel.update_router_bias(model)
        mean_loss = loss.detach().clone()
        if distributed:
            dist.all_reduce(mean_loss)
            mean_loss /= world
        history["loss"].append(mean_loss.item())
        history["imbalance"].append(max(moe_parallel.imbalance(load) for load in loads))
        if measure_from >= 0 and step == args.steps - 1:
            flights.close()
            overlap = recorder.summary()
        if rank == 0 and (step % args.log_every == 0 or step == args.steps - 1):
            print(
                f"step {step:4d} | loss {history['loss'][-1]:.4f} | "
                f"expert load max/mean {history['imbalance'][-1]:.2f}",
                flush=True,
            )
    torch.cuda.synchronize()
    seconds = time.perf_counter() - t0
    eval_loss = evaluate(model, cfg, args.eval_batches, args.batch_size, rank, world, device)
    if args.save:
        save_weights(model, args.save, rank, world)
    if rank == 0:
        print(f"held-out loss over {args.eval_batches} batches: {eval_loss:.5f}", flush=True)
        if overlap is not None:
            print(
                f"token all-to-all over the last {args.steps - measure_from} step(s): "
                f"{overlap['in_flight_ms']:.1f} ms in flight, {overlap['overlapped_ms']:.1f} ms "
                f"({overlap['overlap_fraction']:.0%}) overlapped with the shared experts, "
                f"{overlap['exposed_wait_ms']:.1f} ms waited after them",
                flush=True,
            )
    if rank == 0 and history["loss"]:
        tokens = args.steps * args.batch_size * cfg.seq_len
        print(
            f"done: {args.steps} steps on {world} rank(s), loss {history['loss'][0]:.3f} -> "
            f"{history['loss'][-1]:.3f} (uniform {math.log(VOCAB_SIZE):.3f}), "
            f"{tokens / seconds:,.0f} tokens/s, {cfg.flops_per_token() * tokens / seconds / 1e9:.2f} GFLOP/s"
        )
    if rank == 0 and args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(
                {
                    "world": world,
                    "fp8": args.fp8,
                    "eval_loss": eval_loss,
                    "overlap": overlap,
                    **history,
                },
                f,
            )
    if distributed:
        dist.destroy_process_group()


if __name__ == "__main__":
    main()
