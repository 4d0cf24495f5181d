"""One rank of a multi-process comm test: ``_worker.py SCENARIO RANK WORLD PORT OUTDIR``.

Each scenario runs many checks and writes ``OUTDIR/result<RANK>.json``; failures are collected
as strings (not raised) so one launch reports every mismatch at once.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

from anyware import comm
from anyware.comm.algorithms import REGISTRY, Collective
from anyware.comm.reduce_ops import parse_op, torch_op
from anyware.testing.tolerances import tolerance

DTYPES = [torch.float32, torch.float16, torch.bfloat16, torch.int64]
SIZES = [0, 1, 7, 131]  # empty, single, primes
BIG = 262147  # prime; fp32 = 1 MiB + 12 bytes, so shared-memory messages span several slots


def data(rank: int, n: int, dtype: torch.dtype, salt: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(1000 * rank + n + salt)
    if dtype.is_floating_point:
        return torch.randn(n, generator=g).to(dtype)
    return torch.randint(-1000, 1000, (n,), generator=g, dtype=dtype)


def same(got: torch.Tensor, want: torch.Tensor) -> str | None:
    if got.shape != want.shape:
        return f"shape {tuple(got.shape)} vs {tuple(want.shape)}"
    if not got.dtype.is_floating_point:
        return None if torch.equal(got, want) else f"max diff {(got - want).abs().max()}"
    tol = tolerance(got.dtype)
    ok = torch.isclose(got.double(), want.double(), rtol=tol.rtol, atol=tol.atol * 4)
    return (
        None
        if bool(ok.all())
        else f"max diff {float((got.double() - want.double()).abs().max()):.3g}"
    )


def identical_everywhere(t: torch.Tensor, group: Any) -> bool:
    """Every rank ended with the same bits (what DDP needs)."""
    b = t.reshape(-1).view(torch.uint8) if t.numel() else torch.zeros(0, dtype=torch.uint8)
    outs = [torch.empty_like(b) for _ in range(dist.get_world_size(group))]
    dist.all_gather(outs, b, group=group)
    return all(torch.equal(o, outs[0]) for o in outs)


def matrix(rank: int, world: int) -> dict[str, Any]:
    groups = {"shm": None, "p2p": dist.new_group(backend="gloo")}
    if world == 4:
        groups["hybrid"] = dist.new_group(backend="gloo")
    for name, g in groups.items():
        hosts = ["a", "a", "b", "b"] if name == "hybrid" else None
        c = comm.communicator(g, transport=name, hosts=hosts, timeout_s=30)
        assert c.kind.value == name, (c.kind, name)
    fails: list[str] = []
    checks = 0

    def note(what: str, err: str | None) -> None:
        nonlocal checks
        checks += 1
        if err:
            fails.append(f"{what}: {err}")

    for tname, g in groups.items():
        results: list[tuple[str, torch.Tensor]] = []
        dtypes = DTYPES if tname != "hybrid" else [torch.float32, torch.int64]
        for dtype in dtypes:
            sizes = SIZES + ([BIG] if dtype == torch.float32 and world == 2 else [])
            for n in sizes:
                x = data(rank, n, dtype)
                # allreduce
                ref = x.clone()
                dist.all_reduce(ref, group=g)
                for algo in REGISTRY[Collective.ALLREDUCE]:
                    t = x.clone()
                    comm.all_reduce(t, algo=algo, group=g)
                    note(f"{tname} allreduce {algo} {dtype} n={n}", same(t, ref))
                    results.append((f"{tname} allreduce {algo} {dtype} n={n}", t))
                # reduce_scatter / allgather
                full = data(rank, n * world, dtype, 1)
                ref_rs = torch.empty(n, dtype=dtype)
                dist.reduce_scatter_tensor(ref_rs, full, group=g)
                for algo in REGISTRY[Collective.REDUCE_SCATTER]:
                    o = torch.full((n,), 7, dtype=dtype)
                    comm.reduce_scatter(o, full, algo=algo, group=g)
                    note(f"{tname} reduce_scatter {algo} {dtype} n={n}", same(o, ref_rs))
                ref_ag = torch.empty(n * world, dtype=dtype)
                dist.all_gather_into_tensor(ref_ag, x, group=g)
                for algo in REGISTRY[Collective.ALLGATHER]:
                    o = torch.empty(n * world, dtype=dtype)
                    comm.all_gather(o, x, algo=algo, group=g)
                    note(f"{tname} allgather {algo} {dtype} n={n}", same(o, ref_ag))
                root = world - 1
                ref_b = x.clone()
                dist.broadcast(ref_b, src=root, group=g)
                for algo in REGISTRY[Collective.BROADCAST]:
                    t = x.clone()
                    comm.broadcast(t, src=root, algo=algo, group=g)
                    note(f"{tname} broadcast {algo} {dtype} n={n}", same(t, ref_b))
                ref_r = x.clone()
                dist.reduce(ref_r, dst=1, group=g)
                for algo in REGISTRY[Collective.REDUCE]:
                    t = x.clone()
                    comm.reduce(t, dst=1, algo=algo, group=g)
                    note(f"{tname} reduce {algo} {dtype} n={n}", same(t, ref_r if rank == 1 else x))
                # all-to-all, equal splits
                a_in = data(rank, n * world, dtype, 2)
                ref_a = torch.empty_like(a_in)
                dist.all_to_all_single(ref_a, a_in, group=g)
                for algo in REGISTRY[Collective.ALLTOALL]:
                    o = torch.empty_like(a_in)
                    comm.all_to_all(o, a_in, algo=algo, group=g)
                    note(f"{tname} alltoall {algo} {dtype} n={n}", same(o, ref_a))
            # all-to-all-v: rank r sends (r + j + n) % 4 rows of width 3 to rank j
            for n in (0, 1, 5):
                send = [(rank + j + n) % 4 for j in range(world)]
                recv = [(j + rank + n) % 4 for j in range(world)]
                a_in = data(rank, sum(send) * 3, dtype, 3).view(-1, 3)
                ref_a = torch.empty(sum(recv), 3, dtype=dtype)
                dist.all_to_all_single(ref_a, a_in, recv, send, group=g)
                o = torch.empty_like(ref_a)
                comm.all_to_all(o, a_in, recv, send, group=g)
                note(f"{tname} alltoall-v {dtype} n={n}", same(o, ref_a))
        # every rank ended every allreduce with the same bits (one gather for all of them)
        if not identical_everywhere(
            torch.cat([t.reshape(-1).view(torch.uint8) for _, t in results]), g
        ):
            for what, t in results:
                if not identical_everywhere(t, g):
                    fails.append(f"{what}: ranks differ")
        # other reduce ops on int64 and fp32
        for op in ("max", "min", "prod", "band", "bor", "bxor", "avg"):
            dtype = torch.int64 if op.startswith("b") else torch.float32
            x = data(rank, 13, dtype) if op != "prod" else data(rank, 13, dtype) / 2 + 1
            ref = x.clone()
            if op == "avg":
                dist.all_reduce(ref, group=g)
                ref /= world
            else:
                dist.all_reduce(ref, op=torch_op(parse_op(op)), group=g)  # type: ignore[arg-type]
            for algo in REGISTRY[Collective.ALLREDUCE]:
                t = x.clone()
                comm.all_reduce(t, op=op, algo=algo, group=g)
                note(f"{tname} allreduce {op} {algo}", same(t, ref))
        # non-contiguous tensor, list forms
        m = data(rank, 24, torch.float32).view(4, 6).t()
        ref = m.contiguous()
        dist.all_reduce(ref, group=g)
        comm.all_reduce(m, group=g)
        note(f"{tname} non-contiguous", same(m, ref))
        outs = [torch.empty(5) for _ in range(world)]
        x = data(rank, 5, torch.float32)
        comm.all_gather(outs, x, group=g)
        ref_l = [torch.empty(5) for _ in range(world)]
        dist.all_gather(ref_l, x, group=g)
        note(f"{tname} allgather list", same(torch.cat(outs), torch.cat(ref_l)))
        parts = [data(rank, 5, torch.float32, 7 + j) for j in range(world)]
        rs = torch.empty(5)
        comm.reduce_scatter(rs, parts, group=g)
        ref_rs = torch.empty(5)
        dist.reduce_scatter(ref_rs, parts, group=g)
        note(f"{tname} reduce_scatter list", same(rs, ref_rs))
        # async handles keep order and complete
        ts = [data(rank, 1000, torch.float32, k) for k in range(4)]
        refs = [t.clone() for t in ts]
        for r_ in refs:
            dist.all_reduce(r_, group=g)
        works = [comm.all_reduce(t, group=g, async_op=True) for t in ts]
        for w in works:
            assert w is not None
            w.wait()
        for t, r_ in zip(ts, refs, strict=True):
            note(f"{tname} async", same(t, r_))
    return {"fails": fails, "checks": checks}


def errors(rank: int, world: int) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for tname in ("shm", "p2p"):
        # mismatched shapes -> CommMismatchError naming the other rank
        g = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=20))
        comm.communicator(g, transport=tname, timeout_s=10, calibrate=False)
        t = torch.ones(5 if rank == 0 else 7)
        try:
            comm.all_reduce(t, algo="ring", group=g)
            out[f"{tname}_shape"] = "no error"
        except comm.CommError as e:
            out[f"{tname}_shape"] = str(e)
        # mismatched dtype
        g = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=20))
        comm.communicator(g, transport=tname, timeout_s=10, calibrate=False)
        t = torch.ones(6, dtype=torch.float32 if rank == 0 else torch.float64)
        try:
            comm.all_reduce(t, algo="ring", group=g)
            out[f"{tname}_dtype"] = "no error"
        except comm.CommError as e:
            out[f"{tname}_dtype"] = str(e)
        # a rank that never arrives -> timeout naming it
        g = dist.new_group(backend="gloo", timeout=datetime.timedelta(seconds=20))
        comm.communicator(g, transport=tname, timeout_s=1.5, calibrate=False)
        if rank != world - 1:
            try:
                comm.all_reduce(torch.ones(4), algo="ring", group=g)
                out[f"{tname}_timeout"] = "no error"
            except comm.CommTimeoutError as e:
                out[f"{tname}_timeout"] = f"rank={e.rank} {e}"
            except comm.CommError as e:
                out[f"{tname}_timeout"] = f"other: {e}"
        dist.barrier()
    # bad local input: one clear error, before any message
    for label, call in {
        "bitwise_float": lambda: comm.all_reduce(torch.ones(3), op="band"),
        "unknown_algo": lambda: comm.all_reduce(torch.ones(3), algo="rign"),
        "bad_splits": lambda: comm.all_to_all(torch.ones(4), torch.ones(4), [1, 1], [3, 3]),
    }.items():
        try:
            call()
            out[label] = "no error"
        except (TypeError, ValueError) as e:
            out[label] = str(e)
    return out


def die(rank: int, world: int) -> dict[str, Any]:
    """Rank 1 is killed mid-collective: rank 0 must name it, and no segment may remain."""
    import signal

    c = comm.communicator(None, transport="shm", timeout_s=20, calibrate=False)
    comm.all_reduce(torch.ones(10))
    names = sorted(os.listdir("/dev/shm"))
    leftover = [n for n in names if n.startswith("anyware-comm-")]
    if rank == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    try:
        for _ in range(3):
            comm.all_reduce(torch.ones(1 << 20), algo="ring")
        err = "no error"
    except comm.CommError as e:
        err = str(e)
    del c
    after = [n for n in os.listdir("/dev/shm") if n.startswith("anyware-comm-")]
    return {"error": err, "leftover_after_setup": leftover, "leftover_after_death": after}


def features(rank: int, world: int) -> dict[str, Any]:
    """ANYWARE_COMM_ALGO override, cost-model calibration, DDP hook, MoE dispatch/combine."""
    from torch.nn.parallel import DistributedDataParallel as DDP

    from anyware.comm.ddp import register
    from anyware.comm.moe import combine, dispatch, moe_reference

    out: dict[str, Any] = {}
    c = comm.communicator(None)  # auto: shm on one host, calibrated by ping-pong
    out["kind"], out["cost_source"] = c.kind.value, c.cost.source
    picked = {}
    for n in (16, 1 << 16):  # override is 'tree@<=1K,ring@>1K'
        comm.all_reduce(torch.ones(n // 4))
        picked[n] = c.last_algo
    out["override"] = picked
    # a cost model loaded from ANYWARE_COMM_COST_FILE replaces the ping-pong
    path = Path(os.environ["COMM_TEST_TMP"]) / "cost.json"
    if rank == 0:
        c.cost.save(path)
    dist.barrier()
    os.environ["ANYWARE_COMM_COST_FILE"] = str(path)
    c2 = comm.communicator(dist.new_group(backend="gloo"), transport="p2p")
    del os.environ["ANYWARE_COMM_COST_FILE"]
    out["loaded_cost"] = c2.cost.source == str(path) and c2.cost.links == c.cost.links
    # the device framing (exact sizes, batch_isend_irecv), exercised over gloo
    c2.p2p.exact = True
    g2 = c2.group
    errs = []
    for algo in ("ring", "double_binary_tree", "recursive_doubling"):
        for n in (0, 5, 70000):
            x = data(rank, n, torch.float32)
            ref = x.clone()
            dist.all_reduce(ref, group=g2)
            comm.all_reduce(x, algo=algo, group=g2)
            errs.append(same(x, ref))
    a_in = data(rank, 6 * world, torch.float32)
    ref_a = torch.empty_like(a_in)
    dist.all_to_all_single(ref_a, a_in, group=g2)
    o = torch.empty_like(a_in)
    comm.all_to_all(o, a_in, group=g2)
    errs.append(same(o, ref_a))
    out["exact_framing"] = [e for e in errs if e]
    # DDP with the hook == DDP with gloo's own allreduce
    torch.manual_seed(0)
    base = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4))
    m1, m2 = DDP(base), DDP(__import__("copy").deepcopy(base))
    register(m1)
    g = torch.Generator().manual_seed(rank)
    x, y = torch.randn(32, 8, generator=g), torch.randn(32, 4, generator=g)
    for m in (m1, m2):
        torch.nn.functional.mse_loss(m(x), y).backward()
    diffs = [
        float((a.grad - b.grad).abs().max())
        for a, b in zip(m1.parameters(), m2.parameters(), strict=True)
    ]
    out["ddp_max_grad_diff"] = max(diffs)
    # MoE: experts scale their rows by (e + 1); every rank routes its own tokens
    experts_n, topk = 2 * world, 2
    g = torch.Generator().manual_seed(10 + rank)
    tok = torch.randn(7 + rank, 5, generator=g)
    idx = torch.stack([torch.randperm(experts_n, generator=g)[:topk] for _ in range(tok.shape[0])])
    w = torch.softmax(torch.randn(tok.shape[0], topk, generator=g), -1)
    rows, local, h = dispatch(tok, idx, experts_n)
    ys = rows * (local + rank * (experts_n // world) + 1).unsqueeze(-1).to(rows.dtype)
    got = combine(ys, h, w)
    want = moe_reference(tok, idx, w, lambda e, r: r * (e + 1))
    out["moe_err"] = same(got, want)
    out["moe_rows"] = int(rows.shape[0])
    return out


def fastpath(rank: int, world: int) -> dict[str, Any]:
    """The shared-memory fast path (compiled plans) against the general loop: same bits for
    every allreduce / all-to-all algorithm, dtype and op; used exactly when every message
    fits in one slot."""
    from anyware.comm.transports import shm

    c = comm.communicator(None, transport="shm", timeout_s=30, calibrate=False)
    tr = c.transport
    assert isinstance(tr, shm.ShmTransport)
    calls = {"fast": 0}
    real_run_plan = shm.run_plan

    def counting(*a: Any) -> None:
        calls["fast"] += 1
        real_run_plan(*a)

    shm.run_plan = counting  # type: ignore[assignment]
    real_plan = tr.plan
    fails: list[str] = []
    checks = 0

    def both(fn: Any) -> tuple[torch.Tensor, torch.Tensor, int]:
        before = calls["fast"]
        fast = fn()
        used = calls["fast"] - before
        tr.plan = lambda *a: None  # type: ignore[method-assign]
        try:
            slow = fn()
        finally:
            tr.plan = real_plan  # type: ignore[method-assign]
        return fast, slow, used

    for dtype in (torch.float32, torch.float16, torch.bfloat16, torch.int64, torch.bool):
        for n in (1, 7, 131, 4099):
            for op in ("sum", "max", "prod") if dtype != torch.bool else ("sum", "min"):
                for algo in REGISTRY[Collective.ALLREDUCE]:
                    x = (
                        data(rank, n, dtype)
                        if dtype != torch.bool
                        else data(rank, n, torch.int64) > 0
                    )

                    def ar(x: torch.Tensor = x, algo: str = algo, op: str = op) -> torch.Tensor:
                        t = x.clone()
                        comm.all_reduce(t, op=op, algo=algo)
                        return t

                    fast, slow, used = both(ar)
                    checks += 1
                    what = f"allreduce {algo} {op} {dtype} n={n}"
                    if not torch.equal(fast.view(torch.uint8), slow.view(torch.uint8)):
                        fails.append(f"{what}: fast path differs from the general loop")
                    if used != 1:
                        fails.append(f"{what}: fast path ran {used} times, expected 1")
            a_in = (
                data(rank, n * world, dtype, 2)
                if dtype != torch.bool
                else torch.ones(n * world) > 0
            )
            for algo in REGISTRY[Collective.ALLTOALL]:

                def a2a(a_in: torch.Tensor = a_in, algo: str = algo) -> torch.Tensor:
                    o = torch.empty_like(a_in)
                    comm.all_to_all(o, a_in, algo=algo)
                    return o

                fast, slow, used = both(a2a)
                checks += 1
                if not torch.equal(fast.view(torch.uint8), slow.view(torch.uint8)) or used != 1:
                    fails.append(f"alltoall {algo} {dtype} n={n}: differs or not fast ({used})")
    # a message larger than a slot streams through the general loop
    before = calls["fast"]
    big = data(rank, (shm.SLOT_BYTES // 4) * world + 5, torch.float32)
    comm.all_reduce(big, algo="recursive_doubling")
    if calls["fast"] != before:
        fails.append("a message larger than a slot took the fast path")
    shm.run_plan = real_run_plan  # type: ignore[assignment]
    return {"fails": fails, "checks": checks}


SCENARIOS = {
    "matrix": matrix,
    "errors": errors,
    "die": die,
    "features": features,
    "fastpath": fastpath,
}


def main() -> None:
    scenario, rank, world, port, outdir = sys.argv[1], *map(int, sys.argv[2:5]), Path(sys.argv[5])
    dist.init_process_group(
        "gloo",
        init_method=f"tcp://127.0.0.1:{port}",
        rank=rank,
        world_size=world,
        timeout=datetime.timedelta(seconds=60),
    )
    try:
        result = SCENARIOS[scenario](rank, world)
    except BaseException:
        result = {"error": traceback.format_exc()}
    (outdir / f"result{rank}.json").write_text(json.dumps(result))
    sys.stdout.flush()
    os._exit(0)  # skip teardown: a scenario may have left a peer dead or a recv posted


if __name__ == "__main__":
    main()
