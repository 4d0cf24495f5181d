# mypy: disable-error-code="no-untyped-def,untyped-decorator,no-untyped-call"
# (Triton kernels take untyped pointer arguments.)
"""Flash attention (FlashAttention-2 schedule): ``softmax(q kᵀ · scale) v`` without the
``seq × seq`` score matrix.

Each program owns ``BLOCK_M`` queries of one head and streams the keys in ``BLOCK_N`` tiles,
keeping a running row max ``m``, running sum ``l`` and an un-normalised output that is rescaled
by ``2^(m_old − m_new)`` whenever the max grows; scores are kept in base 2 (``scale·log₂e``
folded in) so the inner loop uses ``exp2``. It stores ``lse = m + log₂ l`` per query for the
backward, which recomputes probabilities ``p = 2^(s − lse)`` tile by tile:
``dv = pᵀ do``, ``dp = do vᵀ``, ``ds = p ⊙ (dp − Δ)`` with ``Δ = rowsum(do ⊙ o)``,
``dk = dsᵀ q · scale``, ``dq = ds k · scale`` — one kernel for dk/dv over query tiles, one for
dq over key tiles, so nothing needs atomics.

* **causal**: query i sees keys ``j ≤ i + (Lk − Lq)`` (bottom-right aligned, as FA2 ≥ 2.1, so
  decoding one query against a cache works); tiles wholly above the diagonal are skipped.
* **GQA/MQA**: query head h reads kv head ``h // (H / H_kv)``; the dk/dv kernel sums over the
  query heads of its group.
* **variable length**: sequences packed along the seq axis of a batch-1 tensor with
  ``cu_seqlens`` offsets (FlashAttention's varlen layout); no attention crosses a boundary.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from anyware.ops import _checks
from anyware.ops._registry import Impl, OpSpec, register_op, resolve
from anyware.ops._triton import dot_precision, interpreted, jit, next_pow2, tl, triton

SPEC = register_op(
    OpSpec(name="flash_attention", summary="fused attention: causal, GQA, varlen, head dim ≤ 256")
)
_LOG2E = 1.4426950408889634


def _dense_reference(q, k, v, causal: bool, scale: float) -> torch.Tensor:  # type: ignore[no-untyped-def]
    acc = torch.promote_types(q.dtype, torch.float32)
    group = q.shape[1] // k.shape[1]
    kk = k.to(acc).repeat_interleave(group, dim=1)
    vv = v.to(acc).repeat_interleave(group, dim=1)
    s = (q.to(acc) @ kk.transpose(-1, -2)) * scale
    if causal:
        lq, lk = q.shape[2], k.shape[2]
        i = torch.arange(lq, device=q.device)[:, None]
        j = torch.arange(lk, device=q.device)[None, :]
        s = s.masked_fill(j > i + (lk - lq), float("-inf"))
    return (torch.softmax(s, dim=-1) @ vv).to(q.dtype)


def flash_attention_reference(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    scale: float | None = None,
    *,
    cu_seqlens_q: torch.Tensor | None = None,
    cu_seqlens_k: torch.Tensor | None = None,
) -> torch.Tensor:
    """The specification: explicit scores, softmax and weighted sum in fp32 (fp64 for fp64)."""
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    if cu_seqlens_q is None:
        return _dense_reference(q, k, v, causal, scale)
    cu_k = cu_seqlens_q if cu_seqlens_k is None else cu_seqlens_k
    outs = []
    for i in range(cu_seqlens_q.numel() - 1):
        qs, qe = int(cu_seqlens_q[i]), int(cu_seqlens_q[i + 1])
        ks, ke = int(cu_k[i]), int(cu_k[i + 1])
        outs.append(_dense_reference(q[:, :, qs:qe], k[:, :, ks:ke], v[:, :, ks:ke], causal, scale))
    return torch.cat(outs, dim=2) if outs else torch.empty_like(q)


# --- kernels --------------------------------------------------------------------------------
@jit
def _seq_bounds(cu_q, cu_k, b, Lq, Lk, VARLEN: tl.constexpr):
    if VARLEN:
        q0 = tl.load(cu_q + b).to(tl.int64)
        k0 = tl.load(cu_k + b).to(tl.int64)
        return q0, tl.load(cu_q + b + 1) - q0, k0, tl.load(cu_k + b + 1) - k0, 0
    return 0, Lq, 0, Lk, b.to(tl.int64)


@jit
def _fwd_kernel(
    Q, K, V, Out, LSE, cu_q, cu_k,
    s_qb, s_qh, s_qs, s_kb, s_kh, s_ks, s_vb, s_vh, s_vs, s_ob, s_oh, s_os,
    H, GROUP, Lq, Lk, S_lse, D, qk_scale,
    CAUSAL: tl.constexpr, VARLEN: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    b = tl.program_id(1) // H
    h = tl.program_id(1) % H
    q0, q_len, k0, k_len, bb = _seq_bounds(cu_q, cu_k, b, Lq, Lk, VARLEN)
    if pid_m * BLOCK_M < q_len:
        kvh = h // GROUP
        offs_m = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        dmask = offs_d < D
        q_ptr = (
            Q + bb * s_qb + h * s_qh + (q0 + offs_m)[:, None].to(tl.int64) * s_qs + offs_d[None, :]
        )
        q = tl.load(q_ptr, mask=(offs_m < q_len)[:, None] & dmask[None, :], other=0.0)
        k_base = K + bb * s_kb + kvh * s_kh + k0 * s_ks
        v_base = V + bb * s_vb + kvh * s_vh + k0 * s_vs
        m_i = tl.full((BLOCK_M,), float("-inf"), tl.float32)
        m_safe = tl.zeros((BLOCK_M,), tl.float32)
        l_i = tl.zeros((BLOCK_M,), tl.float32)
        acc = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
        shift = k_len - q_len
        hi = k_len
        if CAUSAL:
            hi = tl.minimum(k_len, (pid_m + 1) * BLOCK_M + shift)
        for n0 in range(0, hi, BLOCK_N):
            cols = n0 + offs_n
            kt = tl.load(
                k_base + cols[None, :] * s_ks + offs_d[:, None],
                mask=(cols < k_len)[None, :] & dmask[:, None],
                other=0.0,
            )
            s = tl.dot(q, kt, input_precision=PRECISION) * qk_scale
            keep = (cols < k_len)[None, :]
            if CAUSAL:
                keep = keep & (cols[None, :] <= offs_m[:, None] + shift)
            s = tl.where(keep, s, float("-inf"))
            m_new = tl.maximum(m_i, tl.max(s, axis=1))
            m_safe = tl.where(m_new == float("-inf"), 0.0, m_new)
            p = tl.exp2(s - m_safe[:, None])
            alpha = tl.exp2(m_i - m_safe)
            l_i = l_i * alpha + tl.sum(p, axis=1)
            v = tl.load(
                v_base + cols[:, None] * s_vs + offs_d[None, :],
                mask=(cols < k_len)[:, None] & dmask[None, :],
                other=0.0,
            )
            acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
            m_i = m_new
        l_safe = tl.where(l_i == 0.0, 1.0, l_i)
        o_ptr = (
            Out
            + bb * s_ob
            + h * s_oh
            + (q0 + offs_m)[:, None].to(tl.int64) * s_os
            + offs_d[None, :]
        )
        tl.store(
            o_ptr,
            (acc / l_safe[:, None]).to(Out.dtype.element_ty),
            mask=(offs_m < q_len)[:, None] & dmask[None, :],
        )
        lse_ptr = LSE + (bb * H + h) * S_lse + q0 + offs_m
        tl.store(lse_ptr, m_safe + tl.log2(l_safe), mask=offs_m < q_len)


@jit
def _bwd_dkdv_kernel(
    Q, K, V, DO, LSE, DELTA, DK, DV, cu_q, cu_k,
    s_qb, s_qh, s_qs, s_kb, s_kh, s_ks, s_vb, s_vh, s_vs,
    KVH, GROUP, Lq, Lk, S_lse, D, qk_scale, sm_scale,
    CAUSAL: tl.constexpr, VARLEN: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    # q/do/dq share q's strides; k/dk and v/dv share theirs (the launcher allocates them so).
    pid_n = tl.program_id(0)
    b = tl.program_id(1) // KVH
    kvh = tl.program_id(1) % KVH
    q0, q_len, k0, k_len, bb = _seq_bounds(cu_q, cu_k, b, Lq, Lk, VARLEN)
    if pid_n * BLOCK_N < k_len:
        offs_n = pid_n * BLOCK_N + tl.arange(0, BLOCK_N)
        offs_m = tl.arange(0, BLOCK_M)
        offs_d = tl.arange(0, BLOCK_D)
        dmask = offs_d < D
        nmask = offs_n < k_len
        k_off = (
            bb * s_kb + kvh * s_kh + (k0 + offs_n)[:, None].to(tl.int64) * s_ks + offs_d[None, :]
        )
        v_off = (
            bb * s_vb + kvh * s_vh + (k0 + offs_n)[:, None].to(tl.int64) * s_vs + offs_d[None, :]
        )
        k = tl.load(K + k_off, mask=nmask[:, None] & dmask[None, :], other=0.0)
        v = tl.load(V + v_off, mask=nmask[:, None] & dmask[None, :], other=0.0)
        dk = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
        dv = tl.zeros((BLOCK_N, BLOCK_D), tl.float32)
        shift = k_len - q_len
        lo = 0
        if CAUSAL:
            lo = tl.maximum(pid_n * BLOCK_N - shift, 0) // BLOCK_M * BLOCK_M
        for g in range(0, GROUP):
            h = kvh * GROUP + g
            for m0 in range(lo, q_len, BLOCK_M):
                rows = m0 + offs_m
                rmask = rows < q_len
                q_off = (
                    bb * s_qb
                    + h * s_qh
                    + (q0 + rows)[:, None].to(tl.int64) * s_qs
                    + offs_d[None, :]
                )
                q = tl.load(Q + q_off, mask=rmask[:, None] & dmask[None, :], other=0.0)
                do = tl.load(DO + q_off, mask=rmask[:, None] & dmask[None, :], other=0.0)
                stat = (bb * KVH * GROUP + h) * S_lse + q0 + rows
                lse = tl.load(LSE + stat, mask=rmask, other=0.0)
                delta = tl.load(DELTA + stat, mask=rmask, other=0.0)
                s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
                keep = rmask[:, None] & nmask[None, :]
                if CAUSAL:
                    keep = keep & (offs_n[None, :] <= rows[:, None] + shift)
                p = tl.where(keep, tl.exp2(s - lse[:, None]), 0.0)
                dv += tl.dot(tl.trans(p).to(do.dtype), do, input_precision=PRECISION)
                dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
                ds = p * (dp - delta[:, None])
                dk += tl.dot(tl.trans(ds).to(q.dtype), q, input_precision=PRECISION)
        tl.store(
            DK + k_off,
            (dk * sm_scale).to(DK.dtype.element_ty),
            mask=nmask[:, None] & dmask[None, :],
        )
        tl.store(DV + v_off, dv.to(DV.dtype.element_ty), mask=nmask[:, None] & dmask[None, :])


@jit
def _bwd_dq_kernel(
    Q, K, V, DO, LSE, DELTA, DQ, cu_q, cu_k,
    s_qb, s_qh, s_qs, s_kb, s_kh, s_ks, s_vb, s_vh, s_vs,
    H, GROUP, Lq, Lk, S_lse, D, qk_scale, sm_scale,
    CAUSAL: tl.constexpr, VARLEN: tl.constexpr, PRECISION: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_D: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    b = tl.program_id(1) // H
    h = tl.program_id(1) % H
    q0, q_len, k0, k_len, bb = _seq_bounds(cu_q, cu_k, b, Lq, Lk, VARLEN)
    if pid_m * BLOCK_M < q_len:
        kvh = h // GROUP
        rows = pid_m * BLOCK_M + tl.arange(0, BLOCK_M)
        offs_n = tl.arange(0, BLOCK_N)
        offs_d = tl.arange(0, BLOCK_D)
        dmask = offs_d < D
        rmask = rows < q_len
        q_off = bb * s_qb + h * s_qh + (q0 + rows)[:, None].to(tl.int64) * s_qs + offs_d[None, :]
        q = tl.load(Q + q_off, mask=rmask[:, None] & dmask[None, :], other=0.0)
        do = tl.load(DO + q_off, mask=rmask[:, None] & dmask[None, :], other=0.0)
        stat = (bb * H + h) * S_lse + q0 + rows
        lse = tl.load(LSE + stat, mask=rmask, other=0.0)
        delta = tl.load(DELTA + stat, mask=rmask, other=0.0)
        k_base = K + bb * s_kb + kvh * s_kh + k0 * s_ks
        v_base = V + bb * s_vb + kvh * s_vh + k0 * s_vs
        dq = tl.zeros((BLOCK_M, BLOCK_D), tl.float32)
        shift = k_len - q_len
        hi = k_len
        if CAUSAL:
            hi = tl.minimum(k_len, (pid_m + 1) * BLOCK_M + shift)
        for n0 in range(0, hi, BLOCK_N):
            cols = n0 + offs_n
            cmask = cols < k_len
            k = tl.load(
                k_base + cols[:, None] * s_ks + offs_d[None, :],
                mask=cmask[:, None] & dmask[None, :],
                other=0.0,
            )
            v = tl.load(
                v_base + cols[:, None] * s_vs + offs_d[None, :],
                mask=cmask[:, None] & dmask[None, :],
                other=0.0,
            )
            s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * qk_scale
            keep = rmask[:, None] & cmask[None, :]
            if CAUSAL:
                keep = keep & (cols[None, :] <= rows[:, None] + shift)
            p = tl.where(keep, tl.exp2(s - lse[:, None]), 0.0)
            dp = tl.dot(do, tl.trans(v), input_precision=PRECISION)
            ds = p * (dp - delta[:, None])
            dq += tl.dot(ds.to(k.dtype), k, input_precision=PRECISION)
        tl.store(
            DQ + q_off,
            (dq * sm_scale).to(DQ.dtype.element_ty),
            mask=rmask[:, None] & dmask[None, :],
        )


# --- launchers ------------------------------------------------------------------------------
def _blocks(d: int) -> tuple[int, int, dict[str, int]]:
    if interpreted():  # big tiles, few programs: each interpreted loop step costs ~ms
        return 64, 64, {}
    # FA2 on sm80/sm90 with Triton: 128×64 tiles for head dim ≤ 64, 64×64 above (registers)
    return (
        (128, 64, {"num_warps": 4, "num_stages": 3})
        if d <= 64
        else (64, 64, {"num_warps": 4, "num_stages": 2})
    )


def _grid_args(
    q: torch.Tensor, k: torch.Tensor, cu_q: torch.Tensor | None
) -> tuple[int, int, bool]:
    """(number of sequences, longest query length, varlen?)."""
    if cu_q is None:
        return q.shape[0], q.shape[2], False
    lens = cu_q[1:] - cu_q[:-1]
    return cu_q.numel() - 1, int(lens.max()) if lens.numel() else 0, True


def _forward(q, k, v, causal, scale, cu_q, cu_k):  # type: ignore[no-untyped-def]
    bq, h, s, d = q.shape
    o = torch.empty_like(q)
    lse = torch.empty((bq, h, s), dtype=torch.float32, device=q.device)
    nseq, longest, varlen = _grid_args(q, k, cu_q)
    bm, bn, opts = _blocks(d)
    dummy = cu_q if varlen else lse
    grid = (triton.cdiv(longest, bm), nseq * h)
    if grid[0] and grid[1]:
        _fwd_kernel[grid](
            q, k, v, o, lse, dummy, cu_k if varlen else lse,
            *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *o.stride()[:3],
            h, h // k.shape[1], s, k.shape[2], s, d, scale * _LOG2E,
            CAUSAL=causal, VARLEN=varlen, PRECISION=dot_precision(q.dtype),
            BLOCK_M=bm, BLOCK_N=bn, BLOCK_D=max(16, next_pow2(d)), **opts,
        )  # fmt: skip
    return o, lse


def _backward(do, q, k, v, o, lse, causal, scale, cu_q, cu_k):  # type: ignore[no-untyped-def]
    h, s, d = q.shape[1:]
    kvh = k.shape[1]
    do = do.contiguous()
    dq, dk, dv = torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)
    delta = (do.float() * o.float()).sum(-1)  # Δ = rowsum(do ⊙ o): memory-bound, aten is fine
    nseq, longest, varlen = _grid_args(q, k, cu_q)
    longest_k = longest if cu_k is None or not varlen else int((cu_k[1:] - cu_k[:-1]).max())
    if not varlen:
        longest_k = k.shape[2]
    bm, bn = (64, 64)
    opts: dict[str, int] = {} if interpreted() else {"num_warps": 4, "num_stages": 2}
    common = dict(
        CAUSAL=causal,
        VARLEN=varlen,
        PRECISION=dot_precision(q.dtype),
        BLOCK_M=bm,
        BLOCK_N=bn,
        BLOCK_D=max(16, next_pow2(d)),
        **opts,
    )
    cuq = cu_q if varlen else lse
    cuk = cu_k if varlen else lse
    strides = (*q.stride()[:3], *k.stride()[:3], *v.stride()[:3])
    if nseq and longest_k:
        _bwd_dkdv_kernel[(triton.cdiv(longest_k, bn), nseq * kvh)](
            q, k, v, do, lse, delta, dk, dv, cuq, cuk, *strides,
            kvh, h // kvh, s, k.shape[2], s, d, scale * _LOG2E, scale, **common,
        )  # fmt: skip
    if nseq and longest:
        _bwd_dq_kernel[(triton.cdiv(longest, bm), nseq * h)](
            q, k, v, do, lse, delta, dq, cuq, cuk, *strides,
            h, h // kvh, s, k.shape[2], s, d, scale * _LOG2E, scale, **common,
        )  # fmt: skip
    return dq, dk, dv


# --- torch.library registration ------------------------------------------------------------
@torch.library.custom_op("anyware::flash_attention", mutates_args=())
def _attn_op(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, causal: bool, scale: float,
    cu_seqlens_q: torch.Tensor | None, cu_seqlens_k: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    return _forward(q, k, v, causal, scale, cu_seqlens_q, cu_seqlens_k)


@_attn_op.register_fake
def _(q, k, v, causal, scale, cu_seqlens_q, cu_seqlens_k):  # type: ignore[no-untyped-def]
    return torch.empty_like(q), q.new_empty(q.shape[:3], dtype=torch.float32)


@torch.library.custom_op("anyware::flash_attention_backward", mutates_args=())
def _attn_bwd_op(
    do: torch.Tensor, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, o: torch.Tensor,
    lse: torch.Tensor, causal: bool, scale: float,
    cu_seqlens_q: torch.Tensor | None, cu_seqlens_k: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:  # fmt: skip
    return _backward(do, q, k, v, o, lse, causal, scale, cu_seqlens_q, cu_seqlens_k)


@_attn_bwd_op.register_fake
def _(do, q, k, v, o, lse, causal, scale, cu_seqlens_q, cu_seqlens_k):  # type: ignore[no-untyped-def]
    return torch.empty_like(q), torch.empty_like(k), torch.empty_like(v)


def _setup(ctx: Any, inputs: tuple[Any, ...], output: tuple[torch.Tensor, torch.Tensor]) -> None:
    q, k, v, causal, scale, cu_q, cu_k = inputs
    ctx.save_for_backward(q, k, v, output[0], output[1], cu_q, cu_k)
    ctx.causal, ctx.scale = causal, scale


def _backward_rule(ctx: Any, do: torch.Tensor, _dlse: torch.Tensor) -> tuple[Any, ...]:
    q, k, v, o, lse, cu_q, cu_k = ctx.saved_tensors
    dq, dk, dv = _attn_bwd_op(do, q, k, v, o, lse, ctx.causal, ctx.scale, cu_q, cu_k)
    return dq, dk, dv, None, None, None, None


_attn_op.register_autograd(_backward_rule, setup_context=_setup)


# --- public function -----------------------------------------------------------------------
def _check_cu(name: str, cu: torch.Tensor, total: int, device: torch.device) -> None:
    op = "flash_attention"
    _checks.tensor(op, name, cu)
    _checks.ndim(op, name, cu, (1,), "1-D (num_seqs + 1,)")
    _checks.dtype(op, name, cu, (torch.int32, torch.int64))
    if cu.device != device:
        raise ValueError(f"flash_attention: {name} is on {cu.device} but q is on {device}")
    if cu.numel() < 1 or int(cu[0]) != 0 or int(cu[-1]) != total or bool((cu[1:] < cu[:-1]).any()):
        raise ValueError(
            f"flash_attention: {name} must start at 0, never decrease and end at the packed "
            f"length {total}; got {cu.tolist()[:8]}"
        )


def flash_attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    causal: bool = False,
    scale: float | None = None,
    *,
    cu_seqlens_q: torch.Tensor | None = None,
    cu_seqlens_k: torch.Tensor | None = None,
    impl: str | None = None,
) -> torch.Tensor:
    """Attention of ``q (batch, heads, seq_q, D)`` over ``k``/``v (batch, kv_heads, seq_k, D)``
    (GQA when ``kv_heads`` divides ``heads``). With ``cu_seqlens_q`` (and ``cu_seqlens_k``,
    default the same) the batch is 1 and the seq axes hold packed sequences."""
    op = "flash_attention"
    for name, t in (("q", q), ("k", k), ("v", v)):
        _checks.tensor(op, name, t)
        _checks.ndim(op, name, t, (4,), "4-D (batch, heads, seq, head_dim)")
    _checks.same_dtype(op, q=q, k=k, v=v)
    device = _checks.same_device(op, q=q, k=k, v=v)
    b, h, lq, d = q.shape
    if k.shape != v.shape:
        raise ValueError(
            f"flash_attention: v has shape {tuple(v.shape)} but k has {tuple(k.shape)}; they must match"
        )
    _checks.size(op, "k", k.shape[0], b, "batch size")
    _checks.size(op, "k", k.shape[3], d, "head dim")
    if k.shape[1] == 0 or h % k.shape[1]:
        raise ValueError(
            f"flash_attention: k has {k.shape[1]} heads, which must divide q's {h} heads"
        )
    if scale is None:
        scale = 1.0 / math.sqrt(d) if d else 1.0
    if cu_seqlens_q is not None or cu_seqlens_k is not None:
        if cu_seqlens_q is None:
            raise ValueError("flash_attention: cu_seqlens_k needs cu_seqlens_q as well")
        cu_seqlens_k = cu_seqlens_q if cu_seqlens_k is None else cu_seqlens_k
        if b != 1:
            raise ValueError(f"flash_attention: packed (cu_seqlens) input needs batch 1, got {b}")
        _check_cu("cu_seqlens_q", cu_seqlens_q, lq, device)
        _check_cu("cu_seqlens_k", cu_seqlens_k, k.shape[2], device)
        if cu_seqlens_k.numel() != cu_seqlens_q.numel():
            raise ValueError(
                "flash_attention: cu_seqlens_q and cu_seqlens_k must list as many sequences"
            )
        if causal and bool(
            ((cu_seqlens_q[1:] - cu_seqlens_q[:-1]) > (cu_seqlens_k[1:] - cu_seqlens_k[:-1])).any()
        ):
            raise ValueError(
                "flash_attention: causal needs every query sequence no longer than its keys"
            )
    elif causal and lq > k.shape[2]:
        raise ValueError(f"flash_attention: causal needs seq_q ≤ seq_k, got {lq} > {k.shape[2]}")
    blocker = _checks.unsupported_dtype(q)
    if d > 256 or d < 1:
        blocker = f"head dim {d} is outside the kernel's 1..256"
    if resolve(op, impl, device, unsupported=blocker) is Impl.REFERENCE:
        return flash_attention_reference(
            q, k, v, causal, scale, cu_seqlens_q=cu_seqlens_q, cu_seqlens_k=cu_seqlens_k
        )
    cu_q = None if cu_seqlens_q is None else cu_seqlens_q.to(torch.int32)
    cu_k = None if cu_seqlens_k is None else cu_seqlens_k.to(torch.int32)
    out, _ = _attn_op(
        q.contiguous(), k.contiguous(), v.contiguous(), bool(causal), float(scale), cu_q, cu_k
    )
    return out
