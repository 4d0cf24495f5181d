"""Demo section: the tiny GPT, unmodified, runs on the operator library under ``ops.use()``,
and the table shows which implementation each overridden op took and why.

On a cpu the default is the reference (Triton's interpreter is a correctness tool), so the
section also runs one training step of the same model in a child process with
``TRITON_INTERPRET=1`` and ``ANYWARE_OPS_IMPL=triton``: every overridden op then goes through
its Triton kernel, and the loss and gradients are compared with plain PyTorch.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from anyware.demo import DemoContext

STEPS = 3


def _model_and_batch(device: Any, *, layers: int, seq: int, batch: int) -> tuple[Any, Any, Any]:
    import torch

    from anyware.models.data import VOCAB_SIZE, batches, encode, make_text
    from anyware.models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=VOCAB_SIZE, seq_len=seq, d_model=64, n_heads=4, n_layers=layers)
    model = GPT(cfg).to(device)
    x, y = next(batches(encode(make_text(400)), batch_size=batch, seq_len=seq))
    return model, x.to(device), y.to(device)


def _kernel_step() -> dict[str, Any]:
    """One forward+backward on the Triton kernels vs plain PyTorch (run in the child)."""
    import torch

    from anyware import ops

    model, x, y = _model_and_batch(torch.device("cpu"), layers=1, seq=32, batch=2)
    _, ref_loss = model(x, y)
    assert ref_loss is not None
    ref_loss.backward()
    ref_grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
    model.zero_grad(set_to_none=True)
    t0 = time.perf_counter()
    with ops.use() as usage:
        _, loss = model(x, y)
        assert loss is not None
        loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    grad_diff = max(float((a - b).abs().max()) for a, b in zip(grads, ref_grads, strict=True))
    return {
        "calls": usage.calls,
        "loss": float(loss.detach()),
        "loss_diff": abs(float(loss.detach()) - float(ref_loss.detach())),
        "grad_max_diff": grad_diff,
        "seconds": time.perf_counter() - t0,
    }


def run(ctx: DemoContext) -> None:
    import torch
    from rich.table import Table

    from anyware import ops, runtime
    from anyware.demo._workload import train_step

    backend = runtime.select(ctx.device)
    model, x, y = _model_and_batch(backend.device(), layers=2, seq=64, batch=4)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    losses = []
    with ops.use() as usage:
        for _ in range(STEPS):
            losses.append(float(train_step(model, opt, x, y).detach()))
    t = Table(
        title=f"GPT under anyware.ops.use() on {backend.name}: {STEPS} steps", title_justify="left"
    )
    for col in ("op", "implementation", "calls", "why"):
        t.add_column(col)
    for op, by_impl in sorted(usage.calls.items()):
        for impl, n in sorted(by_impl.items()):
            t.add_row(op, impl, str(n), ops.choose(op).reason)
    ctx.console.print(t)
    ctx.console.print(
        f"loss {losses[0]:.3f} → {losses[-1]:.3f}; layer norms and GELU stay on aten (no op here)"
    )
    result: dict[str, Any] = {"calls": usage.calls, "losses": losses}

    if backend.device_type == "cpu":
        child = _run_child()
        result["kernels"] = child
        if "error" in child:
            ctx.console.print(
                f"[yellow]Triton kernels in the interpreter: skipped ({child['error']})[/]"
            )
        else:
            kinds = ", ".join(
                f"{op} ×{sum(v.values())}" for op, v in sorted(child["calls"].items())
            )
            ctx.console.print(
                f"Triton kernels (interpreter, one step): {kinds}; loss differs from PyTorch by "
                f"{child['loss_diff']:.1e}, gradients by at most {child['grad_max_diff']:.1e}"
            )
    ctx.results["ops"] = result


def _run_child() -> dict[str, Any]:
    try:
        import triton  # noqa: F401
    except ImportError:
        return {"error": "triton is not installed"}
    env = {
        **os.environ,
        "TRITON_INTERPRET": "1",
        "ANYWARE_OPS_IMPL": "triton",
        "ANYWARE_DEVICE": "cpu",
    }
    proc = subprocess.run(
        [sys.executable, "-m", "anyware.demo.ops"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": tail}
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":  # the child: python -m anyware.demo.ops
    print(json.dumps(_kernel_step()))
