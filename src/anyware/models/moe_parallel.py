"""Expert parallelism for :class:`~anyware.models.moe.MoETransformer` over torch.distributed.

Layout: every rank holds a replica of the dense parameters (attention, norms, dense MLPs, shared
experts, router) and ``n_routed_experts / world`` routed experts, and reads its own slice of the
batch (data parallel + expert parallel on the same ranks, as in DeepSeek-V3's EP).

One MoE layer's exchange, per step:

1. each rank counts how many of its (token, expert) pairs go to each rank and exchanges the
   counts (all-to-all of ``world`` integers);
2. tokens go to their experts' ranks (all-to-all-v, asynchronous: the shared experts, which
   need no remote token, compute while it is in flight), are sorted by expert there, run
   through a grouped GEMM, and come back the same way (the inverse all-to-all-v);
3. backward runs the two exchanges in reverse (an autograd function around each all-to-all).

Gradients: dense parameters are averaged over ranks (each rank's loss is the mean over its own
slice, and the full-batch mean is the average of equal-sized slices). A routed expert's gradient
already sums the contributions of every rank's tokens, so it is divided by ``world`` instead of
all-reduced. The router's balancing bias is updated from the load summed over ranks, so every
replica applies the same update. With these three rules a W-rank step equals a 1-rank step on
the concatenated batch up to floating-point reduction order.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

from anyware import comm
from anyware.models.moe import Dispatched, MoE, MoEConfig, MoETransformer


def check_shardable(cfg: MoEConfig, world: int) -> None:
    """Reject a configuration that cannot be split over ``world`` ranks, naming the numbers."""
    if world < 1:
        raise ValueError(f"expert-parallel size must be >= 1, got {world}")
    if cfg.n_routed_experts % world:
        raise ValueError(
            f"n_routed_experts={cfg.n_routed_experts} is not divisible by the expert-parallel "
            f"size {world}: choose a multiple of {world} experts or another number of ranks"
        )
    if cfg.n_groups > 1 and cfg.n_groups % world and world % cfg.n_groups:
        raise ValueError(
            f"n_groups={cfg.n_groups} and expert-parallel size {world} must divide one another "
            "so that each rank holds whole groups (or each group spans whole ranks)"
        )


def _all_to_all(
    out: torch.Tensor,
    inp: torch.Tensor,
    out_splits: list[int],
    in_splits: list[int],
    *,
    wait: bool = True,
) -> comm.Work | None:
    return comm.all_to_all(
        out, inp, output_split_sizes=out_splits, input_split_sizes=in_splits, async_op=not wait
    )


class _InFlight:
    """The pending half of an asynchronous exchange, passed from start to wait."""

    work: comm.Work | None = None


class _AllToAllStart(torch.autograd.Function):
    """Starts an all-to-all-v of rows and returns its (not yet filled) output; the matching
    :class:`_AllToAllWait` blocks until it is. Backward is the inverse exchange."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, out_splits: list[int], in_splits: list[int], flight: _InFlight
    ) -> torch.Tensor:
        ctx.splits = (out_splits, in_splits)
        out = x.new_empty((sum(out_splits), *x.shape[1:]))
        flight.work = _all_to_all(out, x.contiguous(), out_splits, in_splits, wait=False)
        return out

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None, None, None]:
        out_splits, in_splits = ctx.splits
        back = grad.new_empty((sum(in_splits), *grad.shape[1:]))
        _all_to_all(back, grad.contiguous(), in_splits, out_splits)
        return back, None, None, None


class _AllToAllWait(torch.autograd.Function):
    @staticmethod
    def forward(ctx: Any, out: torch.Tensor, flight: _InFlight) -> torch.Tensor:
        assert flight.work is not None
        flight.work.wait()
        return out.view_as(out)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return grad, None


@dataclass(slots=True)
class Flight:
    """One asynchronous all-to-all with work overlapped, on this process's monotonic clock (ns).

    The exchange runs on ``anyware.comm``'s worker thread, which ``torch.profiler`` does not
    see, so its end is taken from the completion callback of its ``Work``.
    """

    issued: int
    """When the exchange was started."""
    compute: tuple[int, int] = (0, 0)
    """Start and end of the overlapped computation (the shared experts)."""
    done: int = 0
    """When the exchange completed (completion callback)."""
    waited: int = 0
    """When ``wait`` returned on the main thread."""
    nbytes: int = 0
    """Bytes this rank sent."""

    @property
    def in_flight_ns(self) -> int:
        return max(self.done - self.issued, 0)

    @property
    def overlapped_ns(self) -> int:
        """Time the exchange and the computation were both running."""
        return max(min(self.done, self.compute[1]) - max(self.issued, self.compute[0]), 0)

    @property
    def exposed_ns(self) -> int:
        """Time the main thread waited for the exchange after its computation ended."""
        return max(self.waited - self.compute[1], 0)


class FlightRecorder:
    """Collects a :class:`Flight` for every overlapped all-to-all while :func:`record_flights`
    is active."""

    def __init__(self) -> None:
        self.flights: list[Flight] = []

    def summary(self) -> dict[str, float]:
        """Totals in ms and the fraction of the in-flight time hidden behind computation."""
        flight = sum(f.in_flight_ns for f in self.flights)
        over = sum(f.overlapped_ns for f in self.flights)
        return {
            "exchanges": len(self.flights),
            "in_flight_ms": flight / 1e6,
            "overlapped_ms": over / 1e6,
            "exposed_wait_ms": sum(f.exposed_ns for f in self.flights) / 1e6,
            "compute_ms": sum(f.compute[1] - f.compute[0] for f in self.flights) / 1e6,
            "overlap_fraction": over / flight if flight else 0.0,
        }


_recorder: FlightRecorder | None = None


@contextmanager
def record_flights() -> Iterator[FlightRecorder]:
    """Time every overlapped all-to-all run inside the block (forward token dispatch)."""
    global _recorder
    previous, _recorder = _recorder, FlightRecorder()
    try:
        yield _recorder
    finally:
        _recorder = previous


def all_to_all_rows(
    x: torch.Tensor,
    out_splits: list[int],
    in_splits: list[int],
    during: Callable[[], torch.Tensor] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Differentiable all-to-all-v (send ``in_splits[r]`` rows of ``x`` to rank r), running
    ``during()`` while the rows are in flight; returns the received rows and its result."""
    flight = _InFlight()
    rec = _recorder if during is not None else None
    timing = Flight(issued=time.perf_counter_ns(), nbytes=x.element_size() * x.numel())
    pending = _AllToAllStart.apply(x, out_splits, in_splits, flight)  # type: ignore[no-untyped-call]
    if rec is not None and flight.work is not None:
        flight.work.get_future().add_done_callback(
            lambda _: setattr(timing, "done", time.perf_counter_ns())
        )
    overlapped = None
    if during is not None:
        start = time.perf_counter_ns()
        with torch.profiler.record_function("moe.overlapped_with_all_to_all"):
            overlapped = during()
        timing.compute = (start, time.perf_counter_ns())
    with torch.profiler.record_function("moe.all_to_all_wait"):
        received = _AllToAllWait.apply(pending, flight)  # type: ignore[no-untyped-call]
    if rec is not None:
        timing.waited = time.perf_counter_ns()
        rec.flights.append(timing)
    return received, overlapped


@dataclass(frozen=True, slots=True)
class _Exchange:
    perm: torch.Tensor
    send: list[int]
    recv: list[int]


class ExpertParallelDispatcher:
    """Sends tokens to the rank that holds their expert (see the module docstring)."""

    def __init__(self, group: dist.ProcessGroup | None = None) -> None:
        self.group = group
        self.world = dist.get_world_size(group)
        self.rank = dist.get_rank(group)

    def local_experts(self, n_experts: int) -> range:
        per = n_experts // self.world
        return range(self.rank * per, (self.rank + 1) * per)

    def dispatch(
        self,
        tokens: torch.Tensor,
        expert_ids: torch.Tensor,
        n_experts: int,
        during: Callable[[], torch.Tensor] | None = None,
    ) -> Dispatched:
        per = n_experts // self.world
        send = torch.bincount(expert_ids // per, minlength=self.world)
        recv = torch.empty_like(send)
        _all_to_all(recv, send, [1] * self.world, [1] * self.world)
        send_l, recv_l = send.tolist(), recv.tolist()
        ids = torch.empty(sum(recv_l), dtype=expert_ids.dtype, device=expert_ids.device)
        _all_to_all(ids, expert_ids.contiguous(), recv_l, send_l)
        # The token exchange is the big one: the shared experts run while it is in flight.
        received, overlapped = all_to_all_rows(tokens, recv_l, send_l, during)
        # Segments from each source rank are sorted by expert; merge them into one order.
        perm = ids.argsort(stable=True)
        return Dispatched(
            tokens=received[perm],
            expert_ids=ids[perm],
            handle=_Exchange(perm, send_l, recv_l),
            overlapped=overlapped,
        )

    def combine(self, outputs: torch.Tensor, handle: object) -> torch.Tensor:
        assert isinstance(handle, _Exchange)
        unsorted = outputs[handle.perm.argsort()]  # undo the merge by expert
        return all_to_all_rows(unsorted, handle.send, handle.recv)[0]


def build(
    cfg: MoEConfig, *, seed: int = 0, group: dist.ProcessGroup | None = None
) -> MoETransformer:
    """The model for this rank: identical dense weights everywhere, this rank's expert shard.

    Weights are drawn from the full single-process model with the same ``seed`` and then sliced,
    so a W-rank model is exactly a 1-rank model cut into pieces.
    """
    world = dist.get_world_size(group) if dist.is_initialized() else 1
    check_shardable(cfg, world)
    torch.manual_seed(seed)
    full = MoETransformer(cfg)
    if world == 1:
        return full
    dispatcher = ExpertParallelDispatcher(group)
    torch.manual_seed(seed)
    model = MoETransformer(cfg, dispatcher)
    state = full.state_dict()
    local = dispatcher.local_experts(cfg.n_routed_experts)
    for name, value in list(state.items()):
        if name.endswith(("w_gate_up", "w_down")):
            state[name] = value[local.start : local.stop].clone()
    model.load_state_dict(state)
    return model


def is_expert_param(name: str) -> bool:
    return name.endswith(("w_gate_up", "w_down"))


@torch.no_grad()
def sync_gradients(model: nn.Module, group: dist.ProcessGroup | None = None) -> None:
    """Average dense gradients over ranks; scale expert gradients by 1/world (see docstring)."""
    if not dist.is_initialized() or dist.get_world_size(group) == 1:
        return
    world = dist.get_world_size(group)
    dense = []
    for name, p in model.named_parameters():
        if p.grad is None:
            continue
        if is_expert_param(name):
            p.grad.div_(world)
        else:
            dense.append(p.grad)
    if dense:
        flat = torch.cat([g.flatten() for g in dense])
        _all_reduce(flat, group)
        flat.div_(world)
        offset = 0
        for g in dense:
            g.copy_(flat[offset : offset + g.numel()].view_as(g))
            offset += g.numel()


def _all_reduce(t: torch.Tensor, group: dist.ProcessGroup | None) -> None:
    comm.all_reduce(t, group=group)


@torch.no_grad()
def update_router_bias(
    model: MoETransformer, group: dist.ProcessGroup | None = None
) -> list[torch.Tensor]:
    """One balancing step on every MoE layer with the load summed over ranks; returns the loads."""
    loads = []
    for moe in model.moe_layers():
        load = moe.load.clone()
        if dist.is_initialized() and dist.get_world_size(group) > 1:
            _all_reduce(load, group)
        loads.append(moe.update_bias(load))
    return loads


def imbalance(load: torch.Tensor) -> float:
    """max / mean tokens per expert (1.0 = perfectly balanced)."""
    return float(load.max() / load.mean().clamp_min(1e-9))


__all__ = [
    "ExpertParallelDispatcher",
    "Flight",
    "FlightRecorder",
    "MoE",
    "build",
    "check_shardable",
    "imbalance",
    "is_expert_param",
    "record_flights",
    "sync_gradients",
    "update_router_bias",
]
