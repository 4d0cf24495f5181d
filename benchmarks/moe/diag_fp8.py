"""Where an FP8 recipe's error goes on the trained MoE: per GEMM, per layer kind, per recipe piece.

On a trained fp32 checkpoint (``examples/moe/train.py --save``), for training batches it never
updates on, this runs the model in fp32 and under FP8 variants and reports, for every variant:

* per GEMM (forward, dgrad, wgrad) of the attention/dense linears and of the routed experts'
  grouped GEMMs: the SQNR of the FP8 product against the exact product of the *same* fp32
  operands, and the fraction of nonzero operand elements the cast flushed to zero;
* per parameter group (attention, dense MLP + shared experts, routed experts): the gradient's
  relative error, cosine and norm ratio against fp32 (a norm ratio below 1 is a systematic
  shrink, which noise alone does not produce);
* the held-out loss with the FP8 forward (no training): the part of a training gap that is
  the evaluation itself.

The variants swap one piece of ``deepseek-blockwise`` at a time (gradient element format,
power-of-two scales, weight scale layout) and against ``rowwise``; they patch
``OperandQuantizer`` in this process only, so both FP8 GEMMs (``Float8Linear`` and the grouped
one) see the same change.

Last, ``--train`` variants continue the checkpoint for ``--train-steps`` steps on each of
``--streams`` exactly as ``examples/moe/train.py --init-from`` does (same loop, bit-identical
fp32 losses), so a variant's effect on the stable-end gap can be measured too (~35 s per
variant and stream on 2 cpu cores; ``--train ""`` skips it).

    python benchmarks/moe/diag_fp8.py CKPT [--batches 4] [--train V,...] [--train-steps 200]
        [--streams 101,102,103] [--json F]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import torch
from torch import nn

from anyware.formats import convert_to_fp8_training
from anyware.formats.grouped import Fp8GroupedMatmul
from anyware.formats.spec import Granularity
from anyware.formats.training import Float8Linear, OperandQuantizer
from anyware.models.data import VOCAB_SIZE, batches, encode, make_text
from anyware.models.moe import MoEConfig, MoETransformer, convert_experts_to_fp8

SKIP = ("head", "gate", "index_q", "index_k", "index_w")  # as examples/moe/train.py

# name: (recipe, grad format override, weight granularity override, pow2 scales, where)
VARIANTS: dict[str, tuple[str, str | None, Granularity | None, bool, str]] = {
    "tensorwise-current": ("tensorwise-current", None, None, False, "all"),
    "mxfp8": ("mxfp8", None, None, False, "all"),
    "rowwise": ("rowwise", None, None, False, "all"),
    "rowwise+e4m3-grads": ("rowwise", "fp8_e4m3", None, False, "all"),
    "deepseek-blockwise": ("deepseek-blockwise", None, None, False, "all"),
    "blockwise+e5m2-grads": ("deepseek-blockwise", "fp8_e5m2", None, False, "all"),
    "blockwise+pow2-scales": ("deepseek-blockwise", None, None, True, "all"),
    "blockwise+1x128-weights": ("deepseek-blockwise", None, Granularity.BLOCK1X128, False, "all"),
    "blockwise-experts-only": ("deepseek-blockwise", None, None, False, "experts"),
    "blockwise-linears-only": ("deepseek-blockwise", None, None, False, "linears"),
}
TRAINED = "deepseek-blockwise,blockwise+e5m2-grads,blockwise+1x128-weights,blockwise-experts-only,blockwise-linears-only"


@contextlib.contextmanager
def patched(grad_fmt: str | None, weight_gran: Granularity | None) -> Iterator[None]:
    """One recipe piece swapped in ``OperandQuantizer`` for the duration."""
    fmt, gran = OperandQuantizer.fmt, OperandQuantizer.granularity

    def new_fmt(self: OperandQuantizer, role: str) -> str:
        return grad_fmt if grad_fmt and role == "grad" else fmt(self, role)

    def new_gran(self: OperandQuantizer, role: str) -> Granularity:
        return weight_gran if weight_gran and role == "weight" else gran(self, role)

    OperandQuantizer.fmt = new_fmt  # type: ignore[method-assign]
    OperandQuantizer.granularity = new_gran  # type: ignore[method-assign]
    try:
        yield
    finally:
        OperandQuantizer.fmt = fmt  # type: ignore[method-assign]
        OperandQuantizer.granularity = gran  # type: ignore[method-assign]


GEMM_OF_ROLES = {
    ("act", "weight"): "forward",
    ("grad", "weight"): "dgrad",
    ("grad", "act"): "wgrad",
    ("act", "grad"): "wgrad",
}


class GemmErrors:
    """Accumulates ‖exact‖², ‖fp8 − exact‖² and flush counts per (layer kind, GEMM)."""

    def __init__(self) -> None:
        self.acc: dict[tuple[str, str], list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])

    def add(self, kind: str, gemm: str, exact: torch.Tensor, got: torch.Tensor) -> None:
        a = self.acc[(kind, gemm)]
        a[0] += float(exact.double().pow(2).sum())
        a[1] += float((got.double() - exact.double()).pow(2).sum())

    def add_flush(self, kind: str, gemm: str, t: torch.Tensor, q: torch.Tensor) -> None:
        a = self.acc[(kind, gemm)]
        nz = t != 0
        a[2] += float((nz & (q == 0)).sum())
        a[3] += float(nz.sum())

    def table(self) -> dict[str, dict[str, float]]:
        out = {}
        for (kind, gemm), (sig, err, flushed, nonzero) in sorted(self.acc.items()):
            out[f"{kind} {gemm}"] = {
                "sqnr_db": 10 * math.log10(sig / err) if err else math.inf,
                "flushed": flushed / nonzero if nonzero else 0.0,
            }
        return out


@contextlib.contextmanager
def recording(errors: GemmErrors) -> Iterator[None]:
    """Wrap both FP8 GEMMs to compare each product with the exact one of the same operands."""
    lin_gemm, grp_gemm = Float8Linear.gemm, Fp8GroupedMatmul.gemm

    def wrap(kind: str, orig: Callable[..., torch.Tensor]) -> Callable[..., torch.Tensor]:
        def gemm(self: Any, a: torch.Tensor, ar: str, b: torch.Tensor, br: str, *rest: Any):  # type: ignore[no-untyped-def]
            got = orig(self, a, ar, b, br, *rest)
            which = GEMM_OF_ROLES[(ar, br)]
            if a.numel() and b.numel():
                errors.add(kind, which, a @ b.T, got)
                for t, role in ((a, ar), (b, br)):
                    if role == "grad" or which == "forward":
                        errors.add_flush(kind, f"{which} {role}", t, self.quant.fake(t, role))
            return got

        return gemm

    Float8Linear.gemm = wrap("linears", lin_gemm)  # type: ignore[method-assign]
    Fp8GroupedMatmul.gemm = wrap("experts", grp_gemm)  # type: ignore[method-assign]
    try:
        yield
    finally:
        Float8Linear.gemm = lin_gemm  # type: ignore[method-assign]
        Fp8GroupedMatmul.gemm = grp_gemm  # type: ignore[method-assign]


def group_of(name: str) -> str:
    if name.endswith(("w_gate_up", "w_down")):
        return "routed experts"
    if ".attn." in name:
        return "attention"
    if ".shared." in name or ".ffn.gate_up" in name or ".ffn.down" in name:
        return "dense MLP + shared experts"
    return "other (embed, norms, router, head)"


def load(ckpt: str, cfg: MoEConfig) -> MoETransformer:
    model = MoETransformer(cfg)
    model.load_state_dict(torch.load(ckpt, map_location="cpu", weights_only=True))
    return model


def grads(
    model: nn.Module, data: list[tuple[torch.Tensor, torch.Tensor]]
) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    for x, y in data:
        _, loss = model(x, y)
        assert loss is not None
        (loss / len(data)).backward()
    return {n: p.grad.detach().clone() for n, p in model.named_parameters() if p.grad is not None}


def build(ckpt: str, cfg: MoEConfig, variant: str | None) -> MoETransformer:
    model = load(ckpt, cfg)
    if variant is not None:
        recipe, _, _, pow2, where = VARIANTS[variant]
        if where != "experts":
            convert_to_fp8_training(model, recipe=recipe, skip=SKIP, pow2_scales=pow2)
        if where != "linears":
            convert_experts_to_fp8(model, recipe, pow2_scales=pow2)
    return model


def train_then_eval(
    ckpt: str, cfg: MoEConfig, variant: str | None, steps: int, stream: int, n_eval: int
) -> float:
    """examples/moe/train.py's stable-end continuation, in this process (so a variant's patch
    applies): AdamW, peak lr 1e-3, warm-up 10%, cosine to 0, the balancing bias update."""
    model = build(ckpt, cfg, variant)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    warm = max(1, steps // 10)

    def factor(step: int) -> float:
        if step < warm:
            return (step + 1) / warm
        return 0.5 * (1 + math.cos(math.pi * min((step - warm) / max(1, steps - warm), 1.0)))

    sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
    data = batches(encode(make_text(4000)), 16, cfg.seq_len, seed=stream)
    grad_fmt, weight_gran = (VARIANTS[variant][1:3]) if variant else (None, None)
    with patched(grad_fmt, weight_gran):
        for _ in range(steps):
            x, y = next(data)
            _, loss = model(x, y)
            assert loss is not None
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            for moe in model.moe_layers():
                moe.update_bias()
        return held_out(model, cfg, n_eval)


@torch.no_grad()
def held_out(model: nn.Module, cfg: MoEConfig, n: int) -> float:
    model.eval()
    it = batches(encode(make_text(400, seed=1000)), 16, cfg.seq_len, seed=1000)
    total = sum(float(model(*next(it))[1]) for _ in range(n))  # type: ignore[arg-type]
    model.train()
    return total / n


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("ckpt")
    ap.add_argument("--batches", type=int, default=4, help="training batches for the gradients")
    ap.add_argument("--eval-batches", type=int, default=16)
    ap.add_argument("--variants", default=",".join(VARIANTS))
    ap.add_argument(
        "--train", default=TRAINED, help="variants also trained at the stable end (paired gaps)"
    )
    ap.add_argument("--train-steps", type=int, default=200)
    ap.add_argument("--streams", default="101,102,103", help="batch streams (data seeds)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    torch.set_num_threads(1)
    cfg = MoEConfig(
        vocab_size=VOCAB_SIZE, seq_len=64, d_model=64, n_heads=4, n_layers=3,
        n_routed_experts=8, top_k=2, d_expert=32, d_ff=128,
    )  # fmt: skip  # examples/moe/train.py's defaults
    stream = batches(encode(make_text(4000)), 16, 64, seed=123)
    pairs = [next(stream) for _ in range(args.batches)]
    ref_model = load(args.ckpt, cfg)
    ref = grads(ref_model, pairs)
    ref_eval = held_out(ref_model, cfg, args.eval_batches)
    print(f"fp32 checkpoint {args.ckpt}: held-out loss {ref_eval:.5f}", flush=True)
    results: dict[str, object] = {"fp32_eval": ref_eval}
    for name in [v for v in args.variants.split(",") if v]:
        _, grad_fmt, weight_gran, _, _ = VARIANTS[name]
        model = build(args.ckpt, cfg, name)
        errors = GemmErrors()
        with patched(grad_fmt, weight_gran), recording(errors):
            got = grads(model, pairs)
        with patched(grad_fmt, weight_gran):
            ev = held_out(model, cfg, args.eval_batches)
        per_group: dict[str, dict[str, float]] = {}
        sums: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0, 0.0, 0.0])
        for n, g in ref.items():
            s = sums[group_of(n)]
            q = got[n].double()
            s[0] += float(g.double().pow(2).sum())
            s[1] += float((q - g.double()).pow(2).sum())
            s[2] += float(q.pow(2).sum())
            s[3] += float((q * g.double()).sum())
        for grp, (gg, ee, qq, qg) in sorted(sums.items()):
            per_group[grp] = {
                "rel_err": math.sqrt(ee / gg),
                "cosine": qg / math.sqrt(gg * qq),
                "norm_ratio": math.sqrt(qq / gg),
            }
        gemms = errors.table()
        fwd_gap = (ev - ref_eval) / ref_eval
        results[name] = {"forward_only_gap": fwd_gap, "gradients": per_group, "gemms": gemms}
        print(f"\n{name}: held-out loss with the FP8 forward {ev:.5f} ({fwd_gap:+.3%})")
        for grp, m in per_group.items():
            print(
                f"  grad {grp:<36} rel err {m['rel_err']:.4f}  cosine {m['cosine']:.6f}  "
                f"norm ratio {m['norm_ratio']:.5f}"
            )
        for key, m in gemms.items():
            if "sqnr_db" in m and not math.isinf(m["sqnr_db"]):
                print(f"  gemm {key:<30} SQNR {m['sqnr_db']:6.2f} dB", end="")
                print(f"  flushed {m['flushed']:.3%}" if m["flushed"] else "")
            else:
                print(f"  operand {key:<27} flushed {m['flushed']:.3%}")
    streams = [int(v) for v in args.streams.split(",") if v]
    trained = [v for v in args.train.split(",") if v]
    if trained and args.train_steps > 0:
        print(f"\nstable end: the checkpoint + {args.train_steps} steps, streams {streams}")
        fp32 = [
            train_then_eval(args.ckpt, cfg, None, args.train_steps, s, args.eval_batches)
            for s in streams
        ]
        print(f"  fp32 held-out {' / '.join(f'{v:.5f}' for v in fp32)}", flush=True)
        train_gaps: dict[str, list[float]] = {}
        for name in trained:
            got_losses = [
                train_then_eval(args.ckpt, cfg, name, args.train_steps, s, args.eval_batches)
                for s in streams
            ]
            gaps = [(v - r) / r for v, r in zip(got_losses, fp32, strict=True)]
            train_gaps[name] = gaps
            print(
                f"  {name:<26} mean gap {sum(gaps) / len(gaps):+.3%} "
                f"({' / '.join(f'{g:+.3%}' for g in gaps)})",
                flush=True,
            )
        results["stable_end"] = {"fp32": fp32, "gaps": train_gaps}
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
