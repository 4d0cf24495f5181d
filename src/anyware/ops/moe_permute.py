# mypy: disable-error-code="no-untyped-def,untyped-decorator"
# (Triton kernels take untyped pointer arguments.)
"""MoE token permute / unpermute: lay routed tokens out contiguously per expert for a grouped
GEMM, and combine the expert outputs back per token.

The layout follows vLLM's ``moe_align_block_size``: the ``tokens × top_k`` routed copies are
sorted by expert (stable, so a token's copies keep their order), and each expert's run is
padded up to a multiple of ``block_size`` so every ``block_size`` rows of the permuted buffer
belong to exactly one expert (a GEMM tile never straddles two experts' weights). Padding rows
are zero and map to the sentinel ``-1``.

* ``moe_align(ids, E, block_size)`` → ``(row_map, group_sizes)``: ``row_map[p]`` is the flat
  routed copy (``token·top_k + j``) at permuted row p, ``group_sizes[e]`` the padded rows of
  expert e. The index arithmetic is a stable sort and a prefix sum: aten does it once per layer.
* ``moe_permute(x, ids, E, block_size)`` → ``(x_perm, row_map, group_sizes)``: the gather.
* ``moe_unpermute(y_perm, row_map, weights)`` → ``(tokens, H)``: ``Σ_j weights[t, j] ·
  y_perm[pos(t, j)]``, accumulated in fp32 in one pass per token (no scatter, no atomics).

Both data movers are Triton kernels; their backward passes are the mirror gathers in aten.
"""

from __future__ import annotations

from typing import Any

import torch

from anyware.ops import _checks
from anyware.ops._registry import Impl, OpSpec, register_op, resolve
from anyware.ops._triton import jit, next_pow2, tl, triton

SPEC = register_op(
    OpSpec(
        name="moe_permute",
        summary="MoE permute/unpermute in block-aligned expert order",
        backward="torch",
    )
)


def moe_align(
    ids: torch.Tensor, num_experts: int, block_size: int = 1
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(row_map int64 (P,), group_sizes int64 (E,))`` for routed ``ids (tokens, top_k)``."""
    flat = ids.reshape(-1)
    order = torch.sort(flat, stable=True).indices
    counts = torch.bincount(flat, minlength=num_experts)
    padded = (counts + block_size - 1) // block_size * block_size
    starts = torch.cumsum(padded, 0) - padded
    first_in = torch.cumsum(counts, 0) - counts
    sorted_e = flat[order]
    pos = starts[sorted_e] + (torch.arange(flat.numel(), device=ids.device) - first_in[sorted_e])
    row_map = torch.full((int(padded.sum()),), -1, dtype=torch.int64, device=ids.device)
    row_map[pos] = order
    return row_map, padded


def moe_permute_reference(
    x: torch.Tensor, ids: torch.Tensor, num_experts: int, block_size: int = 1
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The specification of the permute: rows ``x[row_map // top_k]``, zero on padding."""
    row_map, sizes = moe_align(ids, num_experts, block_size)
    k = ids.shape[1]
    src = row_map.clamp(min=0) // k
    out = x[src] * (row_map >= 0).to(x.dtype)[:, None]
    return out, row_map, sizes


def moe_unpermute_reference(
    y: torch.Tensor, row_map: torch.Tensor, weights: torch.Tensor
) -> torch.Tensor:
    """The specification of the combine, in fp32 (fp64 for fp64)."""
    n, k = weights.shape
    acc = torch.promote_types(y.dtype, torch.float32)
    inv = _inverse(row_map, n * k)
    rows = y.to(acc)[inv].view(n, k, -1)
    return (rows * weights.to(acc)[..., None]).sum(1).to(y.dtype)


def _inverse(row_map: torch.Tensor, copies: int) -> torch.Tensor:
    """Permuted row of every routed copy."""
    inv = torch.empty(copies, dtype=torch.int64, device=row_map.device)
    valid = row_map >= 0
    inv[row_map[valid]] = torch.nonzero(valid).reshape(-1)
    return inv


# --- kernels --------------------------------------------------------------------------------
@jit
def _gather_kernel(X, MAP, OUT, P, H, K, BLOCK_P: tl.constexpr, BLOCK_H: tl.constexpr):
    rows = tl.program_id(0) * BLOCK_P + tl.arange(0, BLOCK_P)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    src = tl.load(MAP + rows, mask=rows < P, other=-1)
    live = (src >= 0)[:, None] & (cols < H)[None, :]
    v = tl.load(X + (tl.maximum(src, 0) // K)[:, None] * H + cols[None, :], mask=live, other=0.0)
    tl.store(
        OUT + rows[:, None].to(tl.int64) * H + cols[None, :],
        v,
        mask=(rows < P)[:, None] & (cols < H)[None, :],
    )


@jit
def _combine_kernel(
    Y, INV, W, OUT, N, H, K: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_H: tl.constexpr
):
    tok = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tl.program_id(1) * BLOCK_H + tl.arange(0, BLOCK_H)
    mask = (tok < N)[:, None] & (cols < H)[None, :]
    acc = tl.zeros((BLOCK_T, BLOCK_H), tl.float32)
    for j in tl.static_range(K):
        pos = tl.load(INV + tok * K + j, mask=tok < N, other=0)
        w = tl.load(W + tok * K + j, mask=tok < N, other=0.0).to(tl.float32)
        y = tl.load(Y + pos[:, None] * H + cols[None, :], mask=mask, other=0.0).to(tl.float32)
        acc += w[:, None] * y
    tl.store(
        OUT + tok[:, None].to(tl.int64) * H + cols[None, :], acc.to(OUT.dtype.element_ty), mask=mask
    )


def _blocks(h: int) -> tuple[int, int]:
    bh = min(next_pow2(h), 1024)
    return max(1, 8192 // bh), bh


# --- registration ---------------------------------------------------------------------------
@torch.library.custom_op("anyware::moe_permute", mutates_args=())
def _permute_op(x: torch.Tensor, row_map: torch.Tensor, top_k: int) -> torch.Tensor:
    p, h = row_map.numel(), x.shape[1]
    out = torch.empty((p, h), dtype=x.dtype, device=x.device)
    if p and h:
        bp, bh = _blocks(h)
        _gather_kernel[(triton.cdiv(p, bp), triton.cdiv(h, bh))](
            x, row_map, out, p, h, top_k, BLOCK_P=bp, BLOCK_H=bh
        )
    return out


@_permute_op.register_fake
def _(x, row_map, top_k):  # type: ignore[no-untyped-def]
    return x.new_empty((row_map.shape[0], x.shape[1]))


def _permute_setup(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    x, row_map, top_k = inputs
    ctx.save_for_backward(row_map)
    ctx.n, ctx.k = x.shape[0], top_k


def _permute_backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, None, None]:
    (row_map,) = ctx.saved_tensors
    valid = row_map >= 0
    gx = torch.zeros((ctx.n, grad.shape[1]), dtype=torch.float32, device=grad.device)
    gx.index_add_(0, row_map[valid] // ctx.k, grad[valid].float())
    return gx.to(grad.dtype), None, None


_permute_op.register_autograd(_permute_backward, setup_context=_permute_setup)


@torch.library.custom_op("anyware::moe_unpermute", mutates_args=())
def _unpermute_op(y: torch.Tensor, inv: torch.Tensor, weights: torch.Tensor) -> torch.Tensor:
    n, k = weights.shape
    h = y.shape[1]
    out = torch.empty((n, h), dtype=y.dtype, device=y.device)
    if n and h:
        bt, bh = _blocks(h)
        _combine_kernel[(triton.cdiv(n, bt), triton.cdiv(h, bh))](
            y, inv, weights, out, n, h, K=k, BLOCK_T=bt, BLOCK_H=bh
        )
    return out


@_unpermute_op.register_fake
def _(y, inv, weights):  # type: ignore[no-untyped-def]
    return y.new_empty((weights.shape[0], y.shape[1]))


def _unpermute_setup(ctx: Any, inputs: tuple[Any, ...], output: torch.Tensor) -> None:
    y, inv, weights = inputs
    ctx.save_for_backward(y, inv, weights)


def _unpermute_backward(ctx: Any, grad: torch.Tensor) -> tuple[Any, None, Any]:
    y, inv, weights = ctx.saved_tensors
    n, k = weights.shape
    g = grad.float()
    gy = torch.zeros(y.shape, dtype=torch.float32, device=y.device)
    gy[inv] = (weights.float()[..., None] * g[:, None, :]).reshape(n * k, -1)
    gw = (y.float()[inv].view(n, k, -1) * g[:, None, :]).sum(-1)
    return gy.to(y.dtype), None, gw.to(weights.dtype)


_unpermute_op.register_autograd(_unpermute_backward, setup_context=_unpermute_setup)


# --- public functions ------------------------------------------------------------------------
def moe_permute(
    x: torch.Tensor,
    ids: torch.Tensor,
    num_experts: int,
    block_size: int = 1,
    *,
    impl: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gather ``x (tokens, H)`` into expert order for ``ids (tokens, top_k)``: returns
    ``(x_perm (P, H), row_map (P,), group_sizes (E,))`` with every group padded to
    ``block_size`` rows."""
    op = "moe_permute"
    _checks.tensor(op, "x", x)
    _checks.tensor(op, "ids", ids)
    _checks.ndim(op, "x", x, (2,), "2-D (tokens, hidden)")
    _checks.ndim(op, "ids", ids, (2,), "2-D (tokens, top_k)")
    _checks.dtype(op, "ids", ids, (torch.int64, torch.int32))
    _checks.size(op, "ids", ids.shape[0], x.shape[0], "tokens (dim 0)")
    device = _checks.same_device(op, x=x, ids=ids)
    if block_size < 1:
        raise ValueError(f"moe_permute: block_size must be ≥ 1, got {block_size}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= num_experts):
        raise ValueError(
            f"moe_permute: ids must lie in [0, {num_experts}), got {int(ids.min())}..{int(ids.max())}"
        )
    ids = ids.long()
    if resolve(op, impl, device, unsupported=_checks.unsupported_dtype(x)) is Impl.REFERENCE:
        return moe_permute_reference(x, ids, num_experts, block_size)
    row_map, sizes = moe_align(ids, num_experts, block_size)
    return _permute_op(x.contiguous(), row_map, ids.shape[1]), row_map, sizes


def moe_unpermute(
    y: torch.Tensor, row_map: torch.Tensor, weights: torch.Tensor, *, impl: str | None = None
) -> torch.Tensor:
    """Combine expert outputs ``y (P, H)`` back to ``(tokens, H)`` with ``weights (tokens, top_k)``."""
    op = "moe_permute"
    for name, t in (("y", y), ("row_map", row_map), ("weights", weights)):
        _checks.tensor(op, name, t)
    _checks.ndim(op, "y", y, (2,), "2-D (permuted rows, hidden)")
    _checks.ndim(op, "weights", weights, (2,), "2-D (tokens, top_k)")
    _checks.size(op, "row_map", row_map.numel(), y.shape[0], "length (y's rows)")
    device = _checks.same_device(op, y=y, row_map=row_map, weights=weights)
    if int((row_map >= 0).sum()) != weights.numel():
        raise ValueError(
            f"moe_unpermute: row_map holds {int((row_map >= 0).sum())} routed rows, weights {weights.numel()}"
        )
    if resolve(op, impl, device, unsupported=_checks.unsupported_dtype(y)) is Impl.REFERENCE:
        return moe_unpermute_reference(y, row_map, weights)
    inv = _inverse(row_map, weights.numel())
    return _unpermute_op(y.contiguous(), inv, weights.contiguous())
