"""A small, readable DeepSeek-style MoE decoder.

The shape follows DeepSeek-V3, scaled down:

* pre-norm blocks with RMSNorm and rotary attention (or DeepSeek sparse attention);
* the first ``n_dense_layers`` blocks use a dense SwiGLU MLP, the rest a mixture of experts:
  ``n_shared_experts`` experts every token passes through, plus ``top_k`` of
  ``n_routed_experts`` fine-grained routed experts;
* sigmoid routing: an expert's affinity is ``s = σ(x·e)``; the choice of experts uses
  ``s + b`` where ``b`` is a per-expert bias that is *not* trained by gradient but nudged after
  each step towards balance (auxiliary-loss-free balancing: ``b_i += γ·sign(mean load − load_i)``),
  while the combine weights use the unbiased ``s`` normalised over the chosen experts, so the
  bias changes who is chosen but not how much they count;
* group-limited routing (DeepSeek's node-limited routing): experts are split into ``n_groups``
  groups, each group is scored by the sum of its two best affinities, and a token may only pick
  experts from its ``topk_groups`` best groups — with expert parallelism each group lives on one
  rank, which bounds how many ranks a token is sent to.

The routed experts are held as stacked weights ``(experts, d, 2·d_expert)`` and
``(experts, d_expert, d)`` and run as a grouped GEMM over tokens sorted by expert; the token
exchange for expert parallelism is pluggable (:class:`Dispatcher`) so the same module runs in
one process or across ranks (:mod:`anyware.models.moe_parallel`).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import nn

from anyware import ops


@dataclass(frozen=True, slots=True, kw_only=True)
class MoEConfig:
    """Model shape. The defaults train in seconds on a cpu; scale every field up for GPUs."""

    vocab_size: int = 96
    """Number of token ids."""
    seq_len: int = 64
    """Longest sequence."""
    d_model: int = 64
    """Width of the residual stream."""
    n_heads: int = 4
    """Attention heads (head dim = d_model / n_heads, must be even for RoPE)."""
    n_layers: int = 3
    """Transformer blocks."""
    n_dense_layers: int = 1
    """Leading blocks with a dense MLP instead of experts (DeepSeek-V3 uses 3 of 61)."""
    d_ff: int = 128
    """Hidden width of the dense MLP."""
    n_routed_experts: int = 8
    """Routed experts per MoE layer."""
    n_shared_experts: int = 1
    """Always-on experts per MoE layer."""
    top_k: int = 2
    """Routed experts per token."""
    d_expert: int = 32
    """Hidden width of each expert."""
    n_groups: int = 1
    """Expert groups for group-limited routing (1 = no limit)."""
    topk_groups: int = 1
    """Groups a token may route into."""
    route_scale: float = 1.0
    """Multiplier on the combine weights."""
    bias_update_rate: float = 1e-2
    """γ of the auxiliary-loss-free balancing update ``bᵢ += γ·sign(mean load − loadᵢ)``.
    DeepSeek-V3's 1e-3 is tuned for its learning rate of 2.2e-4; with AdamW at 3e-3 the tiny
    model's router logits drift by ~0.1 per step, and γ = 1e-3 needed ~250 steps to undo the
    collapse the early unigram phase causes (max/mean 4.0 → 1.46 at step 300), γ = 1e-2 ~100
    (measured in the balance evidence, docs/models.md)."""
    aux_loss_alpha: float = 1e-2
    """α of DeepSeek-V3's complementary sequence-wise balance loss ``α·Σᵢ fᵢ·Pᵢ`` (0 = off).
    DeepSeek-V3 uses 1e-4 as a safety net; here it does the fast part of the recovery from the
    early collapse (with γ = 1e-2, gate init 0.3: per-step max/mean over steps 50–100 1.68
    with α = 1e-2, 1.84 with α = 3e-3), at a cost of ~α per MoE layer in the training loss."""
    gate_init_std: float = 0.02
    """Standard deviation of the router's initial weights. The early collapse onto one expert
    does not come from the gate: in the unigram phase (steps 1–10) the hidden states of all
    tokens align (mean pairwise cosine 0.29 → 0.97), so any gate scores them alike; a 15×
    wider init (0.3) changed the max/mean load after step 50 by less than run-to-run noise."""
    rope_theta: float = 10000.0
    """RoPE base."""
    sparse_attention_topk: int | None = None
    """If set, attention uses DeepSeek sparse attention with this many keys per query."""

    def __post_init__(self) -> None:
        for name in (
            "vocab_size", "seq_len", "d_model", "n_heads", "n_layers", "d_ff",
            "n_routed_experts", "top_k", "d_expert", "n_groups", "topk_groups",
        ):  # fmt: skip
            if getattr(self, name) <= 0:
                raise ValueError(f"MoEConfig.{name} must be positive, got {getattr(self, name)}")
        if self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2:
            raise ValueError(
                f"MoEConfig: d_model={self.d_model} / n_heads={self.n_heads} must be an even head dim"
            )
        if not 0 <= self.n_dense_layers <= self.n_layers:
            raise ValueError(
                f"MoEConfig.n_dense_layers={self.n_dense_layers} must be in [0, n_layers={self.n_layers}]"
            )
        if self.n_routed_experts % self.n_groups:
            raise ValueError(
                f"MoEConfig: n_groups={self.n_groups} must divide n_routed_experts={self.n_routed_experts}"
            )
        if self.topk_groups > self.n_groups:
            raise ValueError(
                f"MoEConfig: topk_groups={self.topk_groups} exceeds n_groups={self.n_groups}"
            )
        reachable = self.topk_groups * (self.n_routed_experts // self.n_groups)
        if self.top_k > reachable:
            raise ValueError(
                f"MoEConfig: top_k={self.top_k} exceeds the {reachable} experts a token can reach "
                f"({self.topk_groups} group(s) of {self.n_routed_experts // self.n_groups})"
            )
        for name in ("bias_update_rate", "aux_loss_alpha", "gate_init_std"):
            if getattr(self, name) < 0:
                raise ValueError(f"MoEConfig.{name} must be >= 0, got {getattr(self, name)}")
        if self.n_shared_experts < 0:
            raise ValueError(
                f"MoEConfig.n_shared_experts must be >= 0, got {self.n_shared_experts}"
            )

    @property
    def n_moe_layers(self) -> int:
        return self.n_layers - self.n_dense_layers

    def flops_per_token(self) -> int:
        """Training FLOPs per token (6 × active parameters + attention), for MFU."""
        d = self.d_model
        attn_proj = 4 * d * d
        dense_mlp = 3 * d * self.d_ff
        expert = 3 * d * self.d_expert
        active_moe = (self.top_k + self.n_shared_experts) * expert + d * self.n_routed_experts
        active = (
            self.n_layers * attn_proj
            + self.n_dense_layers * dense_mlp
            + self.n_moe_layers * active_moe
            + d * self.vocab_size
        )
        attention = self.n_layers * 2 * self.seq_len * d
        return 6 * active + 6 * attention


def rope_tables(seq_len: int, head_dim: int, theta: float) -> tuple[torch.Tensor, torch.Tensor]:
    inv = 1.0 / theta ** (torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim)
    angles = torch.outer(torch.arange(seq_len, dtype=torch.float64), inv)
    return angles.cos().float(), angles.sin().float()


class RMSNorm(nn.Module):
    def __init__(self, d: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return ops.rms_norm(x, self.weight, eps=self.eps)


class Attention(nn.Module):
    def __init__(self, cfg: MoEConfig) -> None:
        super().__init__()
        self.n_heads = cfg.n_heads
        self.head_dim = cfg.d_model // cfg.n_heads
        self.sparse_topk = cfg.sparse_attention_topk
        self.wqkv = nn.Linear(cfg.d_model, 3 * cfg.d_model, bias=False)
        self.wo = nn.Linear(cfg.d_model, cfg.d_model, bias=False)
        if self.sparse_topk is not None:
            # DeepSeek-V3.2's lightning indexer: score(s, t) = Σ_h w_h(s) · ReLU(q_h(s) · k(t)).
            # Its projections get no gradient through the top-k; DeepSeek trains them with a
            # separate KL loss against dense attention, which this small model leaves out.
            self.index_heads, self.index_dim = 2, max(8, self.head_dim // 2)
            self.index_q = nn.Linear(cfg.d_model, self.index_heads * self.index_dim, bias=False)
            self.index_k = nn.Linear(cfg.d_model, self.index_dim, bias=False)
            self.index_w = nn.Linear(cfg.d_model, self.index_heads, bias=False)
        cos, sin = rope_tables(cfg.seq_len, self.head_dim, cfg.rope_theta)
        self.cos: torch.Tensor
        self.sin: torch.Tensor
        self.register_buffer("cos", cos, persistent=False)
        self.register_buffer("sin", sin, persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, t, c = x.shape
        q, k, v = self.wqkv(x).view(b, t, 3, self.n_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        cos, sin = self.cos[:t].to(x.dtype), self.sin[:t].to(x.dtype)
        q, k = ops.rope(q.contiguous(), cos, sin), ops.rope(k.contiguous(), cos, sin)
        scale = 1.0 / math.sqrt(self.head_dim)
        if self.sparse_topk is not None and self.sparse_topk < t:
            indices = ops.indexer_topk(
                self.index_q(x).view(b, t, self.index_heads, self.index_dim),
                self.index_k(x),
                self.index_w(x),
                self.sparse_topk,
                causal=True,
            )
            y = ops.sparse_attention(q, k, v, indices, scale)
        else:
            att = (q @ k.transpose(-2, -1)) * scale
            causal = torch.ones(t, t, dtype=torch.bool, device=x.device).tril()
            att = att.masked_fill(~causal, float("-inf"))
            y = F.softmax(att.float(), dim=-1).to(v.dtype) @ v
        return self.wo(y.transpose(1, 2).reshape(b, t, c))


class DenseMLP(nn.Module):
    def __init__(self, d: int, hidden: int) -> None:
        super().__init__()
        self.gate_up = nn.Linear(d, 2 * hidden, bias=False)
        self.down = nn.Linear(hidden, d, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        gate, up = self.gate_up(x).chunk(2, dim=-1)
        return self.down(ops.swiglu(gate.contiguous(), up.contiguous()))


@dataclass(frozen=True, slots=True, kw_only=True)
class Routing:
    """One MoE layer's routing decision for ``n`` tokens."""

    experts: torch.Tensor
    """``(n, top_k)`` global expert ids."""
    weights: torch.Tensor
    """``(n, top_k)`` combine weights (unbiased affinities, normalised, scaled)."""
    load: torch.Tensor
    """``(n_routed_experts,)`` token count per expert in this batch (float)."""


def route(logits: torch.Tensor, bias: torch.Tensor, cfg: MoEConfig) -> Routing:
    """Sigmoid, group-limited top-k routing with a selection-only bias (see module docstring).

    The choice comes from ``anyware.ops.moe_route`` (not differentiable: a choice has no
    gradient); the combine weights are recomputed from the affinities so the router trains.
    """
    _, experts = ops.moe_route(
        logits.detach(),
        cfg.top_k,
        bias=bias,
        score="sigmoid",
        n_groups=cfg.n_groups,
        topk_groups=cfg.topk_groups,
    )
    w = torch.sigmoid(logits.float()).gather(1, experts)
    w = w / w.sum(-1, keepdim=True) * cfg.route_scale
    load = torch.bincount(experts.flatten(), minlength=cfg.n_routed_experts).float()
    return Routing(experts=experts, weights=w.to(logits.dtype), load=load)


def sequence_balance_loss(
    logits: torch.Tensor, experts: torch.Tensor, n_seqs: int, cfg: MoEConfig
) -> torch.Tensor:
    """DeepSeek-V3's complementary sequence-wise balance loss, averaged over sequences.

    Per sequence of ``T`` tokens: ``fᵢ = E/(K·T) · #{t : i chosen for t}`` (1 for every expert
    when balanced) and ``Pᵢ = mean_t sᵢₜ / Σⱼ sⱼₜ``; the loss is ``α·Σᵢ fᵢ·Pᵢ``. ``fᵢ`` is a count
    (no gradient), so the gradient lowers the affinity of experts a sequence over-uses. It
    reacts within one step, where the bias needs ``(gap in affinity) / γ`` steps.
    """
    e = cfg.n_routed_experts
    s = torch.sigmoid(logits.float())
    p = (s / s.sum(-1, keepdim=True)).view(n_seqs, -1, e).mean(1)
    counts = F.one_hot(experts.view(n_seqs, -1), e).sum(1).float()  # (seqs, E)
    f = counts * (e / counts.sum(-1, keepdim=True))
    return cfg.aux_loss_alpha * (f * p).sum(-1).mean()


@dataclass(frozen=True, slots=True, kw_only=True)
class Dispatched:
    """What a dispatch delivers to the expert computation."""

    tokens: torch.Tensor
    """The rows this process must run through its experts, sorted by expert."""
    expert_ids: torch.Tensor
    """Their global expert ids (sorted)."""
    handle: object
    """What :meth:`Dispatcher.combine` needs to send results back."""
    overlapped: torch.Tensor | None
    """The result of the ``during`` computation run while the tokens were in flight."""


class Dispatcher(Protocol):
    """Moves routed tokens to the rank that holds their expert and back."""

    def local_experts(self, n_experts: int) -> range:
        """Global ids of the experts this process holds."""
        ...

    def dispatch(
        self,
        tokens: torch.Tensor,
        expert_ids: torch.Tensor,
        n_experts: int,
        during: Callable[[], torch.Tensor] | None = None,
    ) -> Dispatched:
        """Send each ``tokens[i]`` to the owner of ``expert_ids[i]`` (both sorted by expert),
        running ``during()`` (work that does not depend on the exchange, such as the shared
        experts) while the tokens are in flight."""
        ...

    def combine(self, outputs: torch.Tensor, handle: object) -> torch.Tensor:
        """Return expert outputs to the ranks their tokens came from, in dispatch order."""
        ...


class LocalDispatcher:
    """Every expert in this process: dispatch and combine are identities."""

    def local_experts(self, n_experts: int) -> range:
        return range(n_experts)

    def dispatch(
        self,
        tokens: torch.Tensor,
        expert_ids: torch.Tensor,
        n_experts: int,
        during: Callable[[], torch.Tensor] | None = None,
    ) -> Dispatched:
        overlapped = during() if during is not None else None
        return Dispatched(tokens=tokens, expert_ids=expert_ids, handle=None, overlapped=overlapped)

    def combine(self, outputs: torch.Tensor, handle: object) -> torch.Tensor:
        return outputs


GroupedGemm = Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor]


def experts_forward(
    x: torch.Tensor,
    expert_ids: torch.Tensor,
    w_gate_up: torch.Tensor,
    w_down: torch.Tensor,
    first: int,
    gemms: tuple[GroupedGemm, GroupedGemm] = (ops.grouped_matmul, ops.grouped_matmul),
) -> torch.Tensor:
    """SwiGLU experts over tokens sorted by expert, as two grouped GEMMs.

    ``w_gate_up``: ``(local_experts, d, 2·h)``; ``w_down``: ``(local_experts, h, d)``;
    ``expert_ids`` are global, ``first`` is the global id of local expert 0. Experts that got no
    token still take part (an empty group), so every expert has a gradient on every rank.
    ``gemms`` are the two grouped GEMMs (an FP8 one after :func:`convert_experts_to_fp8`).
    """
    counts = torch.bincount(expert_ids - first, minlength=w_gate_up.shape[0])
    gate, up = gemms[0](x, w_gate_up, counts).chunk(2, dim=-1)
    return gemms[1](ops.swiglu(gate.contiguous(), up.contiguous()), w_down, counts)


class MoE(nn.Module):
    """Shared experts plus routed experts, with the token exchange delegated to a dispatcher."""

    def __init__(self, cfg: MoEConfig, dispatcher: Dispatcher | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.dispatcher: Dispatcher = dispatcher or LocalDispatcher()
        local = self.dispatcher.local_experts(cfg.n_routed_experts)
        self.first_expert = local.start
        self.gate = nn.Linear(cfg.d_model, cfg.n_routed_experts, bias=False)
        self.w_gate_up = nn.Parameter(torch.empty(len(local), cfg.d_model, 2 * cfg.d_expert))
        self.w_down = nn.Parameter(torch.empty(len(local), cfg.d_expert, cfg.d_model))
        nn.init.normal_(self.w_gate_up, std=0.02)
        nn.init.normal_(self.w_down, std=0.02)
        self.shared = (
            DenseMLP(cfg.d_model, cfg.n_shared_experts * cfg.d_expert)
            if cfg.n_shared_experts
            else None
        )
        self.expert_bias: torch.Tensor
        self.load: torch.Tensor
        self.register_buffer("expert_bias", torch.zeros(cfg.n_routed_experts))
        self.register_buffer("load", torch.zeros(cfg.n_routed_experts), persistent=False)
        self.aux_loss: torch.Tensor | None = None
        self.expert_gemms: nn.ModuleList | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = x.shape
        flat = x.reshape(-1, shape[-1])
        logits = self.gate(flat)
        r = route(logits, self.expert_bias, self.cfg)
        self.aux_loss = None
        if self.training:
            self.load += r.load
            if self.cfg.aux_loss_alpha > 0:
                seqs = flat.shape[0] // shape[-2] if len(shape) > 2 else 1
                self.aux_loss = sequence_balance_loss(logits, r.experts, seqs, self.cfg)
        k = self.cfg.top_k
        order = r.experts.flatten().argsort(stable=True)
        token_of = order // k
        sorted_ids = r.experts.flatten()[order]
        shared = self.shared
        sent = self.dispatcher.dispatch(
            flat[token_of],
            sorted_ids,
            self.cfg.n_routed_experts,
            during=(lambda: shared(flat)) if shared is not None else None,
        )
        gemms = (ops.grouped_matmul, ops.grouped_matmul)
        if self.expert_gemms is not None:
            gemms = (self.expert_gemms[0], self.expert_gemms[1])
        out = experts_forward(
            sent.tokens, sent.expert_ids, self.w_gate_up, self.w_down, self.first_expert, gemms
        )
        back = self.dispatcher.combine(out, sent.handle)
        weighted = back * r.weights.flatten()[order, None]
        y = torch.zeros_like(flat).index_add(0, token_of, weighted)
        if sent.overlapped is not None:
            y = y + sent.overlapped
        return y.view(shape)

    @torch.no_grad()
    def update_bias(self, load: torch.Tensor | None = None) -> torch.Tensor:
        """Aux-loss-free balancing step; returns the load it balanced and resets the counter.

        Pass the load summed over all ranks under data parallelism, so every rank applies the
        same update and the biases stay identical.
        """
        load = self.load.clone() if load is None else load
        self.expert_bias += self.cfg.bias_update_rate * torch.sign(load.mean() - load)
        self.load.zero_()
        return load


class Block(nn.Module):
    def __init__(self, cfg: MoEConfig, layer: int, dispatcher: Dispatcher | None) -> None:
        super().__init__()
        self.attn_norm = RMSNorm(cfg.d_model)
        self.attn = Attention(cfg)
        self.ffn_norm = RMSNorm(cfg.d_model)
        self.ffn: nn.Module = (
            DenseMLP(cfg.d_model, cfg.d_ff) if layer < cfg.n_dense_layers else MoE(cfg, dispatcher)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.attn_norm(x))
        return x + self.ffn(self.ffn_norm(x))


class MoETransformer(nn.Module):
    def __init__(self, cfg: MoEConfig, dispatcher: Dispatcher | None = None) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.layers = nn.ModuleList(Block(cfg, i, dispatcher) for i in range(cfg.n_layers))
        self.norm = RMSNorm(cfg.d_model)
        self.head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False)
        nn.init.normal_(self.embed.weight, std=0.02)
        for m in self.modules():
            if isinstance(m, nn.Linear):
                nn.init.normal_(m.weight, std=0.02)
        for moe in self.moe_layers():
            nn.init.normal_(moe.gate.weight, std=cfg.gate_init_std)

    def moe_layers(self) -> list[MoE]:
        return [m for m in self.modules() if isinstance(m, MoE)]

    def forward(
        self, idx: torch.Tensor, targets: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        if idx.shape[1] > self.cfg.seq_len:
            raise ValueError(
                f"sequence length {idx.shape[1]} exceeds MoEConfig.seq_len={self.cfg.seq_len}"
            )
        x = self.embed(idx)
        for layer in self.layers:
            x = layer(x)
        logits = self.head(self.norm(x))
        loss = None
        if targets is not None:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), targets.flatten())
        for moe in self.moe_layers():
            # taken (and dropped, so the module holds no graph) whether or not there are targets
            if moe.aux_loss is not None and loss is not None:
                loss = loss + moe.aux_loss
            moe.aux_loss = None
        return logits, loss


def convert_experts_to_fp8(model: nn.Module, recipe: str, **options: Any) -> list[str]:
    """Run every MoE layer's two expert grouped GEMMs under an FP8 ``recipe`` (the options are
    ``anyware.formats`` ``Fp8TrainingConfig`` fields); returns the converted layers' names.

    Pair it with ``convert_to_fp8_training(model, recipe, skip=("gate", "head", ...))`` for
    the linear layers: the router keeps high precision either way (it is an ``nn.Linear`` the
    skip list names, and its selection must not flip on FP8 rounding).
    """
    from anyware.formats.grouped import Fp8GroupedMatmul
    from anyware.formats.training import Fp8TrainingConfig

    config = Fp8TrainingConfig(recipe=recipe, **options)  # type: ignore[arg-type]
    names = []
    for name, m in model.named_modules():
        if isinstance(m, MoE):
            n = m.w_gate_up.shape[0]
            gemms = nn.ModuleList([Fp8GroupedMatmul(config, n), Fp8GroupedMatmul(config, n)])
            m.expert_gemms = gemms.to(m.w_gate_up.device)
            names.append(name)
    return names
