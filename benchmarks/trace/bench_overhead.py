"""Record overhead: traced ÷ untraced wall time of training steps of the small GPT.

Anchor (published, Huawei msprobe statistics mode): ×4.5 at module level, ×26 at API level,
×38 mixed. Target here: ≤ ×1.5 at module level, ≤ ×3 at op level.

Runs are interleaved (untraced, module, op, mix, untraced, ...) and the best of ``--repeats``
is kept for each. Both wall time and the process's CPU time are measured (one torch thread by
default): on a shared, busy machine CPU time is the figure to read, since wall time there
mostly measures the other tenants. Usage::

    python benchmarks/trace/bench_overhead.py [--steps 8] [--repeats 3] [--batch 16]
"""

from __future__ import annotations

import argparse
import contextlib
import tempfile
import time
from pathlib import Path

import torch

import anyware.trace as tr
from anyware.models.data import batches, encode, make_text
from anyware.models.gpt import GPT, GPTConfig

MSPROBE = {"module": 4.5, "op": 26.0, "mix": 38.0}
TARGET = {"module": 1.5, "op": 3.0, "mix": None}


def steps_time(
    level: str | None, steps: int, batch: int, cfg: GPTConfig, out: Path
) -> tuple[float, float]:
    torch.manual_seed(0)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = batches(encode(make_text(3000)), batch, cfg.seq_len)
    ctx = tr.record(out, level) if level else contextlib.nullcontext()
    with ctx:
        x, y = next(data)  # warm-up step (allocator, sketch matrices) outside the timing
        _, loss = model(x, y)
        loss.backward()
        opt.step()
        opt.zero_grad()
        t0, c0 = time.perf_counter(), time.process_time()
        for _ in range(steps):
            x, y = next(data)
            _, loss = model(x, y)
            assert loss is not None
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
    return dt / steps, dc / steps


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--d-model", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    cfg = GPTConfig(n_layers=args.layers, d_model=args.d_model, seq_len=64, n_heads=4)
    torch.set_num_threads(args.threads)
    wall: dict[str, float] = {}
    cpu: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as d:
        for r in range(args.repeats):
            for level in (None, "module", "op", "mix"):
                name = level or "untraced"
                w, c = steps_time(level, args.steps, args.batch, cfg, Path(d) / f"{name}{r}")
                wall[name] = min(wall.get(name, float("inf")), w)
                cpu[name] = min(cpu.get(name, float("inf")), c)
                print(
                    f"  repeat {r}: {name:8s} {w * 1e3:8.1f} ms/step wall, {c * 1e3:8.1f} ms CPU",
                    flush=True,
                )
    print(
        f"small GPT: {args.layers} layers, d_model {args.d_model}, batch {args.batch}×64 tokens, "
        f"AdamW; {args.steps} steps, best of {args.repeats}; {args.threads} torch thread(s)"
    )
    print(
        f"untraced          {wall['untraced'] * 1e3:8.1f} ms/step wall  {cpu['untraced'] * 1e3:8.1f} ms CPU"
    )
    for level in ("module", "op", "mix"):
        rw, rc = wall[level] / wall["untraced"], cpu[level] / cpu["untraced"]
        target = TARGET[level]
        verdict = (
            ""
            if target is None
            else f" (target ≤ ×{target:g}: {'met' if rc <= target else 'MISSED'})"
        )
        print(
            f"{level:6s} traced  overhead ×{rw:.2f} wall, ×{rc:.2f} CPU   msprobe ×{MSPROBE[level]:g} "
            f"→ {MSPROBE[level] / rc:.1f}× less overhead{verdict}"
        )


if __name__ == "__main__":
    main()
