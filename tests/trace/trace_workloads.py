"""Tiny models and fault injections for the tracer tests: each fault changes one op in one
module (or the optimizer, or one rank) of run B; run A is the same program without it."""

from __future__ import annotations

import math
import types
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

import anyware.trace as tr
from anyware.models.data import batches, encode, make_text
from anyware.models.gpt import GPT, GPTConfig


class MLP(nn.Module):
    """Four linear layers with GELU; ``layers.<i>``. A norm module for the fp16 fault."""

    def __init__(self, width: int = 32, fault: str | None = None) -> None:
        super().__init__()
        self.layers = nn.ModuleList(
            Linear(16 if i == 0 else width, width, fault if i == 2 else None) for i in range(4)
        )
        self.norm = Norm(fault == "fp16_overflow")
        self.head = nn.Linear(width, 8)
        self.fault = fault

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.layers:
            x = F.gelu(layer(x))
        return self.head(self.norm(x))


class Linear(nn.Linear):
    """nn.Linear that, given a fault, runs in bf16, through FP8 emulation, or sums its inner
    dimension in another order (same maths: the reduction-order control)."""

    def __init__(self, d_in: int, d_out: int, fault: str | None = None) -> None:
        super().__init__(d_in, d_out)
        self.fault = fault

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fault == "lower_dtype":
            lo = torch.bfloat16
            return F.linear(x.to(lo), self.weight.to(lo), self.bias.to(lo)).float()
        if self.fault == "fp8_matmul":
            f8 = torch.float8_e4m3fn
            return F.linear(x.to(f8).float(), self.weight.to(f8).float(), self.bias)
        if self.fault == "split_k":
            h = x.shape[-1] // 2
            w = self.weight
            return F.linear(x[..., h:], w[:, h:]) + F.linear(x[..., :h], w[:, :h], self.bias)
        return super().forward(x)


class Norm(nn.Module):
    """RMS norm computing its mean square in fp32 (run A) or, buggy, in the input dtype."""

    def __init__(self, in_input_dtype: bool) -> None:
        super().__init__()
        self.in_input_dtype = in_input_dtype

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sq = x.pow(2) if self.in_input_dtype else x.float().pow(2)
        return x * torch.rsqrt(sq.mean(-1, keepdim=True) + 1e-6).to(x.dtype)


class CNN(nn.Module):
    def __init__(self, fault: str | None = None) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, 4, 3, padding=1)
        self.act1 = Pow(0.5 if fault == "nan" else 2.0)
        self.conv2 = nn.Conv2d(4, 8, 3, padding=1)
        self.fc = Linear(8 * 4 * 4, 10, fault)
        self.fault = fault

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.act1(self.conv1(x))
        x = F.max_pool2d(torch.relu(self.conv2(x)), 2)
        return self.fc(x.flatten(1))


class Pow(nn.Module):
    def __init__(self, p: float) -> None:
        super().__init__()
        self.p = p

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.pow(x, self.p)


class _Square(torch.autograd.Function):
    """x² with a hand-written backward; ``factor`` 2 is right, anything else a backward bug."""

    @staticmethod
    def forward(ctx: Any, x: torch.Tensor, factor: float) -> torch.Tensor:
        ctx.save_for_backward(x)
        ctx.factor = factor
        return x * x

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        (x,) = ctx.saved_tensors
        return grad * ctx.factor * x, None


class Expert(nn.Module):
    def __init__(self, d: int, factor: float) -> None:
        super().__init__()
        self.up = nn.Linear(d, 2 * d)
        self.down = nn.Linear(2 * d, d)
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down(_Square.apply(self.up(x), self.factor))


class MoE(nn.Module):
    """Top-1 routed mixture of 4 experts (softmax router, gather by mask)."""

    def __init__(self, d: int = 16, fault: str | None = None) -> None:
        super().__init__()
        self.router = nn.Linear(d, 4)
        self.experts = nn.ModuleList(
            Expert(d, 2.02 if fault == "backward_bug" and i == 2 else 2.0) for i in range(4)
        )
        self.out = nn.Linear(d, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate = torch.softmax(self.router(x), dim=-1)
        weight, idx = gate.max(dim=-1)
        y = torch.zeros_like(x)
        for e, expert in enumerate(self.experts):
            sel = idx == e
            if sel.any():
                y[sel] = expert(x[sel]) * weight[sel].unsqueeze(-1)
        return self.out(y)


class BuggySGD(torch.optim.SGD):
    """SGD that applies twice the learning rate to one parameter."""

    def __init__(self, params: Any, lr: float, bad: torch.Tensor | None) -> None:
        super().__init__(params, lr=lr)
        self.bad = bad

    @torch.no_grad()
    def step(self, closure: Any = None) -> None:  # type: ignore[override]
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                lr = group["lr"] * (2.0 if p is self.bad else 1.0)
                p.add_(p.grad, alpha=-lr)


def _attn_forward(softmax_dim: int, scaled: bool) -> Any:
    def forward(self: Any, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.qkv(x).split(c, dim=2)
        q, k, v = (z.view(b, t, self.n_heads, self.head_dim).transpose(1, 2) for z in (q, k, v))
        att = q @ k.transpose(-2, -1)
        if scaled:
            att = att * self.scale
        att = att.masked_fill(~self.mask[:t, :t], float("-inf"))
        att = F.softmax(att, dim=softmax_dim)
        y = (att @ v).transpose(1, 2).reshape(b, t, c)
        return self.proj(y)

    return forward


def build(model: str, fault: str | None, dtype: torch.dtype = torch.float32) -> nn.Module:
    torch.manual_seed(0)
    if model == "gpt":
        m: nn.Module = GPT(GPTConfig(n_layers=2, d_model=32, seq_len=16))
        attn = m.blocks[1].attn  # type: ignore[index]
        if fault == "scale":
            attn.scale *= 1 + 1e-3
        elif fault == "softmax_dim":
            attn.forward = types.MethodType(_attn_forward(-2, True), attn)
        elif fault == "missing_scale":
            attn.forward = types.MethodType(_attn_forward(-1, False), attn)
    elif model == "mlp":
        m = MLP(fault=fault)
    elif model == "cnn":
        m = CNN(fault=fault)
    elif model == "moe":
        m = MoE(fault=fault)
    else:
        raise ValueError(model)
    return m.to(dtype)


def step_inputs(model: str, step: int, dtype: torch.dtype, scale: float = 1.0) -> tuple[Any, Any]:
    g = torch.Generator().manual_seed(100 + step)
    if model == "gpt":
        data = batches(encode(make_text(60, seed=step)), 4, 16, seed=step)
        return next(data)
    if model == "cnn":
        return torch.randn(4, 1, 8, 8, generator=g).to(dtype), torch.randint(
            0, 10, (4,), generator=g
        )
    width = 16
    n_out = 3 if model == "moe" else 8
    x = torch.randn(8, width, generator=g).to(dtype) * scale
    return x, torch.randint(0, n_out, (8,), generator=g)


def train(
    out: Path | None,
    model: str,
    fault: str | None = None,
    *,
    level: str = "op",
    steps: int = 1,
    dtype: torch.dtype = torch.float32,
    autocast: bool = False,
    scale: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Train ``steps`` steps (traced into ``out`` unless None); returns params and grads."""
    import contextlib

    m = build(model, fault, dtype)
    bad = None
    if fault == "optimizer_bug":
        bad = m.layers[1].weight  # type: ignore[index]
    opt = BuggySGD(m.parameters(), lr=0.05, bad=bad)
    ctx = tr.record(out, level) if out is not None else contextlib.nullcontext()
    with ctx:
        for s in range(steps):
            x, y = step_inputs(model, s, dtype, scale)
            amp = torch.autocast("cpu", torch.bfloat16) if autocast else contextlib.nullcontext()
            with amp:
                if model == "gpt":
                    _, loss = m(x, y)
                else:
                    loss = F.cross_entropy(m(x).float(), y)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
    state = {f"p:{n}": p.detach().clone() for n, p in m.named_parameters()}
    state.update({f"g:{n}": p.grad.clone() for n, p in m.named_parameters() if p.grad is not None})
    state["loss"] = loss.detach().clone()
    return state


def finite(x: float) -> bool:
    return math.isfinite(x)
