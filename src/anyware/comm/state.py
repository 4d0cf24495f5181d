"""The per-process-group state behind :mod:`anyware.comm`'s functions: transport, cost model,
overrides, call counter and the worker thread that runs ``async_op=True`` calls in order.

Created lazily by the first collective on a group (a collective call itself, so every rank
creates it at the same point). Transport choice (``ANYWARE_COMM_TRANSPORT``, default auto):
every rank on one host → ``shm``; ranks on several hosts → ``hybrid``; tensors on an
accelerator or no ``/dev/shm`` → ``p2p`` over the group's own backend.
"""

from __future__ import annotations

import concurrent.futures
import socket
import threading
import time
from typing import Any

import torch
import torch.distributed as dist
from torch.autograd import profiler as _autograd_profiler

from anyware import _env
from anyware.comm.algorithms import REGISTRY, Algorithm, Args, Collective, Links
from anyware.comm.errors import CommError
from anyware.comm.reduce_ops import ReduceOp
from anyware.comm.schedule import Buf, Builder, Schedule, Span
from anyware.comm.select import DEFAULT_P2P, DEFAULT_SHM, CostModel, choose, parse_overrides
from anyware.comm.transports.base import Header, Transport, TransportKind, dtype_code
from anyware.comm.transports.p2p import P2PTransport, check_p2p_available

#: Scratch buffers up to this size stay allocated between calls (per dtype and device).
SCRATCH_KEEP_BYTES = 512 << 20


class Communicator:
    def __init__(
        self,
        group: Any = None,
        *,
        transport: str | None = None,
        timeout_s: float | None = None,
        hosts: list[str] | None = None,
        cost: CostModel | None = None,
        calibrate: bool = True,
    ) -> None:
        """``hosts`` fakes each rank's host name (tests of the hybrid path on one machine)."""
        check_p2p_available(group)
        self.group = group
        self.rank, self.world = dist.get_rank(group), dist.get_world_size(group)
        raw = timeout_s if timeout_s is not None else _env.COMM_TIMEOUT.get() or 300
        try:
            self.timeout_s = float(raw)
        except ValueError:
            raise ValueError(
                f"ANYWARE_COMM_TIMEOUT={raw!r} is not a number of seconds; set e.g. 300"
            ) from None
        if self.timeout_s <= 0:
            raise ValueError(f"the comm timeout must be positive, got {self.timeout_s:g} s")
        self.overrides = parse_overrides(_env.COMM_ALGO.get())
        self.p2p = P2PTransport(group, timeout_s=self.timeout_s)
        host_of = hosts or self._gather(socket.gethostname())
        mine = host_of[self.rank]
        self.local = [r for r in range(self.world) if host_of[r] == mine]
        sizes = {host_of.count(h) for h in set(host_of)}
        self.ranks_per_host = len(self.local) if len(sizes) == 1 else 0
        requested = (transport or _env.COMM_TRANSPORT.get() or "auto").strip().lower()
        explicit = requested != "auto"
        try:
            want = TransportKind("hybrid" if requested == "auto" else requested)
        except ValueError:
            raise ValueError(
                f"unknown comm transport {requested!r}; use auto, "
                + ", ".join(k.value for k in TransportKind)
            ) from None
        self.kind = want
        self.transport: Transport = self.p2p
        if want is not TransportKind.P2P:
            from anyware.comm.transports.shm import ShmTransport, available

            reason = available()
            if reason is not None:
                if explicit:
                    raise CommError(f"transport {want.value!r} is not available: {reason}")
                self.kind = TransportKind.P2P
            else:
                remote = set(range(self.world)) - set(self.local)
                if want is TransportKind.SHM and remote:
                    raise CommError(
                        "transport 'shm' needs every rank on one host; use 'hybrid' or 'auto'"
                    )
                shm = ShmTransport(
                    rank=self.rank,
                    world=self.world,
                    exchange=self._gather,
                    barrier=lambda: dist.barrier(group=self.group),
                    peers=self.local,
                    timeout_s=self.timeout_s,
                )
                if remote:
                    from anyware.comm.transports.hybrid import HybridTransport

                    self.transport = HybridTransport(shm=shm, p2p=self.p2p, remote=remote)
                    self.kind = TransportKind.HYBRID
                else:
                    self.transport = shm
                    self.kind = TransportKind.SHM
        self.seq = 0
        self.last_algo = ""
        self._choices: dict[tuple[Collective, int, bool], Algorithm] = {}
        self._named: dict[tuple[Collective, str], Algorithm] = {}
        self._calls: dict[tuple[Any, ...], tuple[str, Schedule, int]] = {}
        self._empty: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}
        self._tmp: dict[tuple[torch.dtype, torch.device], torch.Tensor] = {}
        self._codes = {(c, n): i + 1 for c, t in REGISTRY.items() for i, n in enumerate(t)}
        self._lock = threading.Lock()
        self._pool: concurrent.futures.ThreadPoolExecutor | None = None
        self._pending: list[concurrent.futures.Future[Any]] = []
        self.cost = cost or self._cost_model(calibrate)

    # -- setup helpers -------------------------------------------------------------------------
    def _gather(self, obj: Any) -> list[Any]:
        out: list[Any] = [None] * self.world
        dist.all_gather_object(out, obj, group=self.group)
        return out

    def _cost_model(self, calibrate: bool) -> CostModel:
        base = DEFAULT_P2P if self.kind is TransportKind.P2P else DEFAULT_SHM
        if self.kind is TransportKind.HYBRID:
            base = Links(
                alpha_intra=DEFAULT_SHM.alpha_intra,
                beta_intra=DEFAULT_SHM.beta_intra,
                alpha_inter=DEFAULT_P2P.alpha_intra,
                beta_inter=DEFAULT_P2P.beta_intra,
                ranks_per_host=self.ranks_per_host,
            )
        path = _env.COMM_COST_FILE.get()
        if path:
            return CostModel.load(path)
        if not calibrate or self.world < 2:
            return CostModel(links=base)
        alpha, beta = self.ping_pong()
        gamma = self.local_copy_cost()
        if self.kind is TransportKind.HYBRID and 1 not in self.local:
            links = Links(
                alpha_intra=base.alpha_intra,
                beta_intra=base.beta_intra,
                alpha_inter=alpha,
                beta_inter=beta,
                ranks_per_host=base.ranks_per_host,
                gamma=gamma,
            )
        else:
            links = Links(
                alpha_intra=alpha,
                beta_intra=beta,
                alpha_inter=base.alpha_inter,
                beta_inter=base.beta_inter,
                ranks_per_host=base.ranks_per_host,
                gamma=gamma,
            )
        return CostModel(links=links, source="ping-pong")

    def local_copy_cost(self, nbytes: int = 4 << 20) -> float:
        """γ: seconds per byte of a local copy, agreed by all ranks (rank 0's figure)."""
        a, b = torch.empty(nbytes, dtype=torch.uint8), torch.ones(nbytes, dtype=torch.uint8)
        a.copy_(b)
        best = float("inf")
        for _ in range(3):
            t0 = time.perf_counter()
            a.copy_(b)
            best = min(best, time.perf_counter() - t0)
        g = torch.tensor([best / nbytes], dtype=torch.float64)
        self.execute(
            Collective.BROADCAST,
            Args(rank=self.rank, world=self.world, count=1, root=0, itemsize=8),
            {Buf.IN: g, Buf.OUT: g},
            ReduceOp.SUM,
            algo="binomial",
            bump=False,
        )
        return float(g[0])

    def ping_pong(
        self, small: int = 8, big: int = 4 << 20, reps: int = 20, tries: int = 3
    ) -> tuple[float, float]:
        """One-way (α, β) between ranks 0 and 1, measured on this transport, agreed by all:
        the best of ``tries`` runs of ``reps`` round trips (a shared host preempts some).

        ``big`` is 4 MiB, past the caches: at 1 MiB the copies stay in L2/L3 and β came out
        ~2.5× too optimistic for the 16 MiB messages that bandwidth matters for."""
        result = torch.zeros(2, dtype=torch.float64)
        if self.rank in (0, 1):
            times = []
            for nbytes, n in ((small, reps), (big, max(3, reps // 4))):
                b = Builder(self.rank, self.world)
                other = 1 - self.rank
                span = Span(Buf.OUT, 0, nbytes)
                for k in range(n):
                    if self.rank == 0:
                        b.send(2 * k, other, span)
                        b.recv(2 * k + 1, other, span)
                    else:
                        b.recv(2 * k, other, span)
                        b.send(2 * k + 1, other, span)
                sched = b.build()
                buf = torch.zeros(nbytes, dtype=torch.uint8)
                hdr = Header(
                    seq=-1,
                    collective="barrier",
                    op=ReduceOp.SUM,
                    dtype=dtype_code(buf.dtype),
                    numel=nbytes,
                )
                self.transport.run(sched, {Buf.IN: buf, Buf.OUT: buf}, ReduceOp.SUM, hdr)  # warm
                best = float("inf")
                for _ in range(tries):  # the fastest try: the others met a busy host
                    t0 = time.perf_counter()
                    self.transport.run(sched, {Buf.IN: buf, Buf.OUT: buf}, ReduceOp.SUM, hdr)
                    best = min(best, (time.perf_counter() - t0) / (2 * n))
                times.append(best)
            alpha = times[0]
            beta = max((times[1] - times[0]) / (big - small), 1e-12)
            result = torch.tensor([alpha, beta], dtype=torch.float64)
        self.execute(
            Collective.BROADCAST,
            Args(rank=self.rank, world=self.world, count=2, root=0, itemsize=8),
            {Buf.IN: result, Buf.OUT: result},
            ReduceOp.SUM,
            algo="binomial",
            bump=False,
        )
        return float(result[0]), float(result[1])

    # -- running ---------------------------------------------------------------------------------
    def pick(self, coll: Collective, args: Args, nbytes: int, algo: str | None) -> Algorithm:
        if algo is not None:
            named = self._named.get((coll, algo))
            if named is None:
                from anyware.comm.algorithms import get

                named = self._named[(coll, algo)] = get(coll, algo)
            chosen = named
            reason = chosen.unsupported(args)
            if reason:
                raise ValueError(f"{coll.value} algorithm {chosen.name!r} {reason}")
            return chosen
        uniform = coll is not Collective.ALLTOALL or (
            len(set(args.send_counts) | set(args.recv_counts)) <= 1
        )
        key = (coll, nbytes, uniform)
        hit = self._choices.get(key)
        if hit is None:
            if len(self._choices) > 4096:
                self._choices.clear()
            hit = self._choices[key] = choose(coll, args, nbytes, self.cost, self.overrides)
        return hit

    def execute(
        self,
        coll: Collective,
        args: Args,
        buffers: dict[Buf, torch.Tensor],
        op: ReduceOp,
        *,
        algo: str | None = None,
        numel: int = 0,
        bump: bool = True,
    ) -> str:
        """Run one collective synchronously; returns the algorithm's name."""
        inp = buffers[Buf.IN]
        dtype, device = inp.dtype, inp.device
        # Everything but the call number is a function of the call's shape: the algorithm,
        # its schedule and header codes are looked up once per shape (the latency path).
        key = (coll, args, algo, dtype, op, numel, device)
        hit = self._calls.get(key)
        if hit is None:
            out = buffers[Buf.OUT]
            nbytes = max(inp.numel(), out.numel()) * inp.element_size()
            if coll is Collective.REDUCE_SCATTER:
                nbytes = inp.numel() * inp.element_size()
            chosen = self.pick(coll, args, nbytes, algo)
            hit = (chosen.name, build(chosen, args), self._codes[(coll, chosen.name)])
            if len(self._calls) > 4096:
                self._calls.clear()
            self._calls[key] = hit
        name, sched, code = hit
        self.last_algo = name
        if sched.tmp_count:
            buffers[Buf.TMP] = self._scratch(sched.tmp_count, dtype, device)
        else:  # most schedules need no scratch: skip the allocation on the latency path
            empty = self._empty.get((dtype, device))
            if empty is None:
                empty = self._empty[(dtype, device)] = torch.empty(0, dtype=dtype, device=device)
            buffers[Buf.TMP] = empty
        header = Header(
            seq=self.seq if bump else -2,
            collective=coll.value,
            op=op,
            dtype=dtype_code(dtype),
            numel=numel,
            algo=code,
        )
        if bump:
            self.seq += 1
        transport = self.transport if device.type == "cpu" else self.p2p
        if _autograd_profiler._is_profiler_enabled:
            # A named span for profiles, "async" on the worker thread; ~10 µs, so only while a
            # profiler runs: the check alone costs ~0.015 µs (benchmarks/profile/bench_comm_span).
            worker = threading.current_thread().name.startswith("anyware-comm")
            span = f"anyware.comm:{coll.value}{' async' if worker else ''}"
            with torch.profiler.record_function(span):
                transport.run(sched, buffers, op, header)
        else:
            transport.run(sched, buffers, op, header)
        return name

    def _scratch(self, count: int, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """A schedule's scratch space, reused across calls (grown, never shrunk, up to
        :data:`SCRATCH_KEEP_BYTES`). A fresh ``torch.empty`` past glibc's 32 MiB mmap ceiling
        is new pages every call: first-touch faults made a 16 MiB Bruck all-to-all (48 MiB of
        scratch) copy at 1.8 GB/s instead of 9.6 here. Calls run one at a time (under the
        lock, synchronously), so one buffer per dtype and device is never shared."""
        key = (dtype, device)
        buf = self._tmp.get(key)
        if buf is not None and buf.numel() >= count:
            return buf[:count]
        fresh = torch.empty(count, dtype=dtype, device=device)
        if count * fresh.element_size() <= SCRATCH_KEEP_BYTES:
            self._tmp[key] = fresh
        return fresh

    def submit(self, fn: Any, async_op: bool) -> Any:
        """Run ``fn`` now (after queued async work), or queue it and return a future."""
        if not async_op:
            if self._pending:
                self.drain()
            with self._lock:
                return _no_grad(fn)
        if self._pool is None:
            self._pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="anyware-comm")

        def locked() -> Any:
            with self._lock:
                return _no_grad(fn)

        fut = self._pool.submit(locked)
        self._pending.append(fut)
        return fut

    def drain(self) -> None:
        pending, self._pending = self._pending, []
        for f in pending:
            f.result()

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True)
        self.transport.close()


def _no_grad(fn: Any) -> Any:
    """``fn()`` with grad mode off: a collective writes into its buffers without recording
    autograd history, also when the caller is inside an autograd Function's forward. Grad
    mode is per thread. The raw switch costs 0.2 µs where ``with torch.no_grad()`` costs 4,
    a tenth of a whole small collective on the shared-memory fast path."""
    if not torch.is_grad_enabled():
        return fn()
    torch._C._set_grad_enabled(False)
    try:
        return fn()
    finally:
        torch._C._set_grad_enabled(True)


_CACHE: dict[
    tuple[str, int, int, int, int, int, int, tuple[int, ...], tuple[int, ...]], Schedule
] = {}


def build(algo: Algorithm, a: Args) -> Schedule:
    """Schedules are pure functions of their arguments: build each once."""
    key = (
        f"{algo.collective}:{algo.name}",
        a.rank,
        a.world,
        a.count,
        a.root,
        a.itemsize,
        a.local,
        a.send_counts,
        a.recv_counts,
    )
    sched = _CACHE.get(key)
    if sched is None:
        if len(_CACHE) > 512:
            _CACHE.clear()
        sched = _CACHE[key] = algo.build(a)
    return sched
