# mypy: disable-error-code="no-untyped-def,untyped-decorator"
# (Triton kernels take untyped pointer arguments.)
"""DeepSeek sparse attention (DSA, DeepSeek-V3.2): a cheap "lightning indexer" picks, for each
query, the ``topk`` keys worth attending to, and attention runs over those keys only.

1. **Indexer scores** ``I[s, t] = Σ_h w[s, h] · ReLU(q_I[s, h] · k_I[t])`` with a few small
   indexer heads (DeepSeek: 64 heads of dim 128, run in FP8) and per-query head weights w; keys
   after the query (causal, bottom-right aligned) score −∞. Kernel: one program per
   (query tile, key tile) accumulating ``tl.dot`` over the indexer heads.
2. **Top-k**: the ``topk`` best-scoring keys per query (2048 in V3.2); a query with fewer
   visible keys pads with −1. This is ``torch.topk``: a selection, not arithmetic.
3. **Sparse attention** ``softmax(q · k[idx]ᵀ · scale) · v[idx]`` per query and head over the
   selected keys, with the online-softmax recurrence over ``BLOCK_K`` gathered keys at a time.
   All heads share one index set (the MQA form of MLA in V3.2), so the gather is per query.

Cost is ``O(S·topk)`` instead of ``O(S·T)`` for the attention, and the indexer is ``O(S·T)``
with a small constant. Forward only: the indexer is trained by a KL loss against dense
attention, which is a training recipe, not a kernel.
"""

from __future__ import annotations

import math

import torch

from anyware.ops import _checks
from anyware.ops._registry import Impl, OpSpec, register_op, resolve
from anyware.ops._triton import dot_precision, interpreted, jit, next_pow2, tl, triton

SPEC = register_op(
    OpSpec(
        name="sparse_attention",
        summary="DeepSeek sparse attention: indexer, top-k, sparse attn",
        backward="none",
    )
)


def indexer_scores_reference(
    q_idx: torch.Tensor, k_idx: torch.Tensor, weights: torch.Tensor, causal: bool = True
) -> torch.Tensor:
    """``(B, S, T)`` fp32 (fp64 for fp64) scores; −∞ after the causal diagonal."""
    acc = torch.promote_types(q_idx.dtype, torch.float32)
    dots = torch.einsum("bshd,btd->bsht", q_idx.to(acc), k_idx.to(acc)).relu()
    scores = (dots * weights.to(acc)[..., None]).sum(2)
    if causal:
        s, t = scores.shape[1], scores.shape[2]
        i = torch.arange(s, device=scores.device)[:, None]
        j = torch.arange(t, device=scores.device)[None, :]
        scores = scores.masked_fill(j > i + (t - s), float("-inf"))
    return scores


def select_topk(scores: torch.Tensor, topk: int) -> torch.Tensor:
    """``(B, S, min(topk, T))`` int64 key indices, −1 where a query has fewer visible keys."""
    k = min(topk, scores.shape[-1])
    vals, idx = scores.topk(k, dim=-1)
    return idx.masked_fill(vals == float("-inf"), -1)


def sparse_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    indices: torch.Tensor,
    scale: float | None = None,
) -> torch.Tensor:
    """Attention of ``q (B, H, S, D)`` over ``k``/``v (B, KVH, T, D)`` restricted to
    ``indices (B, S, K)`` (−1 = unused slot); a query with no key gets 0."""
    acc = torch.promote_types(q.dtype, torch.float32)
    b, h, _, d = q.shape
    group = h // k.shape[1]
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    safe = indices.clamp(min=0)
    bi = torch.arange(b, device=q.device)[:, None, None]
    kk = k.to(acc).transpose(1, 2)[bi, safe]  # (B, S, K, KVH, D)
    vv = v.to(acc).transpose(1, 2)[bi, safe]
    kk = kk.repeat_interleave(group, dim=3).permute(0, 3, 1, 2, 4)  # (B, H, S, K, D)
    vv = vv.repeat_interleave(group, dim=3).permute(0, 3, 1, 2, 4)
    logits = torch.einsum("bhsd,bhskd->bhsk", q.to(acc), kk) * scale
    logits = logits.masked_fill((indices < 0)[:, None], float("-inf"))
    p = torch.softmax(logits, dim=-1).nan_to_num(0.0)
    return torch.einsum("bhsk,bhskd->bhsd", p, vv).to(q.dtype)


# --- kernels --------------------------------------------------------------------------------
@jit
def _indexer_kernel(
    Q, K, W, OUT, S, T, HI, D, CAUSAL: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_S: tl.constexpr, BLOCK_T: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    b = tl.program_id(2).to(tl.int64)
    rs = tl.program_id(0) * BLOCK_S + tl.arange(0, BLOCK_S)
    rt = tl.program_id(1) * BLOCK_T + tl.arange(0, BLOCK_T)
    rd = tl.arange(0, BLOCK_D)
    smask, tmask, dmask = rs < S, rt < T, rd < D
    kt = tl.load(
        K + b * T * D + rt[None, :] * D + rd[:, None],
        mask=dmask[:, None] & tmask[None, :],
        other=0.0,
    )
    acc = tl.zeros((BLOCK_S, BLOCK_T), tl.float32)
    for h in range(0, HI):
        q = tl.load(
            Q + ((b * S + rs[:, None]) * HI + h) * D + rd[None, :],
            mask=smask[:, None] & dmask[None, :],
            other=0.0,
        )
        w = tl.load(W + (b * S + rs) * HI + h, mask=smask, other=0.0).to(tl.float32)
        acc += tl.maximum(tl.dot(q, kt, input_precision=PRECISION), 0.0) * w[:, None]
    if CAUSAL:
        acc = tl.where(rt[None, :] <= rs[:, None] + (T - S), acc, float("-inf"))
    tl.store(
        OUT + (b * S + rs[:, None]) * T + rt[None, :], acc, mask=smask[:, None] & tmask[None, :]
    )


@jit
def _sparse_attn_kernel(
    Q, K, V, IDX, Out, H, GROUP, S, T, D, NK, scale,
    BLOCK_K: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    s = tl.program_id(0)
    h = tl.program_id(1) % H
    b = (tl.program_id(1) // H).to(tl.int64)
    kvh = h // GROUP
    kvh_n = H // GROUP
    rd = tl.arange(0, BLOCK_D)
    dmask = rd < D
    q = tl.load(Q + ((b * H + h) * S + s) * D + rd, mask=dmask, other=0.0).to(tl.float32)
    # loop-carried scalars must start as fp32 tensors, not Python floats, for the compiler
    m_i = tl.max(tl.full((BLOCK_K,), float("-inf"), tl.float32), axis=0)
    l_i = tl.sum(tl.zeros((BLOCK_K,), tl.float32), axis=0)
    acc = tl.zeros((BLOCK_D,), tl.float32)
    for k0 in range(0, NK, BLOCK_K):
        slot = k0 + tl.arange(0, BLOCK_K)
        idx = tl.load(IDX + (b * S + s) * NK + slot, mask=slot < NK, other=-1)
        live = idx >= 0
        rows = ((b * kvh_n + kvh) * T + tl.maximum(idx, 0)) * D
        kk = tl.load(
            K + rows[:, None] + rd[None, :], mask=live[:, None] & dmask[None, :], other=0.0
        ).to(tl.float32)
        logit = tl.where(live, tl.sum(kk * q[None, :], axis=1) * scale, float("-inf"))
        m_new = tl.maximum(m_i, tl.max(logit, axis=0))
        m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
        p = tl.exp(logit - m_safe)
        alpha = tl.exp(m_i - m_safe)
        vv = tl.load(
            V + rows[:, None] + rd[None, :], mask=live[:, None] & dmask[None, :], other=0.0
        ).to(tl.float32)
        l_i = l_i * alpha + tl.sum(p, axis=0)
        acc = acc * alpha + tl.sum(p[:, None] * vv, axis=0)
        m_i = m_new
    out = acc / tl.where(l_i == 0.0, 1.0, l_i)
    tl.store(Out + ((b * H + h) * S + s) * D + rd, out.to(Out.dtype.element_ty), mask=dmask)


# --- launchers and registration ------------------------------------------------------------
@torch.library.custom_op("anyware::indexer_scores", mutates_args=())
def _indexer_op(
    q_idx: torch.Tensor, k_idx: torch.Tensor, weights: torch.Tensor, causal: bool
) -> torch.Tensor:
    b, s, hi, d = q_idx.shape
    t = k_idx.shape[1]
    out = torch.empty((b, s, t), dtype=torch.float32, device=q_idx.device)
    if out.numel():
        bs = max(16, min(64, next_pow2(s)))
        bt = max(16, min(128 if interpreted() else 64, next_pow2(t)))
        _indexer_kernel[(triton.cdiv(s, bs), triton.cdiv(t, bt), b)](
            q_idx, k_idx, weights, out, s, t, hi, d, CAUSAL=causal, PRECISION=dot_precision(q_idx.dtype),
            BLOCK_S=bs, BLOCK_T=bt, BLOCK_D=max(16, next_pow2(d)),
        )  # fmt: skip
    return out


@_indexer_op.register_fake
def _(q_idx, k_idx, weights, causal):  # type: ignore[no-untyped-def]
    return q_idx.new_empty((q_idx.shape[0], q_idx.shape[1], k_idx.shape[1]), dtype=torch.float32)


@torch.library.custom_op("anyware::sparse_attention", mutates_args=())
def _sparse_op(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, indices: torch.Tensor, scale: float
) -> torch.Tensor:
    b, h, s, d = q.shape
    out = torch.empty_like(q)
    if out.numel():
        nk = indices.shape[-1]
        _sparse_attn_kernel[(s, b * h)](
            q, k, v, indices, out, h, h // k.shape[1], s, k.shape[2], d, nk, scale,
            BLOCK_K=max(16, min(256 if interpreted() else 64, next_pow2(nk))), BLOCK_D=max(16, next_pow2(d)),
        )  # fmt: skip
    return out


@_sparse_op.register_fake
def _(q, k, v, indices, scale):  # type: ignore[no-untyped-def]
    return torch.empty_like(q)


# --- public functions ------------------------------------------------------------------------
def indexer_topk(
    q_idx: torch.Tensor,
    k_idx: torch.Tensor,
    weights: torch.Tensor,
    topk: int,
    *,
    causal: bool = True,
    impl: str | None = None,
) -> torch.Tensor:
    """Lightning-indexer selection: ``(B, S, min(topk, T))`` key indices (−1 = none) for
    ``q_idx (B, S, H_I, D_I)``, ``k_idx (B, T, D_I)``, ``weights (B, S, H_I)``."""
    op = "sparse_attention"
    for name, t in (("q_idx", q_idx), ("k_idx", k_idx), ("weights", weights)):
        _checks.tensor(op, name, t)
    _checks.ndim(op, "q_idx", q_idx, (4,), "4-D (batch, seq, index_heads, index_dim)")
    _checks.ndim(op, "k_idx", k_idx, (3,), "3-D (batch, keys, index_dim)")
    b, s, hi, d = q_idx.shape
    if tuple(weights.shape) != (b, s, hi):
        raise ValueError(
            f"sparse_attention: weights has shape {tuple(weights.shape)}, expected {(b, s, hi)}"
        )
    if k_idx.shape[0] != b or k_idx.shape[2] != d:
        raise ValueError(
            f"sparse_attention: k_idx has shape {tuple(k_idx.shape)}, expected ({b}, keys, {d})"
        )
    if topk < 1:
        raise ValueError(f"sparse_attention: topk must be ≥ 1, got {topk}")
    _checks.same_dtype(op, q_idx=q_idx, k_idx=k_idx)
    device = _checks.same_device(op, q_idx=q_idx, k_idx=k_idx, weights=weights)
    if (
        resolve(op, impl, device, unsupported=_checks.unsupported_dtype(q_idx), count=False)
        is Impl.REFERENCE
    ):
        scores = indexer_scores_reference(q_idx, k_idx, weights, causal)
    else:
        scores = _indexer_op(
            q_idx.contiguous(), k_idx.contiguous(), weights.float().contiguous(), causal
        )
    return select_topk(scores, topk)


def sparse_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    indices: torch.Tensor,
    scale: float | None = None,
    *,
    impl: str | None = None,
) -> torch.Tensor:
    """Attention of ``q (B, H, S, D)`` over the keys ``indices (B, S, K)`` selects (−1 =
    unused) from ``k``/``v (B, KVH, T, D)``; see :func:`indexer_topk` for the selection."""
    op = "sparse_attention"
    for name, t in (("q", q), ("k", k), ("v", v), ("indices", indices)):
        _checks.tensor(op, name, t)
    for name, t in (("q", q), ("k", k), ("v", v)):
        _checks.ndim(op, name, t, (4,), "4-D (batch, heads, seq, head_dim)")
    _checks.ndim(op, "indices", indices, (3,), "3-D (batch, seq, topk)")
    _checks.dtype(op, "indices", indices, (torch.int64, torch.int32))
    _checks.same_dtype(op, q=q, k=k, v=v)
    device = _checks.same_device(op, q=q, k=k, v=v, indices=indices)
    b, h, s, d = q.shape
    if (
        k.shape != v.shape
        or k.shape[0] != b
        or k.shape[3] != d
        or k.shape[1] == 0
        or h % k.shape[1]
    ):
        raise ValueError(
            f"sparse_attention: k/v have shapes {tuple(k.shape)}/{tuple(v.shape)}; expected equal "
            f"({b}, kv_heads dividing {h}, keys, {d})"
        )
    if indices.shape[:2] != (b, s):
        raise ValueError(
            f"sparse_attention: indices has shape {tuple(indices.shape)}, expected ({b}, {s}, topk)"
        )
    if indices.numel() and int(indices.max()) >= k.shape[2]:
        raise ValueError(
            f"sparse_attention: indices reach {int(indices.max())} but there are {k.shape[2]} keys"
        )
    scale = 1.0 / math.sqrt(d) if scale is None else scale
    blocker = _checks.unsupported_dtype(q) or (f"head dim {d} > 256" if d > 256 else None)
    if resolve(op, impl, device, unsupported=blocker) is Impl.REFERENCE:
        return sparse_attention_reference(q, k, v, indices, scale)
    return _sparse_op(
        q.contiguous(),
        k.contiguous(),
        v.contiguous(),
        indices.to(torch.int64).contiguous(),
        float(scale),
    )
