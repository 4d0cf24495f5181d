"""QuaRot's rotation of the residual stream, fused into the weights of a pre-norm transformer.

4-bit per-token activations fail on outliers: one scale per token must cover the largest
channel, so the rest fall into a few codes. An orthogonal ``Q`` applied to the residual stream
(``x → x Q``) spreads every outlier over all channels, and a transformer computes the same
function if every module that *writes* to the stream is rotated on its output side and every
module that *reads* it on its input side. Three exact rewrites make that possible:

1. **Centre the stream** (LayerNorm models only). LayerNorm subtracts the mean of ``x``, which
   does not commute with ``Q``. Every consumer of the stream is a LayerNorm, so adding a
   per-token constant to ``x`` changes nothing; project every writer onto zero-mean outputs
   (``W ← (I − 11ᵀ/d) W``, embedding rows centred) and the stream's mean is always 0. Then
   ``LayerNorm(x) = γ ⊙ x / rms(x) + β``.
2. **Fold the norm's affine into its readers**: ``(γ ⊙ n + β) Wᵀ + b = n (W diag γ)ᵀ + (W β + b)``,
   leaving a plain ``RMSNorm`` without weights, which commutes with ``Q`` (``rms(x Q) = rms(x)``).
3. **Rotate**: embeddings ``E ← E Q``, writers ``W ← Qᵀ W``, ``b ← Qᵀ b``, readers ``W ← W Q``.

``Q = diag(s) Hᵀ`` is the randomised Walsh–Hadamard of ``hadamard.py`` (a ±1 sign per channel).
After the fuse the model computes the same logits to fp32 rounding, with no online transform on
the stream. The inputs of the interior linears (attention out-projection, MLP down-projection)
are not on the stream; they get QuaRot's *online* Hadamard (``formats.ptq.QuantLinear``'s
``rotate``), whose weight half is folded too.

The rewrite needs to know the model's wiring: which embeddings and linears write to the stream,
which norm feeds which linears. A ``ResidualLayout`` says that; ``register_layout`` adds one for
a model class (the project's GPT is registered below). Weights shared between modules (a tied
output head) are untied first, since the head must be folded with ``ln_f``'s ``γ`` and the
embedding must not. Everything is computed in float64 and validated before anything is
assigned, so a bad layout leaves the model untouched.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import torch
from torch import nn

from anyware.formats.hadamard import hadamard_transform, random_signs


@dataclass(frozen=True, slots=True, kw_only=True)
class ResidualLayout:
    """Which modules of a pre-norm transformer touch its residual stream (dotted names)."""

    embeddings: tuple[str, ...]
    """``nn.Embedding`` modules whose rows are added to the stream."""
    writers: tuple[str, ...]
    """``nn.Linear`` modules whose outputs are added to the stream."""
    norms: tuple[tuple[str, tuple[str, ...]], ...]
    """``(norm, readers)``: a ``LayerNorm``/``RMSNorm`` on the stream and the linears it feeds.
    Every consumer of the stream must be listed here (that is what makes centring exact)."""
    online: tuple[str, ...] = ()
    """Linears whose inputs are off the stream and get an online Hadamard (out- and
    down-projections; usually the writers). A reader of the stream is already rotated."""

    def __post_init__(self) -> None:
        if not self.embeddings or not self.norms:
            raise ValueError("ResidualLayout needs at least one embedding and one norm")
        readers = [r for _, rs in self.norms for r in rs]
        names = [*self.embeddings, *self.writers, *readers, *(n for n, _ in self.norms)]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"ResidualLayout lists {dup} more than once")
        clash = sorted(set(self.online) & set(readers))
        if clash:
            raise ValueError(f"ResidualLayout.online modules {clash} read the rotated stream")


@dataclass(frozen=True, slots=True, kw_only=True)
class FuseReport:
    """What ``fuse_rotation`` changed."""

    centred: bool
    """True when LayerNorms were turned into RMSNorms by centring the writers."""
    norms: list[str] = field(default_factory=list)
    """Norms replaced by weightless ``RMSNorm`` (their affine folded into the readers)."""
    untied: list[str] = field(default_factory=list)
    """Modules whose weight was shared and got its own copy."""


_LAYOUTS: dict[str, Callable[[nn.Module], ResidualLayout]] = {}


def _key(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def register_layout(
    cls: type | str,
) -> Callable[[Callable[[nn.Module], ResidualLayout]], Callable[[nn.Module], ResidualLayout]]:
    """Decorator: ``fn(model) -> ResidualLayout`` for instances of ``cls`` (a class or its
    ``module.QualName``, so registering needs no import of the model)."""
    key = cls if isinstance(cls, str) else _key(cls)

    def deco(fn: Callable[[nn.Module], ResidualLayout]) -> Callable[[nn.Module], ResidualLayout]:
        _LAYOUTS[key] = fn
        return fn

    return deco


def layout_for(model: nn.Module) -> ResidualLayout | None:
    """The registered layout of ``model``'s class (or a base class), None when unknown."""
    for cls in type(model).__mro__:
        fn = _LAYOUTS.get(_key(cls))
        if fn is not None:
            return fn(model)
    return None


@register_layout("anyware.models.gpt.GPT")
def _gpt_layout(model: nn.Module) -> ResidualLayout:
    n = len(model.blocks)  # type: ignore[arg-type]
    b = [f"blocks.{i}" for i in range(n)]
    return ResidualLayout(
        embeddings=("tok", "pos"),
        writers=tuple(w for p in b for w in (f"{p}.attn.proj", f"{p}.mlp.out")),
        norms=(
            *((f"{p}.ln1", (f"{p}.attn.qkv",)) for p in b),
            *((f"{p}.ln2", (f"{p}.mlp.fc",)) for p in b),
            ("ln_f", ("head",)),
        ),
        online=tuple(w for p in b for w in (f"{p}.attn.proj", f"{p}.mlp.out")),
    )


_M = TypeVar("_M", bound=nn.Module)


def _get(model: nn.Module, name: str, kind: type[_M]) -> _M:
    try:
        m = model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"ResidualLayout names {name!r}, which the model does not have") from None
    if not isinstance(m, kind):
        raise ValueError(
            f"ResidualLayout: {name!r} is a {type(m).__name__}, expected {kind.__name__}"
        )
    return m


def _get_norm(model: nn.Module, name: str) -> nn.LayerNorm | nn.RMSNorm:
    m = _get(model, name, nn.Module)
    if not isinstance(m, (nn.LayerNorm, nn.RMSNorm)):
        raise ValueError(
            f"ResidualLayout: {name!r} is a {type(m).__name__}, expected a LayerNorm or RMSNorm"
        )
    return m


def _rot_rows(w: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """``w Q`` for each row of ``w`` (``Q = diag(s) Hᵀ``)."""
    return hadamard_transform(w, signs=signs)


@torch.no_grad()
def fuse_rotation(model: nn.Module, layout: ResidualLayout, *, seed: int = 0) -> FuseReport:
    """Rotate ``model``'s residual stream in place (module docstring); returns what changed."""
    emb = {n: _get(model, n, nn.Embedding) for n in layout.embeddings}
    wri = {n: _get(model, n, nn.Linear) for n in layout.writers}
    norms = {n: _get_norm(model, n) for n, _ in layout.norms}
    rdr = {r: _get(model, r, nn.Linear) for _, rs in layout.norms for r in rs}
    d = next(iter(emb.values())).embedding_dim
    for n, e in emb.items():
        if e.embedding_dim != d:
            raise ValueError(f"embedding {n!r} has width {e.embedding_dim}, the stream has {d}")
    for n, lin in wri.items():
        if lin.out_features != d:
            raise ValueError(f"writer {n!r} has out_features={lin.out_features}, expected {d}")
    for n, lin in rdr.items():
        if lin.in_features != d:
            raise ValueError(f"reader {n!r} has in_features={lin.in_features}, expected {d}")
    for n, nm in norms.items():
        if tuple(nm.normalized_shape) != (d,):
            raise ValueError(f"norm {n!r} normalises {tuple(nm.normalized_shape)}, expected ({d},)")
    kinds = {type(nm) for nm in norms.values()}
    if len(kinds) > 1:
        raise ValueError("ResidualLayout mixes LayerNorm and RMSNorm on one stream; not supported")
    centre = kinds == {nn.LayerNorm}

    # shared weights (a tied head) would be rotated twice or folded into the wrong module
    seen: dict[int, str] = {}
    untied: list[str] = []
    touched: list[tuple[str, nn.Embedding | nn.Linear]] = [*emb.items(), *wri.items(), *rdr.items()]
    for n, m in touched:
        if id(m.weight) in seen:
            untied.append(n)
        seen.setdefault(id(m.weight), n)

    signs = random_signs(d, seed=seed).double()
    new_w: dict[str, torch.Tensor] = {}
    new_b: dict[str, torch.Tensor] = {}
    for n, e in emb.items():
        ew = e.weight.double()
        if centre:
            ew = ew - ew.mean(dim=1, keepdim=True)
        new_w[n] = _rot_rows(ew, signs)
    for n, lin in wri.items():
        w = lin.weight.double()
        if centre:
            w = w - w.mean(dim=0, keepdim=True)
        new_w[n] = _rot_rows(w.T, signs).T  # Qᵀ W
        if lin.bias is not None:
            bias = lin.bias.double()
            new_b[n] = _rot_rows(bias - bias.mean() if centre else bias, signs)
    eps: dict[str, float | None] = {}
    for n, readers in layout.norms:
        norm = norms[n]
        weight: torch.Tensor | None = norm.weight
        gamma = weight.double() if weight is not None else torch.ones(d, dtype=torch.float64)
        beta: torch.Tensor | None = getattr(norm, "bias", None)
        for r in readers:
            lin = rdr[r]
            w = lin.weight.double()
            b = (
                lin.bias.double()
                if lin.bias is not None
                else torch.zeros(lin.out_features).double()
            )
            if beta is not None:
                b = b + w @ beta.double()
            new_w[r] = _rot_rows(w * gamma, signs)
            if lin.bias is not None or beta is not None:
                new_b[r] = b
        eps[n] = norm.eps

    # nothing above touched the model; from here on, only assignments
    device = next(iter(emb.values())).weight.device
    for n, m in touched:
        m.weight = nn.Parameter(new_w[n].to(m.weight.dtype), requires_grad=m.weight.requires_grad)
        if n in new_b:
            dtype = m.weight.dtype
            m.bias = nn.Parameter(new_b[n].to(dtype), requires_grad=m.weight.requires_grad)
    for n in norms:
        parent_name, _, child = n.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, nn.RMSNorm(d, eps=eps[n], elementwise_affine=False).to(device))
    return FuseReport(centred=centre, norms=list(norms), untied=untied)
