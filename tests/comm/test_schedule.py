"""Every algorithm's schedules, run in-process by the reference runner at world sizes 1-9
(powers of two and not), against the obvious answer computed directly. Integers make every
comparison exact."""

from __future__ import annotations

import pytest
import torch

from anyware.comm.algorithms import REGISTRY, Args, Collective, get
from anyware.comm.schedule import Buf, Builder, Round, Schedule, Send, Span, bounds, run_local

WORLDS = range(1, 10)
COUNTS = (0, 1, 7, 67)


def _case(
    coll: Collective, p: int, count: int, R: int
) -> tuple[list[Args], list[dict[Buf, torch.Tensor]], list[torch.Tensor]]:
    g = torch.Generator().manual_seed(p * 1000 + count)
    root = p // 2
    if coll is Collective.ALLTOALL:
        c = count % 11
        sc = (c,) * p
        args = [
            Args(rank=r, world=p, send_counts=sc, recv_counts=sc, ranks_per_host=R)
            for r in range(p)
        ]
        ins = [torch.randint(0, 100, (p * c,), generator=g) for _ in range(p)]
        bufs = [{Buf.IN: ins[r], Buf.OUT: torch.full((p * c,), -1)} for r in range(p)]
        exp = [torch.cat([ins[s][r * c : (r + 1) * c] for s in range(p)]) for r in range(p)]
        return args, bufs, exp
    args = [Args(rank=r, world=p, count=count, root=root, ranks_per_host=R) for r in range(p)]
    size = count * p if coll is Collective.REDUCE_SCATTER else count
    ins = [torch.randint(0, 100, (size,), generator=g) for _ in range(p)]
    total = torch.stack(ins).sum(0)
    if coll in (Collective.ALLREDUCE, Collective.BROADCAST, Collective.REDUCE):
        bufs = [{Buf.IN: x.clone()} for x in ins]
        for b in bufs:
            b[Buf.OUT] = b[Buf.IN]
        if coll is Collective.ALLREDUCE:
            exp = [total] * p
        elif coll is Collective.BROADCAST:
            exp = [ins[root]] * p
        else:
            exp = [total if r == root else ins[r] for r in range(p)]
    elif coll is Collective.REDUCE_SCATTER:
        bufs = [{Buf.IN: x.clone(), Buf.OUT: torch.full((count,), -1)} for x in ins]
        exp = [total[r * count : (r + 1) * count] for r in range(p)]
    else:
        bufs = [{Buf.IN: x.clone(), Buf.OUT: torch.full((count * p,), -1)} for x in ins]
        exp = [torch.cat(ins)] * p
    return args, bufs, exp


CASES = [(c, name) for c, table in REGISTRY.items() for name in table]


@pytest.mark.parametrize(("coll", "name"), CASES, ids=[f"{c.value}-{n}" for c, n in CASES])
def test_algorithm_is_correct_at_every_world_size(coll: Collective, name: str) -> None:
    algo = get(coll, name)
    ran = 0
    for p in WORLDS:
        hosts = [d for d in range(1, p + 1) if p % d == 0] if name == "hierarchical" else [0]
        for R in hosts:
            for count in COUNTS:
                args, bufs, exp = _case(coll, p, count, R)
                if algo.unsupported(args[0]):
                    continue
                run_local([algo.build(a) for a in args], bufs)
                for r in range(p):
                    got = bufs[r][Buf.OUT]
                    assert torch.equal(got, exp[r]), f"{name} p={p} R={R} n={count} rank {r}"
                ran += 1
    assert ran >= len(WORLDS) * len(COUNTS)


def test_uneven_alltoall_v() -> None:
    p = 5
    send = [[(r * 3 + j) % 4 for j in range(p)] for r in range(p)]
    recv = [[send[j][r] for j in range(p)] for r in range(p)]
    ins = [torch.arange(sum(send[r])) + 100 * r for r in range(p)]
    bufs = [{Buf.IN: ins[r], Buf.OUT: torch.full((sum(recv[r]),), -1)} for r in range(p)]
    algo = get("alltoall", "pairwise")
    run_local(
        [
            algo.build(
                Args(rank=r, world=p, send_counts=tuple(send[r]), recv_counts=tuple(recv[r]))
            )
            for r in range(p)
        ],
        bufs,
    )
    for r in range(p):
        pieces = []
        for s in range(p):
            off = sum(send[s][:r])
            pieces.append(ins[s][off : off + send[s][r]])
        assert torch.equal(bufs[r][Buf.OUT], torch.cat(pieces))
    assert (
        algo.unsupported(
            Args(rank=0, world=p, send_counts=tuple(send[0]), recv_counts=tuple(recv[0]))
        )
        is None
    )
    assert get("alltoall", "bruck").unsupported(
        Args(rank=0, world=p, send_counts=tuple(send[1]), recv_counts=tuple(recv[1]))
    )


def test_bounds_split_evenly() -> None:
    for count in (0, 1, 7, 13):
        for parts in (1, 2, 3, 8):
            b = bounds(count, parts)
            sizes = [b[i + 1] - b[i] for i in range(parts)]
            assert sum(sizes) == count and max(sizes) - min(sizes) <= 1


def test_round_marks_overlap_as_staged() -> None:
    whole = Span(Buf.OUT, 0, 8)
    b = Builder(0, 2)
    b.send(0, 1, whole)
    b.recv(0, 1, whole, reduce=True)
    b.send(1, 1, Span(Buf.OUT, 0, 4))
    b.recv(1, 1, Span(Buf.OUT, 4, 4), reduce=True)
    s = b.build()
    assert s.rounds[0].staged and not s.rounds[1].staged


def test_schedule_rejects_bad_peer() -> None:
    with pytest.raises(ValueError, match="bad peer"):
        Schedule(rank=0, world=2, rounds=(Round(sends=(Send(0, Span(Buf.OUT, 0, 1)),)),))


def test_unknown_algorithm_suggests() -> None:
    with pytest.raises(ValueError, match="did you mean 'ring'"):
        get("allreduce", "rign")
    assert get("all_reduce", "tree").name == "double_binary_tree"
    with pytest.raises(ValueError, match="did you mean 'allreduce'"):
        get("alreduce", "ring")


def test_runner_catches_unmatched_messages() -> None:
    b0, b1 = Builder(0, 2), Builder(1, 2)
    b0.send(0, 1, Span(Buf.OUT, 0, 2))
    b1.recv(0, 0, Span(Buf.OUT, 0, 3))
    bufs = [{Buf.IN: torch.zeros(4), Buf.OUT: torch.zeros(4)} for _ in range(2)]
    with pytest.raises(AssertionError, match="sent 2, expected 3"):
        run_local([b0.build(), b1.build()], bufs)
