"""GPTQ: INT weight quantisation with second-order error feedback (Frantar et al., 2022).

Round-to-nearest rounds every weight on its own. GPTQ rounds the columns of ``W`` (shape
``out × K``, one column per input channel) one at a time and pushes each column's rounding error
onto the columns not yet rounded, in the proportions that minimise the layer's *output* error
``‖(Q − W) Xᵀ‖²`` on calibration inputs ``X`` (rows = tokens). That objective is quadratic with
Hessian ``H = 2 XᵀX / n`` (the same for every output row), and the optimal update after rounding
column ``j`` with error ``e = (w_j − q_j) / [H⁻¹]_jj`` is ``W[:, j+1:] −= e · [H⁻¹]_{j, j+1:}``
with ``H⁻¹`` restricted to the columns still free. Those restricted inverses are exactly the rows
of the upper Cholesky factor ``U`` of ``H⁻¹`` (``H⁻¹ = UᵀU``), so one factorisation serves every
step: the paper's key trick, which is also what keeps it numerically stable.

* **Dampening**: ``H += λ·mean(diag H)·I`` (``λ = damp``, 1% by default) so that a rank-deficient
  ``H`` (fewer tokens than channels, a dead channel) still factorises.
* **Dead channels** (``H_jj = 0``: the input is always 0) get ``H_jj = 1`` and a zero weight; the
  output does not depend on them.
* **Blocks**: columns are processed in blocks of ``block_size`` (128). Inside a block the update
  is applied column by column; the rest of the matrix gets one rank-``block_size`` update per
  block. Same result as the unblocked loop (``gptq_reference``) up to summation order; far fewer
  passes over ``W``.
* **Act-order** (``act_order=True``): columns are visited in order of decreasing ``H_jj`` so the
  channels with the largest inputs are rounded first, while most columns are still free to absorb
  their error.
* **Scales**: symmetric INT like ``intq.py`` (``s = amax / qmax``, codes ``−qmax..qmax``). With
  groups along K and in the natural order, a group's scale is taken when GPTQ reaches the group's
  first column, from the weights as updated so far (the paper's choice). With ``act_order`` the
  groups would be visited out of order, so every scale is taken up front from the original
  weights ("static groups"); either way the groups stay contiguous in the stored layout, so the
  result is an ordinary ``QuantizedTensor`` that ``dequantize`` reads. One group per row
  (``group_size=None``, INT8's default) always uses the original row's amax.

When ``H`` is diagonal, the Cholesky factor is diagonal, no error is fed anywhere, and GPTQ
returns exactly round-to-nearest.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from anyware.formats import intq, mx
from anyware.formats.api import QuantizedTensor
from anyware.formats.element import encode_reference
from anyware.formats.spec import ELEMENT, INT_FORMATS, Format, parse_format

#: columns per lazy-update block (the paper's B)
BLOCK_SIZE = 128
#: dampening, as a fraction of the mean of H's diagonal (the paper's 1%)
DAMP = 0.01


def hessian(x: torch.Tensor) -> torch.Tensor:
    """``2 XᵀX / n`` in float64 for inputs ``x`` of shape ``(..., K)`` (all leading dims are
    tokens)."""
    if x.dim() < 1 or x.shape[-1] == 0:
        raise ValueError(f"GPTQ calibration inputs need a last (channel) dim, got {tuple(x.shape)}")
    x2 = x.reshape(-1, x.shape[-1]).double()
    if x2.shape[0] == 0:
        raise ValueError("GPTQ calibration inputs hold no tokens")
    if not torch.isfinite(x2).all():
        raise ValueError("GPTQ calibration inputs contain NaN or Inf")
    return 2.0 * (x2.T @ x2) / x2.shape[0]


def _check(
    w: torch.Tensor, h: torch.Tensor, fmt: str | Format, group_size: int | None,
    block_size: int, damp: float,
) -> tuple[Format, int | None]:  # fmt: skip
    f = parse_format(fmt)
    if f not in INT_FORMATS:
        raise ValueError(f"GPTQ quantises INT weights (int4, int8), not {f.value}")
    if w.dim() != 2 or not w.is_floating_point():
        raise ValueError(
            f"GPTQ expects a 2-D floating-point weight (out, in), got {w.dim()}-D {w.dtype}"
        )
    k = w.shape[1]
    if tuple(h.shape) != (k, k):
        raise ValueError(f"GPTQ Hessian must be ({k}, {k}) for a weight with {k} inputs, "
                         f"got {tuple(h.shape)}")  # fmt: skip
    if not torch.isfinite(w).all():
        raise ValueError("GPTQ weight contains NaN or Inf; round-to-nearest marks such groups NaN")
    if not torch.isfinite(h).all():
        raise ValueError("GPTQ Hessian contains NaN or Inf")
    if block_size <= 0:
        raise ValueError(f"GPTQ block_size must be positive, got {block_size}")
    if not (damp >= 0.0 and math.isfinite(damp)):
        raise ValueError(f"GPTQ damp must be a finite fraction >= 0, got {damp}")
    gs = (
        group_size if group_size is not None else (intq.DEFAULT_GROUP if f is Format.INT4 else None)
    )
    if gs is not None and gs <= 0:
        raise ValueError(f"group_size must be positive, got {gs}")
    return f, gs


def _scale(amax: torch.Tensor, qmax: float) -> torch.Tensor:
    """``intq``'s scale rule on fp32 amax values (all-zero group → 1)."""
    s = torch.where(amax == 0, torch.ones_like(amax), amax / qmax)
    return torch.clamp(s, min=torch.finfo(torch.float32).tiny * 2**-23)


def _prepare(
    w: torch.Tensor, h: torch.Tensor, damp: float, act_order: bool
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """``(W float64 in visiting order, upper Cholesky factor of H⁻¹, the order)``."""
    wd = w.detach().double().clone()
    hd = h.detach().double().clone()
    dead = torch.diagonal(hd) == 0
    hd[dead, dead] = 1.0
    wd[:, dead] = 0.0
    perm = (
        torch.argsort(torch.diagonal(hd), descending=True, stable=True)
        if act_order
        else torch.arange(wd.shape[1], device=wd.device)
    )
    wd, hd = wd[:, perm], hd[perm][:, perm]
    hd += (
        damp * torch.diagonal(hd).mean() * torch.eye(hd.shape[0], dtype=hd.dtype, device=hd.device)
    )
    chol, info = torch.linalg.cholesky_ex(hd)
    if int(info) != 0:
        raise ValueError(
            "GPTQ Hessian is not positive definite even after dampening; raise damp or pass "
            "more calibration inputs"
        )
    hinv = torch.cholesky_inverse(chol)
    return wd, torch.linalg.cholesky(hinv, upper=True), perm


def _static_scales(w: torch.Tensor, gs: int | None, qmax: float) -> torch.Tensor:
    """Scales from the original weights, shape ``(out, n_groups)``."""
    k = w.shape[1]
    g = k if gs is None else gs
    amax = torch.stack([w[:, c : c + g].abs().amax(1) for c in range(0, k, g)], dim=1)
    return _scale(amax.float(), qmax)


@dataclass(frozen=True, slots=True, kw_only=True)
class _Run:
    """What both GPTQ loops start from."""

    fmt: Format
    group_size: int | None
    qmax: float
    g: int
    """Columns per scale group (all of K when there are no groups)."""
    scales: torch.Tensor | None
    """Static scales ``(out, n_groups)`` (act-order or per-row), else ``None``: each group's
    scale is taken when the loop reaches its first column, into ``dyn``."""
    wd: torch.Tensor
    u: torch.Tensor
    perm: torch.Tensor
    codes: torch.Tensor
    dyn: torch.Tensor

    def scale(self, gi: int) -> torch.Tensor:
        return (self.scales if self.scales is not None else self.dyn)[:, gi]

    def finish(self, w: torch.Tensor) -> QuantizedTensor:
        scales = self.scales if self.scales is not None else self.dyn
        return _finish(
            self.codes[:, torch.argsort(self.perm)], scales, w, self.fmt, self.group_size
        )


def _start(
    w: torch.Tensor, h: torch.Tensor, fmt: str | Format, group_size: int | None,
    block_size: int, damp: float, act_order: bool,
) -> _Run:  # fmt: skip
    f, gs = _check(w, h, fmt, group_size, block_size, damp)
    qmax = float(ELEMENT[f].max_value)
    out, k = w.shape
    g = k if gs is None else gs
    static = act_order or gs is None
    wd, u, perm = _prepare(w, h, damp, act_order)
    return _Run(
        fmt=f, group_size=gs, qmax=qmax, g=g,
        scales=_static_scales(w.detach().double(), gs, qmax) if static else None,
        wd=wd, u=u, perm=perm,
        codes=torch.zeros(out, k, dtype=torch.float64, device=w.device),
        dyn=torch.zeros(out, (k + g - 1) // g, dtype=torch.float32, device=w.device),
    )  # fmt: skip


def _finish(
    codes: torch.Tensor, scales: torch.Tensor, w: torch.Tensor, f: Format, gs: int | None
) -> QuantizedTensor:
    el = ELEMENT[f]
    c = encode_reference(codes.double(), el)  # integer values → two's complement codes
    packed = f is Format.INT4
    if packed:
        c = mx.pack_fp4(c)
    return QuantizedTensor(
        fmt=f, codes=c, scales=scales, shape=tuple(w.shape), dtype=w.dtype, group_size=gs,
        packed=packed,
    )  # fmt: skip


@torch.no_grad()
def gptq_quantize(
    w: torch.Tensor, h: torch.Tensor, fmt: str | Format = "int4", *,
    group_size: int | None = None, block_size: int = BLOCK_SIZE, damp: float = DAMP,
    act_order: bool = False,
) -> QuantizedTensor:  # fmt: skip
    """``w`` (out × K) quantised by GPTQ against the Hessian ``h`` (K × K, e.g. ``hessian(x)``),
    in ``fmt`` (``int4``: groups of ``group_size``, default 128; ``int8``: one scale per row)."""
    r = _start(w, h, fmt, group_size, block_size, damp, act_order)
    wd, u, perm, g, k = r.wd, r.u, r.perm, r.g, w.shape[1]
    group_of = perm // g  # group (in the stored layout) of each visited column
    for b0 in range(0, k, block_size):
        b1 = min(b0 + block_size, k)
        blk = wd[:, b0:b1].clone()
        err = torch.zeros_like(blk)
        for i in range(b1 - b0):
            j = b0 + i
            gi = int(group_of[j])
            if r.scales is None and int(perm[j]) % g == 0:
                # natural order: the group's first column. A group that runs past this block
                # must see the block's pending updates too, as the unblocked loop would.
                end = min(j + g, k)
                rest = blk[:, i : end - b0]
                if end > b1:
                    late = wd[:, b1:end] - err[:, :i] @ u[b0:j, b1:end]
                    rest = torch.cat([rest, late], dim=1)
                r.dyn[:, gi] = _scale(rest.abs().amax(1).float(), r.qmax)
            s = r.scale(gi)
            col = blk[:, i]
            q = torch.clamp(torch.round(col.float() / s), -r.qmax, r.qmax)
            r.codes[:, j] = q.double()
            e = (col - (q * s).double()) / u[j, j]
            blk[:, i:] -= e.unsqueeze(1) * u[j, j:b1].unsqueeze(0)
            err[:, i] = e
        wd[:, b1:] -= err @ u[b0:b1, b1:]
    return r.finish(w)


@torch.no_grad()
def gptq_reference(
    w: torch.Tensor, h: torch.Tensor, fmt: str | Format = "int4", *,
    group_size: int | None = None, damp: float = DAMP, act_order: bool = False,
) -> QuantizedTensor:  # fmt: skip
    """The unblocked loop: after each column, update every later column at once. Same result
    as ``gptq_quantize`` up to summation order; the test oracle for its blocking."""
    r = _start(w, h, fmt, group_size, 1, damp, act_order)
    wd, u, perm, g = r.wd, r.u, r.perm, r.g
    for j in range(w.shape[1]):
        gi = int(perm[j]) // g
        if r.scales is None and int(perm[j]) % g == 0:
            r.dyn[:, gi] = _scale(wd[:, j : j + g].abs().amax(1).float(), r.qmax)
        s = r.scale(gi)
        q = torch.clamp(torch.round(wd[:, j].float() / s), -r.qmax, r.qmax)
        r.codes[:, j] = q.double()
        e = (wd[:, j] - (q * s).double()) / u[j, j]
        wd[:, j:] -= e.unsqueeze(1) * u[j, j:].unsqueeze(0)
    return r.finish(w)
