"""FP8 grouped GEMM for mixture-of-experts layers, under the same recipes as ``Float8Linear``.

A routed-expert layer multiplies the rows sorted by expert, ``x (M, K)`` grouped by
``group_sizes (G,)``, by one weight per expert ``w (G, K, N)``. In training each group does the
three GEMMs of a linear layer (see :mod:`anyware.formats.training`)::

    forward   y_g  = x_g · w_g           reduce over K
    dgrad     dx_g = dy_g · w_gᵀ         reduce over N
    wgrad     dw_g = x_gᵀ · dy_g         reduce over M_g (the tokens routed to expert g)

Expert ``g`` is quantised exactly as a ``Float8Linear`` with weight ``w_gᵀ`` would quantise
``x_g``: scale blocks along each GEMM's reduction dim, E4M3 forward operands, E5M2 gradients
(E4M3 in ``deepseek-blockwise``), MX blocks of 32 with RCEIL scales in ``mxfp8``. So a
"tensor" scale is one scale per expert's slice (the unit a grouped kernel launches per group),
never one scale across experts: an expert that received few, small-magnitude tokens would
otherwise sit in the subnormals of another expert's scale. ``tensorwise-delayed`` keeps one amax
history per operand role and expert.

The GEMM is emulated (dequantised operands multiplied in fp32, the accumulation the recipes
specify), so it is exact on any device; ``fp8_grouped_matmul_reference`` is the specification —
one ``Float8Linear`` GEMM per expert — and the tests hold the module to it.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from anyware.formats.training import OPERAND_ROLES, Fp8TrainingConfig, OperandQuantizer, Recipe


class Fp8GroupedMatmul(nn.Module):
    """``grouped_matmul(x, w, group_sizes)`` with FP8 operands in all three GEMMs.

    A drop-in for ``anyware.ops.grouped_matmul``; it holds no weights, only the recipe and,
    for ``tensorwise-delayed``, the amax histories of its ``n_groups`` experts.
    """

    def __init__(self, config: Fp8TrainingConfig, n_groups: int) -> None:
        super().__init__()
        if config.gemm.value != "emulate":
            raise ValueError(
                f"the FP8 grouped GEMM is emulated; gemm={config.gemm.value!r} is not supported "
                "(use gemm='emulate')"
            )
        if n_groups < 1:
            raise ValueError(f"n_groups must be ≥ 1, got {n_groups}")
        self.config = config
        self.quant = OperandQuantizer(config)
        self.n_groups = n_groups
        self.amax_history: torch.Tensor
        hist = torch.zeros(len(OPERAND_ROLES), n_groups, config.amax_history_len)
        self.register_buffer("amax_history", hist)

    def extra_repr(self) -> str:
        return f"groups={self.n_groups}, recipe={self.config.recipe}"

    def forward(self, x: torch.Tensor, w: torch.Tensor, group_sizes: torch.Tensor) -> torch.Tensor:
        if w.shape[0] != self.n_groups or group_sizes.numel() != self.n_groups:
            raise ValueError(
                f"Fp8GroupedMatmul built for {self.n_groups} groups got w of {w.shape[0]} "
                f"and group_sizes of {group_sizes.numel()}"
            )
        sizes = [int(s) for s in group_sizes.tolist()]
        if any(s < 0 for s in sizes) or sum(sizes) != x.shape[0]:
            raise ValueError(
                f"group_sizes must be ≥ 0 and sum to x's {x.shape[0]} rows, got {sizes[:8]}"
            )
        out: torch.Tensor = _Fp8GroupedMatmul.apply(x, w, sizes, self)  # type: ignore[no-untyped-call]
        return out

    # -- one operand, laid out with its GEMM's reduction dim last --

    def delayed_scale(self, t: torch.Tensor, role: str, group: int) -> torch.Tensor:
        """This expert's scale from its own amax history."""
        return self.quant.delayed_scale(
            self.amax_history[OPERAND_ROLES.index(role), group], t, role
        )

    def fake(self, t: torch.Tensor, role: str, scale: torch.Tensor | None) -> torch.Tensor:
        return self.quant.fake(t, role, scale)

    def gemm(
        self, a: torch.Tensor, a_role: str, b: torch.Tensor, b_role: str, group: int
    ) -> torch.Tensor:
        """``a @ bᵀ`` for fp32 ``a (P, R)`` and ``b (Q, R)`` of expert ``group``, both quantised."""
        if a.shape[1] == 0:  # an expert without tokens: its wgrad is zero, not a NaN scale
            return a.new_zeros((a.shape[0], b.shape[0]))
        sa = sb = None
        if self.config.recipe is Recipe.TENSORWISE_DELAYED:
            sa = self.delayed_scale(a, a_role, group)
            sb = self.delayed_scale(b, b_role, group)
        return self.fake(a, a_role, sa) @ self.fake(b, b_role, sb).T


class _Fp8GroupedMatmul(torch.autograd.Function):
    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, w: torch.Tensor, sizes: list[int], mod: Fp8GroupedMatmul
    ) -> torch.Tensor:
        ctx.save_for_backward(x, w)
        ctx.sizes, ctx.mod = sizes, mod
        xf, wf = x.float(), w.float()
        out = torch.cat(
            [
                mod.gemm(rows, "act", wf[g].T, "weight", g)
                if rows.shape[0]
                else xf.new_zeros((0, w.shape[2]))
                for g, rows in enumerate(torch.split(xf, sizes))
            ]
        )
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, w = ctx.saved_tensors
        mod: Fp8GroupedMatmul = ctx.mod
        xf, wf, gf = x.float(), w.float(), grad.float()
        dx = dw = None
        if ctx.needs_input_grad[0]:
            dx = torch.cat(
                [
                    mod.gemm(dy, "grad", wf[g], "weight", g)
                    if dy.shape[0]
                    else dy.new_zeros((0, w.shape[1]))
                    for g, dy in enumerate(torch.split(gf, ctx.sizes))
                ]
            ).to(x.dtype)
        if ctx.needs_input_grad[1]:
            dw = torch.stack(
                [
                    mod.gemm(xg.T.contiguous(), "act", dy.T.contiguous(), "grad", g)
                    for g, (xg, dy) in enumerate(
                        zip(torch.split(xf, ctx.sizes), torch.split(gf, ctx.sizes), strict=True)
                    )
                ]
            ).to(w.dtype)
        return dx, dw, None, None


def fp8_grouped_matmul_reference(
    x: torch.Tensor, w: torch.Tensor, group_sizes: torch.Tensor, config: Fp8TrainingConfig
) -> torch.Tensor:
    """The specification: expert ``g``'s rows through a ``Float8Linear`` with weight ``w_gᵀ``.

    Differentiable (forward, dgrad and wgrad all go through ``Float8Linear``). Every group
    must be non-empty, since a ``Float8Linear`` of zero rows has nothing to scale.
    """
    from anyware.formats.training import Float8Linear

    outs = []
    for g, rows in enumerate(torch.split(x, group_sizes.tolist())):
        lin = nn.Linear(w.shape[1], w.shape[2], bias=False)
        layer = Float8Linear(lin, config)
        del layer.weight
        layer.weight = w[g].T  # type: ignore[assignment]  # a view keeps the autograd path to w
        outs.append(layer(rows))
    return torch.cat(outs)


__all__ = ["Fp8GroupedMatmul", "fp8_grouped_matmul_reference"]
