# mypy: disable-error-code="no-untyped-def,untyped-decorator"
# (Triton kernels take untyped pointer arguments.)
"""Rotary position embedding (RoPE), "rotate-half" layout (Llama, GPT-NeoX, HF).

A head vector ``x`` of even size D is split into halves ``x₁ = x[:D/2]``, ``x₂ = x[D/2:]``
and each pair ``(x₁[i], x₂[i])`` at position p is rotated by the angle ``p·θᵢ``:
``y₁ = x₁·cos − x₂·sin``, ``y₂ = x₂·cos + x₁·sin``. The caller passes ``cos``/``sin`` of
shape ``(seq, D/2)`` (computed once per model), so the kernel is one read and one write of x.

A rotation's inverse is its transpose, so backward is the same kernel with ``−sin``. Gradients
for ``cos``/``sin`` are not produced: they are fixed tables, not parameters.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from anyware.ops import _checks
from anyware.ops._registry import Impl, OpSpec, register_op, resolve
from anyware.ops._triton import jit, next_pow2, row_block, tl, triton

SPEC = register_op(OpSpec(name="rope", summary="rotary position embedding (rotate-half)"))


def rope_reference(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """The specification for ``x (..., seq, D)`` and ``cos``/``sin`` ``(seq, D/2)``."""
    acc = torch.promote_types(x.dtype, torch.float32)
    x1, x2 = x.to(acc).chunk(2, dim=-1)
    c, s = cos.to(acc), sin.to(acc)
    return torch.cat((x1 * c - x2 * s, x2 * c + x1 * s), dim=-1).to(x.dtype)


# --- kernel ---------------------------------------------------------------------------------
@jit
def _rope_kernel(
    x_ptr, cos_ptr, sin_ptr, y_ptr, rows, seq, half, SIGN: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_H: tl.constexpr,
):  # fmt: skip
    r = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    h = tl.arange(0, BLOCK_H)
    mask = (r[:, None] < rows) & (h[None, :] < half)
    base = r[:, None].to(tl.int64) * (2 * half) + h[None, :]
    pos = (r % seq)[:, None] * half + h[None, :]
    x1 = tl.load(x_ptr + base, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(x_ptr + base + half, mask=mask, other=0.0).to(tl.float32)
    c = tl.load(cos_ptr + pos, mask=mask, other=0.0).to(tl.float32)
    s = SIGN * tl.load(sin_ptr + pos, mask=mask, other=0.0).to(tl.float32)
    tl.store(y_ptr + base, (x1 * c - x2 * s).to(y_ptr.dtype.element_ty), mask=mask)
    tl.store(y_ptr + base + half, (x2 * c + x1 * s).to(y_ptr.dtype.element_ty), mask=mask)


# --- launcher and registration -------------------------------------------------------------
def _launch(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, sign: float) -> torch.Tensor:
    seq, d = x.shape[-2], x.shape[-1]
    rows = math.prod(x.shape[:-1])
    y = torch.empty_like(x)
    if rows:
        bm = row_block(d)
        _rope_kernel[(triton.cdiv(rows, bm),)](
            x, cos, sin, y, rows, seq, d // 2, SIGN=sign, BLOCK_M=bm, BLOCK_H=next_pow2(d // 2)
        )
    return y


@torch.library.custom_op("anyware::rope", mutates_args=())
def _rope_op(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return _launch(x, cos, sin, 1.0)


@_rope_op.register_fake
def _(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(x)


@torch.library.custom_op("anyware::rope_backward", mutates_args=())
def _rope_bwd_op(dy: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return _launch(dy.contiguous(), cos, sin, -1.0)


@_rope_bwd_op.register_fake
def _(dy: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    return torch.empty_like(dy)


def _setup(ctx: Any, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
    ctx.save_for_backward(inputs[1], inputs[2])


def _backward(ctx: Any, dy: torch.Tensor) -> tuple[torch.Tensor, None, None]:
    cos, sin = ctx.saved_tensors
    return _rope_bwd_op(dy, cos, sin), None, None


_rope_op.register_autograd(_backward, setup_context=_setup)


# --- public function -----------------------------------------------------------------------
def rope(
    x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor, *, impl: str | None = None
) -> torch.Tensor:
    """Rotate ``x (..., seq, D)`` by ``cos``/``sin`` of shape ``(seq, D/2)``."""
    op = "rope"
    for name, t in (("x", x), ("cos", cos), ("sin", sin)):
        _checks.tensor(op, name, t)
    _checks.ndim(op, "x", x, range(2, 9), "at least 2-D (..., seq, D)")
    if x.shape[-1] % 2:
        raise ValueError(f"rope: x's last dim (head size) must be even, got {x.shape[-1]}")
    want = (x.shape[-2], x.shape[-1] // 2)
    for name, t in (("cos", cos), ("sin", sin)):
        if tuple(t.shape) != want:
            raise ValueError(
                f"rope: {name} has shape {tuple(t.shape)}, expected (seq, D/2) = {want}"
            )
    device = _checks.same_device(op, x=x, cos=cos, sin=sin)
    if resolve(op, impl, device, unsupported=_checks.unsupported_dtype(x)) is Impl.REFERENCE:
        return rope_reference(x, cos, sin)
    return _rope_op(x.contiguous(), cos.contiguous(), sin.contiguous())
