"""A learned rotation of the residual stream (SpinQuant, Liu et al. 2024), fused like QuaRot's.

Any orthogonal ``R`` of the residual stream keeps a transformer's function once it is folded
into the weights (``quarot.py``), but the 4-bit error depends on which ``R``: a random
Hadamard spreads outliers evenly, yet nothing makes it the best rotation for *this* model's
quantisers. SpinQuant learns it. The rotation is a point on the orthogonal group (the
Stiefel manifold of square matrices), and the objective is the model's own task loss with every
quantiser in the loop:

* **Start** from QuaRot's random Hadamard ``Q₀`` (``quarot.fuse_rotation`` runs first, so the
  norms are already weightless RMSNorms and the stream is already rotated by ``Q₀``); learn a
  further orthogonal ``U`` with ``R = Q₀ U``, starting at ``U = I``.
* **Parametrise** ``U`` by the Cayley transform ``U = (I − A)⁻¹ (I + A)`` of a skew matrix
  ``A = X − Xᵀ``. Every ``X`` gives an exactly orthogonal ``U`` (``UᵀU = I``), so plain Adam on
  ``X`` stays on the manifold with no retraction step; ``X = 0`` is the identity. (SpinQuant
  takes Cayley-SGD steps on the manifold directly; the Cayley chart reaches every rotation
  without an eigenvalue −1, which a few hundred small steps from ``I`` never approach.)
* **Objective**: next-token cross-entropy of the rotated model with each converted linear's
  activation fake-quantised exactly as ``QuantLinear`` will do it (online Hadamard on the
  off-stream inputs, the same ``act_clip``, the same per-token format), gradients passed
  straight through the rounding (STE). Weights are fake-quantised round-to-nearest in the loop
  when the final weights will be round-to-nearest; with ``weights="gptq"`` they stay in full
  precision while learning, as SpinQuant does when GPTQ quantises the weights afterwards (GPTQ
  then absorbs the weight error given the learned rotation).
* **Data**: the calibration inputs only, cycled; the loss before (``U = I``) and after is
  measured on the same inputs with the same quantised forward.
* **Keep the best**: the mean calibration loss is scored ``CHECKPOINTS`` times during learning
  and the best ``U`` (``I`` included) is kept. The STE loop is chaotic: a last-bit change
  (another gradient summation order) moved one run's final calibration loss from 0.2863 to
  0.2949, and one run of the benchmark ended *above* its start (0.3068 → 0.3300). Scoring
  on the calibration inputs only, this never returns a rotation worse than the Hadamard on
  them.

After learning, ``rotate_stream`` folds ``U`` into the weights in float64 exactly as the fused
Hadamard was (embeddings ``E U``, writers ``Uᵀ W``, readers ``W U``), and the ordinary PTQ path
(GPTQ or round-to-nearest, the same act clip) quantises the result: the learned arm differs
from the Hadamard one only in its rotation.

The per-head rotation ``R2`` of the paper (inside attention, on ``v`` and the out-projection's
input) is not learned here: the out-projection keeps its online Hadamard.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from anyware.formats.api import fake_quantize
from anyware.formats.hadamard import hadamard_transform
from anyware.formats.quarot import ResidualLayout


@dataclass(frozen=True, slots=True, kw_only=True)
class LearnedRotation:
    """What learning the stream rotation did (``PTQReport.learned``)."""

    iterations: int
    """Optimiser steps taken."""
    loss_before: float
    """Calibration loss of the quantised model with the starting Hadamard (``U = I``)."""
    loss_after: float
    """Calibration loss with the learned rotation (same inputs, same quantised forward)."""
    losses: list[float] = field(default_factory=list)
    """Loss at each step (one calibration input each)."""
    u: torch.Tensor | None = None
    """The learned ``U`` (float64; the stream's rotation is ``Q₀ U``)."""
    best_step: int = 0
    """The step whose ``U`` was kept (0: the Hadamard itself)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class QuantSpec:
    """How one converted linear is fake-quantised in the loop (mirrors ``QuantLinear``)."""

    act_fmt: str | None
    act_opts: dict[str, Any]
    act_clip: float
    weight_fmt: str | None
    """None: weights stay in full precision while learning."""
    weight_opts: dict[str, Any]
    signs: torch.Tensor | None
    """The online Hadamard's signs for an off-stream input; None for a stream reader."""


#: the calibration loss is scored this many times during learning; the best ``U`` is kept
CHECKPOINTS = 10


def cayley(x: torch.Tensor) -> torch.Tensor:
    """``(I − A)⁻¹ (I + A)`` with ``A = X − Xᵀ``: orthogonal for every square ``X``."""
    a = x - x.T
    eye = torch.eye(x.shape[0], dtype=x.dtype, device=x.device)
    return torch.linalg.solve(eye - a, eye + a)


@torch.no_grad()
def rotate_stream(model: nn.Module, layout: ResidualLayout, u: torch.Tensor) -> None:
    """Rotate an already fused stream by the orthogonal ``u`` (``x → x U``) in place, in float64:
    embeddings ``E U``, writers ``Uᵀ W`` and ``Uᵀ b``, readers ``W U``. Needs weightless norms
    (``quarot.fuse_rotation`` leaves them), which commute with any rotation."""
    ud = u.detach().double()

    def assign(name: str, value: torch.Tensor) -> None:
        p = model.get_parameter(name)
        p.copy_(value.to(p.dtype))

    for n in layout.embeddings:
        assign(f"{n}.weight", model.get_parameter(f"{n}.weight").double() @ ud)
    for n in layout.writers:
        assign(f"{n}.weight", ud.T @ model.get_parameter(f"{n}.weight").double())
        if model.get_submodule(n).bias is not None:
            assign(f"{n}.bias", ud.T @ model.get_parameter(f"{n}.bias").double())
    for _, readers in layout.norms:
        for n in readers:
            assign(f"{n}.weight", model.get_parameter(f"{n}.weight").double() @ ud)


def _ste(x: torch.Tensor, fmt: str, opts: dict[str, Any]) -> torch.Tensor:
    """Fake quantisation whose gradient is the identity (straight-through estimator)."""
    return x + (fake_quantize(x.detach(), fmt, **opts) - x).detach()


def _unrotate(h: torch.Tensor, signs: torch.Tensor) -> torch.Tensor:
    """Inverse of ``hadamard_transform(·, signs=s)``: ``s ⊙ H h`` (H symmetric, orthonormal)."""
    return hadamard_transform(h) * signs.to(h.dtype)


def _quant_input(x: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    """The linear's input as ``QuantLinear`` quantises it, mapped back to the unrotated basis so
    the weight needs no online half (``(W Rᵀ)(q(R x)) = W (Rᵀ q(R x))``)."""
    if spec.act_fmt is None:
        return x
    h = x.float() if spec.signs is None else hadamard_transform(x.float(), signs=spec.signs)
    if spec.act_clip != 1.0:
        a = h.detach().abs().amax(-1, keepdim=True) * spec.act_clip
        h = torch.minimum(torch.maximum(h, -a), a)
    h = _ste(h, spec.act_fmt, spec.act_opts)
    return h if spec.signs is None else _unrotate(h, spec.signs)


def _quant_weight(w: torch.Tensor, spec: QuantSpec) -> torch.Tensor:
    if spec.weight_fmt is None:
        return w
    if spec.signs is None:
        return _ste(w, spec.weight_fmt, spec.weight_opts)
    wr = _ste(hadamard_transform(w, signs=spec.signs), spec.weight_fmt, spec.weight_opts)
    return _unrotate(wr, spec.signs)


def _task_loss(model: nn.Module, args: Any) -> torch.Tensor:
    """The model's own loss when it returns one (``(logits, loss)``), else next-token
    cross-entropy of ``logits[:, :-1]`` against ``ids[:, 1:]`` (a language model's inputs)."""
    call = tuple(args) if isinstance(args, (tuple, list)) else (args,)
    out = model(*call)
    if (
        isinstance(out, (tuple, list)) and len(out) > 1 and torch.is_tensor(out[1])
        and out[1].dim() == 0
    ):  # fmt: skip
        return out[1]
    logits = out[0] if isinstance(out, (tuple, list)) else out
    ids = call[0]
    if (
        not torch.is_tensor(logits) or logits.dim() != 3 or not torch.is_tensor(ids)
        or ids.dtype not in (torch.int32, torch.int64) or tuple(ids.shape) != logits.shape[:2]
    ):  # fmt: skip
        raise ValueError(
            "rotate='learned' needs a task loss: pass calibration inputs for which the model "
            "returns (logits, loss), or token ids of shape (batch, seq) with logits "
            "(batch, seq, vocab) for next-token cross-entropy"
        )
    return F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), ids[:, 1:].flatten())


def learn_rotation(
    model: nn.Module, layout: ResidualLayout, specs: dict[str, QuantSpec],
    calibration: Sequence[Any], *, steps: int, lr: float,
) -> tuple[torch.Tensor, LearnedRotation]:  # fmt: skip
    """Learn ``U`` (module docstring) for the fused ``model``; returns ``U`` in float64 and
    the report. ``specs`` names the converted linears and how each is quantised. The model is
    not changed."""
    if steps < 0:
        raise ValueError(f"rotation_steps must be >= 0, got {steps}")
    if not calibration:
        raise ValueError("rotate='learned' needs calibration= inputs (training text, not eval)")
    d = model.get_parameter(f"{layout.embeddings[0]}.weight").shape[1]
    base = {k: v.detach() for k, v in model.named_parameters()}
    # a list, not a set: the order the graph is built in is the order backward sums the
    # gradients of U, and a set's order changes with PYTHONHASHSEED. The STE loop amplifies
    # that last-bit difference: two processes ended 100 steps at calibration loss 0.2949 and
    # 0.2863 from the same start before this was a list.
    readers = [r for _, rs in layout.norms for r in rs]
    x = torch.zeros(d, d, requires_grad=True)
    adam = _Adam(x, lr)
    handles = [
        model.get_submodule(n).register_forward_pre_hook(
            lambda _m, inp, s=s: (_quant_input(inp[0], s), *inp[1:])
        )
        for n, s in specs.items()
    ]

    def loss_at(u: torch.Tensor, args: Any) -> torch.Tensor:
        p = dict(base)
        for n in layout.embeddings:
            p[f"{n}.weight"] = base[f"{n}.weight"] @ u
        for n in layout.writers:
            p[f"{n}.weight"] = u.T @ base[f"{n}.weight"]
            if f"{n}.bias" in base:
                p[f"{n}.bias"] = u.T @ base[f"{n}.bias"]
        for n in readers:
            p[f"{n}.weight"] = base[f"{n}.weight"] @ u
        for n, s in specs.items():
            p[f"{n}.weight"] = _quant_weight(p[f"{n}.weight"], s)
        return _task_loss(_Functional(model, p), args)

    def mean_loss(u: torch.Tensor) -> float:
        with torch.no_grad():
            return sum(float(loss_at(u, a)) for a in calibration) / len(calibration)

    was = model.training
    model.eval()
    losses: list[float] = []
    try:
        with torch.enable_grad():
            before = mean_loss(torch.eye(d))
            best, best_x, best_step = before, x.detach().clone(), 0
            every = max(1, steps // CHECKPOINTS)
            for i in range(steps):
                loss = loss_at(cayley(x), calibration[i % len(calibration)])
                x.grad = None
                loss.backward()  # type: ignore[no-untyped-call]
                adam.step()
                losses.append(float(loss.detach()))
                if (i + 1) % every == 0 or i + 1 == steps:
                    # scored exactly as the folded U will be: float64 Cayley, then float32
                    now = mean_loss(cayley(x.detach().double()).float())
                    if now < best:
                        best, best_x, best_step = now, x.detach().clone(), i + 1
            u = cayley(best_x.double())
            after = mean_loss(u.float())
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return u, LearnedRotation(
        iterations=steps, loss_before=before, loss_after=after, losses=losses, u=u,
        best_step=best_step,
    )  # fmt: skip


class _Functional(nn.Module):
    """Calls ``model`` with some parameters replaced (``torch.func.functional_call``)."""

    def __init__(self, model: nn.Module, params: dict[str, torch.Tensor]) -> None:
        super().__init__()
        self.model, self.params = model, params

    def forward(self, *args: Any) -> Any:
        return torch.func.functional_call(self.model, self.params, args)


class _Adam:
    """Adam (Kingma & Ba) on one tensor: the two moment estimates with bias correction.
    Written out because ``torch.optim`` imports ``torch._dynamo`` on first use (~3 s)."""

    def __init__(self, x: torch.Tensor, lr: float, betas: tuple[float, float] = (0.9, 0.999)):
        self.x, self.lr, self.betas, self.t = x, lr, betas, 0
        self.m, self.v = torch.zeros_like(x), torch.zeros_like(x)

    @torch.no_grad()
    def step(self) -> None:
        g = self.x.grad
        assert g is not None
        b1, b2 = self.betas
        self.t += 1
        self.m.mul_(b1).add_(g, alpha=1 - b1)
        self.v.mul_(b2).addcmul_(g, g, value=1 - b2)
        m_hat = self.m / (1 - b1**self.t)
        v_hat = self.v / (1 - b2**self.t)
        self.x.sub_(self.lr * m_hat / (v_hat.sqrt() + 1e-8))
