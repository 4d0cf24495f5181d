"""MoE dispatch and combine (DeepEP's interface) on top of all-to-all-v.

Experts are spread evenly: rank r owns experts ``[r·E/p, (r+1)·E/p)``. ``dispatch`` sends every
(token, choice) pair to the rank owning its expert: first the per-rank counts (an all-to-all of
p integers), then the token rows and their expert ids (all-to-all-v). ``combine`` sends the
experts' outputs back along the reverse splits and sums each token's k outputs weighted by
its router weights:

    out[t] = Σ_j  weights[t, j] · expert_{idx[t, j]}(x[t])

On the shared-memory transport every message is a one-sided put into the receiver's slot
followed by a counter bump — DeepEP's low-latency shape.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from anyware.comm import api


@dataclass(frozen=True, slots=True, kw_only=True)
class Dispatch:
    """What ``combine`` needs to send outputs home and put them back in token order."""

    order: torch.Tensor
    """Permutation of the T·k (token, choice) slots, grouped by destination rank."""
    send_splits: list[int]
    recv_splits: list[int]
    tokens: int
    topk: int


def dispatch(
    x: torch.Tensor,
    expert_idx: torch.Tensor,
    num_experts: int,
    *,
    group: Any = None,
    algo: str | None = None,
) -> tuple[torch.Tensor, torch.Tensor, Dispatch]:
    """Send each token to the ranks of its top-k experts.

    Returns ``(rows, local_expert, handle)``: the rows this rank's experts must process, the
    local expert index of each row, and the handle for :func:`combine`."""
    comm = api.communicator(group)
    p, rank = comm.world, comm.rank
    if num_experts % p:
        raise ValueError(f"num_experts={num_experts} must be divisible by the world size {p}")
    if x.dim() != 2 or expert_idx.dim() != 2 or expert_idx.shape[0] != x.shape[0]:
        raise ValueError(
            f"x must be [tokens, hidden] and expert_idx [tokens, k]; got {tuple(x.shape)} and "
            f"{tuple(expert_idx.shape)}"
        )
    if expert_idx.numel() and (int(expert_idx.min()) < 0 or int(expert_idx.max()) >= num_experts):
        raise ValueError(f"expert_idx values must lie in [0, {num_experts})")
    per_rank = num_experts // p
    tokens, k = expert_idx.shape
    flat = expert_idx.reshape(-1).to(torch.int64)
    dest = flat // per_rank
    order = torch.argsort(dest, stable=True)
    send = torch.bincount(dest, minlength=p).to(torch.int64)
    recv = torch.empty_like(send)
    api.all_to_all(recv, send, group=group)
    send_splits, recv_splits = send.tolist(), recv.tolist()
    rows = x.index_select(0, order // k) if tokens else x[:0]
    out = torch.empty(sum(recv_splits), x.shape[1], dtype=x.dtype, device=x.device)
    api.all_to_all(out, rows, recv_splits, send_splits, algo=algo, group=group)
    ids = torch.empty(sum(recv_splits), dtype=torch.int64)
    api.all_to_all(ids, flat[order], recv_splits, send_splits, group=group)
    handle = Dispatch(
        order=order, send_splits=send_splits, recv_splits=recv_splits, tokens=tokens, topk=k
    )
    return out, ids - rank * per_rank, handle


def combine(
    y: torch.Tensor,
    handle: Dispatch,
    weights: torch.Tensor,
    *,
    group: Any = None,
    algo: str | None = None,
) -> torch.Tensor:
    """Send expert outputs ``y`` (rows in the order ``dispatch`` returned) home and return
    ``[tokens, hidden]``: each token's k outputs summed with ``weights`` ([tokens, k])."""
    if y.shape[0] != sum(handle.recv_splits):
        raise ValueError(f"y has {y.shape[0]} rows; dispatch delivered {sum(handle.recv_splits)}")
    if tuple(weights.shape) != (handle.tokens, handle.topk):
        raise ValueError(
            f"weights must be [{handle.tokens}, {handle.topk}], got {tuple(weights.shape)}"
        )
    back = torch.empty(handle.tokens * handle.topk, y.shape[1], dtype=y.dtype, device=y.device)
    api.all_to_all(
        back, y.contiguous(), handle.send_splits, handle.recv_splits, algo=algo, group=group
    )
    slots = torch.empty_like(back)
    slots[handle.order] = back
    w = weights.to(y.dtype).unsqueeze(-1)
    return (slots.view(handle.tokens, handle.topk, -1) * w).sum(1)


def moe_reference(
    x: torch.Tensor, expert_idx: torch.Tensor, weights: torch.Tensor, experts: Any
) -> torch.Tensor:
    """The specification, on one rank: ``experts(e, rows)`` applies expert ``e``."""
    out = torch.zeros_like(x)
    for j in range(expert_idx.shape[1]):
        for e in torch.unique(expert_idx[:, j]).tolist():
            m = expert_idx[:, j] == e
            out[m] += weights[m, j].to(x.dtype).unsqueeze(-1) * experts(int(e), x[m])
    return out
