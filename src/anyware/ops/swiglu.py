# mypy: disable-error-code="no-untyped-def,untyped-decorator"
# (Triton kernels take untyped pointer arguments.)
"""SwiGLU gate: ``silu(gate) · up``, the activation of Llama/DeepSeek MLPs.

Elementwise and memory-bound: the kernel reads gate and up once and writes the product,
where eager PyTorch also writes and re-reads ``silu(gate)``. Backward recomputes the sigmoid
instead of storing it (one more exp is cheaper than a tensor round trip):
``d gate = dy · up · σ(g) · (1 + g · (1 − σ(g)))``, ``d up = dy · g · σ(g)``.
"""

from __future__ import annotations

from typing import Any

import torch

from anyware.ops import _checks
from anyware.ops._registry import Impl, OpSpec, register_op, resolve
from anyware.ops._triton import interpreted, jit, tl, triton

SPEC = register_op(OpSpec(name="swiglu", summary="silu(gate) * up, fused"))


def _block() -> int:
    """Elements per program: the interpreter is fastest with few fat programs; 1024 keeps a
    GPU busy."""
    return 16384 if interpreted() else 1024


def swiglu_reference(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    """The specification, in fp32 (fp64 for fp64), rounded once."""
    acc = torch.promote_types(gate.dtype, torch.float32)
    g = gate.to(acc)
    return (g * torch.sigmoid(g) * up.to(acc)).to(gate.dtype)


# --- kernels --------------------------------------------------------------------------------
@jit
def _fwd_kernel(g_ptr, u_ptr, y_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(u_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y = g * tl.sigmoid(g) * u
    tl.store(y_ptr + offs, y.to(y_ptr.dtype.element_ty), mask=mask)


@jit
def _bwd_kernel(dy_ptr, g_ptr, u_ptr, dg_ptr, du_ptr, n, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < n
    dy = tl.load(dy_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    g = tl.load(g_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    u = tl.load(u_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    s = tl.sigmoid(g)
    silu = g * s
    tl.store(
        dg_ptr + offs, (dy * u * s * (1.0 + g * (1.0 - s))).to(dg_ptr.dtype.element_ty), mask=mask
    )
    tl.store(du_ptr + offs, (dy * silu).to(du_ptr.dtype.element_ty), mask=mask)


# --- launchers and registration ------------------------------------------------------------
@torch.library.custom_op("anyware::swiglu", mutates_args=())
def _swiglu_op(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    y = torch.empty_like(gate)
    n = gate.numel()
    if n:
        _fwd_kernel[(triton.cdiv(n, _block()),)](gate, up, y, n, BLOCK=_block())
    return y


@_swiglu_op.register_fake
def _(gate: torch.Tensor, up: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(gate)


@torch.library.custom_op("anyware::swiglu_backward", mutates_args=())
def _swiglu_bwd_op(
    dy: torch.Tensor, gate: torch.Tensor, up: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    dg, du = torch.empty_like(gate), torch.empty_like(up)
    n = gate.numel()
    if n:
        _bwd_kernel[(triton.cdiv(n, _block()),)](
            dy.contiguous(), gate, up, dg, du, n, BLOCK=_block()
        )
    return dg, du


@_swiglu_bwd_op.register_fake
def _(dy: torch.Tensor, gate: torch.Tensor, up: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    return torch.empty_like(gate), torch.empty_like(up)


def _setup(ctx: Any, inputs: tuple[torch.Tensor, torch.Tensor], output: torch.Tensor) -> None:
    ctx.save_for_backward(*inputs)


def _backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    gate, up = ctx.saved_tensors
    return _swiglu_bwd_op(dy, gate, up)


_swiglu_op.register_autograd(_backward, setup_context=_setup)


# --- public function -----------------------------------------------------------------------
def swiglu(gate: torch.Tensor, up: torch.Tensor, *, impl: str | None = None) -> torch.Tensor:
    """``silu(gate) * up`` for two tensors of one shape and dtype."""
    op = "swiglu"
    _checks.tensor(op, "gate", gate)
    _checks.tensor(op, "up", up)
    if gate.shape != up.shape:
        raise ValueError(
            f"swiglu: up has shape {tuple(up.shape)} but gate has {tuple(gate.shape)}; they must match"
        )
    _checks.same_dtype(op, gate=gate, up=up)
    device = _checks.same_device(op, gate=gate, up=up)
    if resolve(op, impl, device, unsupported=_checks.unsupported_dtype(gate)) is Impl.REFERENCE:
        return swiglu_reference(gate, up)
    return _swiglu_op(gate.contiguous(), up.contiguous())
