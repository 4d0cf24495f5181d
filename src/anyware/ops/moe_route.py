# mypy: disable-error-code="no-untyped-def,untyped-decorator"
# (Triton kernels take untyped pointer arguments.)
"""MoE routing (DeepSeek-V3 style): which ``top_k`` experts each token goes to, and with what
weight.

1. affinity ``s = σ(logits)`` (or ``softmax(logits)``), computed in fp32;
2. selection scores ``s + bias``: the bias is the aux-loss-free balancing term, it changes
   *who* is chosen but never how much they count;
3. group-limited routing: experts form ``n_groups`` groups, a group's score is the sum of its
   two best selection scores, and only the ``topk_groups`` best groups may be picked (bounds
   how many devices a token is sent to under expert parallelism);
4. the ``top_k`` best selection scores among the allowed experts;
5. weights = the chosen experts' *unbiased* affinities, normalised to sum to 1 (``normalize``)
   and multiplied by ``route_scale``.

The kernel does all five for ``BLOCK_T`` tokens at a time in registers: the top-k is ``top_k``
rounds of argmax-and-mask (k ≤ 16 makes that cheaper than a sort), so the only memory traffic
is reading the logits and writing ``(weights, ids)``.
"""

from __future__ import annotations

import torch

from anyware.ops import _checks
from anyware.ops._registry import Impl, OpSpec, register_op, resolve
from anyware.ops._triton import jit, next_pow2, tl, triton

SPEC = register_op(
    OpSpec(
        name="moe_route",
        summary="MoE top-k routing: sigmoid/softmax, bias, group-limited",
        backward="none",
    )
)
SCORES = ("sigmoid", "softmax")


def moe_route_reference(
    logits: torch.Tensor,
    top_k: int,
    *,
    bias: torch.Tensor | None = None,
    score: str = "sigmoid",
    n_groups: int = 1,
    topk_groups: int = 1,
    route_scale: float = 1.0,
    normalize: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """The specification: ``(weights fp32 (N, top_k), expert ids int64 (N, top_k))``."""
    acc = torch.promote_types(logits.dtype, torch.float32)
    x = logits.to(acc)
    affinity = torch.sigmoid(x) if score == "sigmoid" else torch.softmax(x, dim=-1)
    select = affinity if bias is None else affinity + bias.to(acc)
    if n_groups > 1:
        n = select.shape[0]
        grouped = select.view(n, n_groups, -1)
        group_score = grouped.topk(min(2, grouped.shape[-1]), dim=-1).values.sum(-1)
        keep = group_score.topk(topk_groups, dim=-1).indices
        drop = torch.ones_like(group_score, dtype=torch.bool).scatter_(1, keep, False)
        select = grouped.masked_fill(drop[..., None], float("-inf")).view(n, -1)
    ids = select.topk(top_k, dim=-1).indices
    w = affinity.gather(1, ids)
    if normalize:
        w = w / w.sum(-1, keepdim=True)
    return (w * route_scale).float(), ids


# --- kernel ---------------------------------------------------------------------------------
@jit
def _route_kernel(
    L, B, W, IDS, N, E, route_scale,
    TOP_K: tl.constexpr, SOFTMAX: tl.constexpr, HAS_BIAS: tl.constexpr, NORMALIZE: tl.constexpr,
    N_GROUPS: tl.constexpr, TOPK_GROUPS: tl.constexpr, GROUP_SIZE: tl.constexpr,
    BLOCK_T: tl.constexpr, BLOCK_E: tl.constexpr,
):  # fmt: skip
    rows = tl.program_id(0) * BLOCK_T + tl.arange(0, BLOCK_T)
    cols = tl.arange(0, BLOCK_E)
    rmask = rows < N
    cmask = cols < E
    x = tl.load(
        L + rows[:, None].to(tl.int64) * E + cols[None, :],
        mask=rmask[:, None] & cmask[None, :],
        other=0.0,
    ).to(tl.float32)
    if SOFTMAX:
        x = tl.where(cmask[None, :], x, float("-inf"))
        e = tl.exp(x - tl.max(x, axis=1)[:, None])
        aff = e / tl.sum(e, axis=1)[:, None]
    else:
        aff = tl.sigmoid(x)
    sel = aff
    if HAS_BIAS:
        sel = sel + tl.load(B + cols, mask=cmask, other=0.0).to(tl.float32)[None, :]
    sel = tl.where(cmask[None, :], sel, float("-inf"))
    if N_GROUPS > 1:
        g3 = tl.reshape(sel, (BLOCK_T, N_GROUPS, GROUP_SIZE))
        inner = tl.arange(0, GROUP_SIZE)[None, None, :]
        best = tl.max(g3, axis=2)
        if GROUP_SIZE > 1:
            first = tl.argmax(g3, axis=2)
            second = tl.max(tl.where(inner == first[:, :, None], float("-inf"), g3), axis=2)
            gscore = best + second
        else:
            gscore = best
        gidx = tl.arange(0, N_GROUPS)[None, :]
        keep = tl.zeros((BLOCK_T, N_GROUPS), tl.int1)
        for _ in tl.static_range(TOPK_GROUPS):
            pick = tl.argmax(gscore, axis=1)
            hit = gidx == pick[:, None]
            keep = keep | hit
            gscore = tl.where(hit, float("-inf"), gscore)
        g3 = tl.where(keep[:, :, None], g3, float("-inf"))
        sel = tl.reshape(g3, (BLOCK_T, BLOCK_E))
    total = tl.zeros((BLOCK_T,), tl.float32)
    for j in tl.static_range(TOP_K):
        pick = tl.argmax(sel, axis=1)
        hit = cols[None, :] == pick[:, None]
        total += tl.sum(tl.where(hit, aff, 0.0), axis=1)
        sel = tl.where(hit, float("-inf"), sel)
        tl.store(IDS + rows.to(tl.int64) * TOP_K + j, pick.to(tl.int64), mask=rmask)
    # second pass for the weights, now that their sum is known
    scale = route_scale / total if NORMALIZE else route_scale + tl.zeros((BLOCK_T,), tl.float32)
    for j in tl.static_range(TOP_K):
        pick = tl.load(IDS + rows.to(tl.int64) * TOP_K + j, mask=rmask, other=0)
        w = tl.sum(tl.where(cols[None, :] == pick[:, None], aff, 0.0), axis=1)
        tl.store(W + rows.to(tl.int64) * TOP_K + j, w * scale, mask=rmask)


# --- launcher and registration -------------------------------------------------------------
@torch.library.custom_op("anyware::moe_route", mutates_args=())
def _route_op(
    logits: torch.Tensor, bias: torch.Tensor | None, top_k: int, softmax: bool, n_groups: int,
    topk_groups: int, route_scale: float, normalize: bool,
) -> tuple[torch.Tensor, torch.Tensor]:  # fmt: skip
    n, e = logits.shape
    w = torch.empty((n, top_k), dtype=torch.float32, device=logits.device)
    ids = torch.empty((n, top_k), dtype=torch.int64, device=logits.device)
    if n:
        block_e = next_pow2(e)
        block_t = max(1, min(64, 8192 // block_e))
        _route_kernel[(triton.cdiv(n, block_t),)](
            logits, bias if bias is not None else logits, w, ids, n, e, route_scale,
            TOP_K=top_k, SOFTMAX=softmax, HAS_BIAS=bias is not None, NORMALIZE=normalize,
            N_GROUPS=n_groups, TOPK_GROUPS=topk_groups, GROUP_SIZE=e // n_groups,
            BLOCK_T=block_t, BLOCK_E=block_e,
        )  # fmt: skip
    return w, ids


@_route_op.register_fake
def _(logits, bias, top_k, softmax, n_groups, topk_groups, route_scale, normalize):  # type: ignore[no-untyped-def]
    n = logits.shape[0]
    return logits.new_empty((n, top_k), dtype=torch.float32), logits.new_empty(
        (n, top_k), dtype=torch.int64
    )


# --- public function -----------------------------------------------------------------------
def moe_route(
    logits: torch.Tensor,
    top_k: int,
    *,
    bias: torch.Tensor | None = None,
    score: str = "sigmoid",
    n_groups: int = 1,
    topk_groups: int = 1,
    route_scale: float = 1.0,
    normalize: bool = True,
    impl: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Route ``logits (tokens, experts)`` to ``top_k`` experts each: returns fp32 weights and
    int64 expert ids, both ``(tokens, top_k)``. Not differentiable (train the gate through the
    weights of the reference path, or use the bias for balance)."""
    op = "moe_route"
    _checks.tensor(op, "logits", logits)
    _checks.ndim(op, "logits", logits, (2,), "2-D (tokens, experts)")
    _checks.dtype(op, "logits", logits, (*_checks.FLOATS, torch.float64))
    e = logits.shape[1]
    if score not in SCORES:
        raise ValueError(f"moe_route: score={score!r}; use one of {', '.join(SCORES)}")
    if n_groups < 1 or e % n_groups:
        raise ValueError(f"moe_route: n_groups={n_groups} must be ≥ 1 and divide the {e} experts")
    if not 1 <= topk_groups <= n_groups:
        raise ValueError(f"moe_route: topk_groups={topk_groups} must be in 1..n_groups={n_groups}")
    if not 1 <= top_k <= topk_groups * (e // n_groups):
        raise ValueError(
            f"moe_route: top_k={top_k} must be in 1..{topk_groups * (e // n_groups)} "
            f"(the experts in the {topk_groups} allowed group(s))"
        )
    device = logits.device
    if bias is not None:
        _checks.tensor(op, "bias", bias)
        if tuple(bias.shape) != (e,):
            raise ValueError(f"moe_route: bias has shape {tuple(bias.shape)}, expected ({e},)")
        _checks.same_device(op, logits=logits, bias=bias)
    blocker = _checks.unsupported_dtype(logits)
    if n_groups > 1 and (e & (e - 1) or n_groups & (n_groups - 1)):
        blocker = "grouped routing in the kernel needs power-of-two experts and groups"
    elif e > 1024 or top_k > 16:
        blocker = f"{e} experts / top_k={top_k} exceed the kernel's 1024 / 16"
    if resolve(op, impl, device, unsupported=blocker) is Impl.REFERENCE:
        return moe_route_reference(
            logits, top_k, bias=bias, score=score, n_groups=n_groups, topk_groups=topk_groups,
            route_scale=route_scale, normalize=normalize,
        )  # fmt: skip
    return _route_op(
        logits.contiguous(), None if bias is None else bias.contiguous(), top_k, score == "softmax",
        n_groups, topk_groups, float(route_scale), normalize,
    )  # fmt: skip
