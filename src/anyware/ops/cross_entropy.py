# mypy: disable-error-code="no-untyped-def,untyped-decorator"
# (Triton kernels take untyped pointer arguments.)
"""Softmax cross-entropy that never holds more than a chunk of logits in memory.

For a row of logits x and target t: ``loss = logsumexp(x) − x[t]``, and
``d loss / d x = softmax(x) − onehot(t)``. The kernel streams a row in ``BLOCK_V`` slices with
the online-softmax recurrence (running max m, running sum l rescaled by ``exp(m_old − m_new)``),
so the vocabulary can be any size, and stores one fp32 log-sum-exp per row. Backward recomputes
``softmax = exp(x − lse)`` from it instead of keeping probabilities.

With ``head_weight`` the input is the last hidden state and the logits ``hidden @ Wᵀ`` are
made and consumed ``chunk_size`` rows at a time, forward and backward (Liger's fused linear
cross-entropy). Full logits are never materialised: at vocab 128K and 8K tokens that is 4 GiB
of fp32 saved. Backward recomputes each chunk's logits (one more GEMM, ~33% of the op's FLOPs)
rather than storing gradients in forward, so it is exact for any reduction and costs nothing
at inference. The GEMMs go to aten (cuBLAS, rocBLAS, ...): the win here is memory, not FLOPs.
"""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

from anyware.ops import _checks
from anyware.ops._registry import Impl, OpSpec, register_op, resolve
from anyware.ops._triton import interpreted, jit, next_pow2, tl, triton

SPEC = register_op(
    OpSpec(
        name="cross_entropy",
        summary="softmax cross-entropy, chunked (optionally fused with the LM head)",
    )
)
REDUCTIONS = ("mean", "sum", "none")


def cross_entropy_reference(
    logits_or_hidden: torch.Tensor,
    target: torch.Tensor,
    head_weight: torch.Tensor | None = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
) -> torch.Tensor:
    """The specification: logits in the input dtype (``hidden @ Wᵀ`` when given), the loss in
    fp32 (fp64 for fp64), with ``torch.nn.functional.cross_entropy``'s ignore/mean rules."""
    logits = logits_or_hidden if head_weight is None else logits_or_hidden @ head_weight.t()
    acc = torch.promote_types(logits.dtype, torch.float32)
    v = logits.shape[-1]
    return F.cross_entropy(
        logits.reshape(-1, v).to(acc),
        target.reshape(-1),
        ignore_index=ignore_index,
        reduction=reduction,
    ).reshape(target.shape if reduction == "none" else ())


# --- kernels --------------------------------------------------------------------------------
@jit
def _fwd_kernel(
    x_ptr, t_ptr, loss_ptr, lse_ptr, M, V, stride, ignore_index,
    BLOCK_M: tl.constexpr, BLOCK_V: tl.constexpr,
):  # fmt: skip
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < M
    tgt = tl.load(t_ptr + rows, mask=rmask, other=ignore_index)
    base = x_ptr + rows[:, None].to(tl.int64) * stride
    m = tl.full((BLOCK_M,), float("-inf"), tl.float32)
    m_safe = tl.zeros((BLOCK_M,), tl.float32)
    lsum = tl.zeros((BLOCK_M,), tl.float32)
    x_t = tl.zeros((BLOCK_M,), tl.float32)
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        mask = rmask[:, None] & (cols[None, :] < V)
        x = tl.load(base + cols[None, :], mask=mask, other=float("-inf")).to(tl.float32)
        m_new = tl.maximum(m, tl.max(x, axis=1))
        # a row whose every logit so far is -inf has no finite max: shift by 0 instead
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        lsum = lsum * tl.exp(m - m_safe) + tl.sum(tl.exp(x - m_safe[:, None]), axis=1)
        m = m_new
        x_t += tl.sum(tl.where(cols[None, :] == tgt[:, None], x, 0.0), axis=1)
    log_l = tl.log(tl.where(rmask, lsum, 1.0))
    lse = m_safe + log_l
    valid = rmask & (tgt != ignore_index)
    # (m − x_t) + log l, not lse − x_t: near fp32's max, m + log l rounds back to m
    tl.store(loss_ptr + rows, tl.where(valid, (m_safe - x_t) + log_l, 0.0), mask=rmask)
    tl.store(lse_ptr + rows, lse, mask=rmask)


@jit
def _bwd_kernel(
    x_ptr, t_ptr, lse_ptr, g_ptr, dx_ptr, M, V, stride, ignore_index,
    BLOCK_M: tl.constexpr, BLOCK_V: tl.constexpr,
):  # fmt: skip
    rows = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    rmask = rows < M
    tgt = tl.load(t_ptr + rows, mask=rmask, other=ignore_index)
    lse = tl.load(lse_ptr + rows, mask=rmask, other=0.0)
    g = tl.load(g_ptr + rows, mask=rmask, other=0.0).to(tl.float32)
    g = tl.where(tgt != ignore_index, g, 0.0)
    for v0 in range(0, V, BLOCK_V):
        cols = v0 + tl.arange(0, BLOCK_V)
        mask = rmask[:, None] & (cols[None, :] < V)
        offs = rows[:, None].to(tl.int64) * stride + cols[None, :]
        x = tl.load(x_ptr + offs, mask=mask, other=float("-inf")).to(tl.float32)
        p = tl.exp(x - lse[:, None]) - tl.where(cols[None, :] == tgt[:, None], 1.0, 0.0)
        tl.store(dx_ptr + offs, (p * g[:, None]).to(dx_ptr.dtype.element_ty), mask=mask)


# --- launchers ------------------------------------------------------------------------------
def _blocks(m: int, v: int) -> tuple[int, int]:
    if interpreted():  # few fat programs: the interpreter costs per program and per loop step
        bv = min(next_pow2(v), 4096)
        return max(1, min(next_pow2(m), 16384 // bv)), bv
    return 1, min(next_pow2(v), 4096)


def _forward(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    m, v = logits.shape
    loss = torch.empty(m, dtype=torch.float32, device=logits.device)
    lse = torch.empty(m, dtype=torch.float32, device=logits.device)
    if m:
        bm, bv = _blocks(m, v)
        _fwd_kernel[(triton.cdiv(m, bm),)](
            logits, target, loss, lse, m, v, logits.stride(0), ignore_index, BLOCK_M=bm, BLOCK_V=bv
        )
    return loss, lse


def _backward_logits(
    logits: torch.Tensor,
    target: torch.Tensor,
    lse: torch.Tensor,
    g: torch.Tensor,
    ignore_index: int,
) -> torch.Tensor:
    m, v = logits.shape
    dx = torch.empty_like(logits)
    if m:
        bm, bv = _blocks(m, v)
        _bwd_kernel[(triton.cdiv(m, bm),)](
            logits,
            target,
            lse,
            g.contiguous(),
            dx,
            m,
            v,
            logits.stride(0),
            ignore_index,
            BLOCK_M=bm,
            BLOCK_V=bv,
        )
    return dx


# --- registration: logits in -----------------------------------------------------------------
@torch.library.custom_op("anyware::cross_entropy", mutates_args=())
def _ce_op(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    return _forward(logits, target, ignore_index)


@_ce_op.register_fake
def _(
    logits: torch.Tensor, target: torch.Tensor, ignore_index: int
) -> tuple[torch.Tensor, torch.Tensor]:
    m = logits.shape[0]
    return logits.new_empty(m, dtype=torch.float32), logits.new_empty(m, dtype=torch.float32)


@torch.library.custom_op("anyware::cross_entropy_backward", mutates_args=())
def _ce_bwd_op(
    logits: torch.Tensor,
    target: torch.Tensor,
    lse: torch.Tensor,
    g: torch.Tensor,
    ignore_index: int,
) -> torch.Tensor:
    return _backward_logits(logits, target, lse, g, ignore_index)


@_ce_bwd_op.register_fake
def _(
    logits: torch.Tensor,
    target: torch.Tensor,
    lse: torch.Tensor,
    g: torch.Tensor,
    ignore_index: int,
) -> torch.Tensor:
    return torch.empty_like(logits)


def _ce_setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, torch.Tensor]) -> None:
    logits, target, ignore_index = inputs
    ctx.save_for_backward(logits, target, output[1])
    ctx.ignore_index = ignore_index


def _ce_backward(ctx: Any, dloss: torch.Tensor, _dlse: torch.Tensor) -> tuple[Any, None, None]:
    logits, target, lse = ctx.saved_tensors
    return _ce_bwd_op(logits, target, lse, dloss, ctx.ignore_index), None, None


_ce_op.register_autograd(_ce_backward, setup_context=_ce_setup)


# --- registration: hidden states + LM head in, chunked ------------------------------------------
@torch.library.custom_op("anyware::linear_cross_entropy", mutates_args=())
def _lce_op(
    hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, ignore_index: int, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    n = hidden.shape[0]
    loss = torch.empty(n, dtype=torch.float32, device=hidden.device)
    lse = torch.empty(n, dtype=torch.float32, device=hidden.device)
    for s in range(0, n, chunk):
        logits = hidden[s : s + chunk] @ weight.t()
        loss[s : s + chunk], lse[s : s + chunk] = _forward(
            logits, target[s : s + chunk], ignore_index
        )
    return loss, lse


@_lce_op.register_fake
def _(
    hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, ignore_index: int, chunk: int
) -> tuple[torch.Tensor, torch.Tensor]:
    n = hidden.shape[0]
    return hidden.new_empty(n, dtype=torch.float32), hidden.new_empty(n, dtype=torch.float32)


@torch.library.custom_op("anyware::linear_cross_entropy_backward", mutates_args=())
def _lce_bwd_op(
    hidden: torch.Tensor, weight: torch.Tensor, target: torch.Tensor, lse: torch.Tensor,
    g: torch.Tensor, ignore_index: int, chunk: int,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    grad_h = torch.empty_like(hidden)
    grad_w = torch.zeros(weight.shape, dtype=torch.float32, device=weight.device)
    for s in range(0, hidden.shape[0], chunk):
        h = hidden[s : s + chunk]
        logits = h @ weight.t()
        dlogits = _backward_logits(
            logits, target[s : s + chunk], lse[s : s + chunk], g[s : s + chunk], ignore_index
        )
        grad_h[s : s + chunk] = dlogits @ weight
        grad_w += (dlogits.t() @ h).float()
    return grad_h, grad_w.to(weight.dtype)


@_lce_bwd_op.register_fake
def _(hidden, weight, target, lse, g, ignore_index, chunk):  # type: ignore[no-untyped-def]
    return torch.empty_like(hidden), torch.empty_like(weight)


def _lce_setup(
    ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, torch.Tensor]
) -> None:
    hidden, weight, target, ignore_index, chunk = inputs
    ctx.save_for_backward(hidden, weight, target, output[1])
    ctx.ignore_index, ctx.chunk = ignore_index, chunk


def _lce_backward(ctx: Any, dloss: torch.Tensor, _dlse: torch.Tensor) -> tuple[Any, ...]:
    hidden, weight, target, lse = ctx.saved_tensors
    gh, gw = _lce_bwd_op(hidden, weight, target, lse, dloss, ctx.ignore_index, ctx.chunk)
    return gh, gw, None, None, None


_lce_op.register_autograd(_lce_backward, setup_context=_lce_setup)


# --- public function -----------------------------------------------------------------------
def cross_entropy(
    logits_or_hidden: torch.Tensor,
    target: torch.Tensor,
    head_weight: torch.Tensor | None = None,
    *,
    ignore_index: int = -100,
    reduction: str = "mean",
    chunk_size: int = 4096,
    impl: str | None = None,
) -> torch.Tensor:
    """Cross-entropy of ``logits (..., V)`` against ``target (...)`` class indices; or, with
    ``head_weight (V, H)``, of the logits ``hidden (..., H) @ head_weightᵀ``, made
    ``chunk_size`` rows at a time. The loss is fp32."""
    op = "cross_entropy"
    x = _checks.tensor(op, "logits_or_hidden", logits_or_hidden)
    _checks.tensor(op, "target", target)
    _checks.ndim(op, "logits_or_hidden", x, range(1, 9), "at least 1-D (..., V) or (..., H)")
    if reduction not in REDUCTIONS:
        raise ValueError(
            f"cross_entropy: reduction={reduction!r}; use one of {', '.join(REDUCTIONS)}"
        )
    if chunk_size < 1:
        raise ValueError(f"cross_entropy: chunk_size must be ≥ 1, got {chunk_size}")
    if tuple(target.shape) != tuple(x.shape[:-1]):
        raise ValueError(
            f"cross_entropy: target has shape {tuple(target.shape)}, expected {tuple(x.shape[:-1])} "
            f"(logits_or_hidden's shape without its last dim)"
        )
    if target.dtype not in (torch.int64, torch.int32):
        raise ValueError(
            f"cross_entropy: target has dtype {target.dtype}, expected int64 class indices"
        )
    device = _checks.same_device(op, logits_or_hidden=x, target=target)
    vocab = x.shape[-1]
    if head_weight is not None:
        _checks.tensor(op, "head_weight", head_weight)
        _checks.ndim(op, "head_weight", head_weight, (2,), "2-D (V, H)")
        _checks.size(op, "head_weight", head_weight.shape[1], x.shape[-1], "hidden size (dim 1)")
        _checks.same_dtype(op, logits_or_hidden=x, head_weight=head_weight)
        _checks.same_device(op, logits_or_hidden=x, head_weight=head_weight)
        vocab = head_weight.shape[0]
    bad = (target != ignore_index) & ((target < 0) | (target >= vocab))
    if target.numel() and bool(bad.any()):
        first = int(target[bad].reshape(-1)[0])
        raise ValueError(
            f"cross_entropy: target holds {first}, outside [0, {vocab}) and not ignore_index"
        )
    if resolve(op, impl, device, unsupported=_checks.unsupported_dtype(x)) is Impl.REFERENCE:
        return cross_entropy_reference(
            x, target, head_weight, ignore_index=ignore_index, reduction=reduction
        )
    flat_t = target.reshape(-1).to(torch.int64).contiguous()
    if head_weight is None:
        rows, _ = _ce_op(x.reshape(-1, vocab).contiguous(), flat_t, ignore_index)
    else:
        hidden = x.reshape(-1, x.shape[-1]).contiguous()
        rows, _ = _lce_op(hidden, head_weight.contiguous(), flat_t, ignore_index, chunk_size)
    if reduction == "none":
        return rows.reshape(target.shape)
    if reduction == "sum":
        return rows.sum()
    return rows.sum() / (flat_t != ignore_index).sum()


def default_chunk(vocab: int, hidden: int) -> int:
    """Liger's rule: as many rows as make the chunk's logits about as big as its hidden states
    times the vocab/hidden ratio rounded to a power of two."""
    return max(1, next_pow2(math.ceil(4096 * hidden / max(vocab, 1))))
