"""Record overhead: traced ÷ untraced wall time of training steps of the small GPT.

Anchor (published, Huawei msprobe statistics mode): ×4.5 at module level, ×26 at API level,
×38 mixed. Target here: ≤ ×1.5 at module level, ≤ ×3 at op level.

Two models: the small GPT (4 layers, d_model 256, batch 8×64) and the tiny one of the tests
(2 layers, d_model 64, batch 16×64), whose steps are so short that per-tensor costs weigh
most. Runs are interleaved (untraced, module, op, mix, untraced, ...), every repeat gives one
ratio per level against the untraced run of the same repeat, and the median of those ratios
is reported. Both wall time and the process's CPU time are measured (one torch thread by
default): on a shared, busy machine CPU time is the figure to read, since wall time there
mostly measures the other tenants. Usage::

    python benchmarks/trace/bench_overhead.py [--models small,tiny] [--steps 4] [--repeats 5]
"""

from __future__ import annotations

import argparse
import contextlib
import statistics
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


MODELS = {
    "small": (GPTConfig(n_layers=4, d_model=256, seq_len=64, n_heads=4), 8),
    "tiny": (GPTConfig(n_layers=2, d_model=64, seq_len=64, n_heads=4), 16),
}
LEVELS = (None, "module", "op", "mix")


def bench(name: str, steps: int, repeats: int, threads: int, root: Path) -> None:
    cfg, batch = MODELS[name]
    ratios: dict[str, list[tuple[float, float]]] = {lv: [] for lv in ("module", "op", "mix")}
    base: list[tuple[float, float]] = []
    for r in range(repeats):
        got: dict[str, tuple[float, float]] = {}
        for level in LEVELS:
            label = level or "untraced"
            got[label] = steps_time(level, steps, batch, cfg, root / f"{name}-{label}{r}")
            w, c = got[label]
            print(
                f"  {name} repeat {r}: {label:8s} {w * 1e3:8.1f} ms/step wall, {c * 1e3:8.1f} ms CPU",
                flush=True,
            )
        base.append(got["untraced"])
        for lv in ratios:
            ratios[lv].append((got[lv][0] / got["untraced"][0], got[lv][1] / got["untraced"][1]))
    print(
        f"{name} GPT: {cfg.n_layers} layers, d_model {cfg.d_model}, batch {batch}×{cfg.seq_len} "
        f"tokens, AdamW; {steps} steps, median of {repeats} interleaved repeats; "
        f"{threads} torch thread(s)"
    )
    bw = statistics.median(w for w, _ in base)
    bc = statistics.median(c for _, c in base)
    print(f"untraced          {bw * 1e3:8.1f} ms/step wall  {bc * 1e3:8.1f} ms CPU")
    for level, rs in ratios.items():
        rw = statistics.median(w for w, _ in rs)
        rc = statistics.median(c for _, c in rs)
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--models", default="small,tiny", help=f"comma list of {sorted(MODELS)}")
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args()
    names = [m for m in args.models.split(",") if m]
    bad = [m for m in names if m not in MODELS]
    if bad:
        raise SystemExit(f"unknown model(s) {bad}; choose from {sorted(MODELS)}")
    torch.set_num_threads(args.threads)
    with tempfile.TemporaryDirectory() as d:
        for name in names:
            bench(name, args.steps, args.repeats, args.threads, Path(d))


if __name__ == "__main__":
    main()
