"""Small fake training jobs with one injected fault each, for the tests, the benchmarks and the
demo. Sleeps stand in for compute so a scenario's timing is the same on any machine, and the
model is tiny so two ranks start in a couple of seconds on a cpu.

One rank: ``python -m anyware.monitor.scenarios --scenario straggler --rank 1 --world 2
--port 29512 --steps 60 --onset 20``. A world: :func:`run_world`, which starts every rank, waits
for them (or for a condition), and cleans up. The fault starts at step ``onset`` on rank 1
(``FAULT_RANK``) and the rank writes the wall time of that moment to ``fault-rank1.json``, so
detection latency is ``alert.t_firing - fault time``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from enum import StrEnum
from pathlib import Path
from typing import Any


class Scenario(StrEnum):
    CLEAN = "clean"
    STRAGGLER = "straggler"
    DATALOADER = "dataloader"
    SLOW_COLLECTIVE = "slow_collective"
    NAN = "nan"
    LOSS_SPIKE = "loss_spike"
    HANG = "hang"
    RANK_EXIT = "rank_exit"
    MEMORY_LEAK = "memory_leak"


FAULT_RANK = 1
#: Stand-in compute per step: long enough that scheduler jitter (~1 ms) is small against it.
COMPUTE_S = 0.02
#: A compute straggler is 2× slower (the issue's target is ≥ 1.5×).
STRAGGLER_FACTOR = 2.0
DATA_DELAY_S = 0.025
SLOW_COLLECTIVE_S = 0.15
LEAK_BYTES = 4 * 2**20


def _worker(a: argparse.Namespace) -> int:
    import torch
    import torch.distributed as dist
    from torch import nn

    scenario = Scenario(a.scenario)
    rank = a.rank
    faulty = rank == FAULT_RANK
    os.environ.update(RANK=str(rank), WORLD_SIZE=str(a.world))
    torch.manual_seed(0)
    state = {"fault": False}
    fault_file = Path(a.events) / f"fault-rank{rank}.json" if a.events else None

    class Work(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.lin = nn.Linear(32, 32)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            delay = COMPUTE_S
            if state["fault"] and scenario is Scenario.STRAGGLER and faulty:
                delay *= STRAGGLER_FACTOR
            if state["fault"] and scenario is Scenario.HANG and faulty:
                time.sleep(3600)  # the hung rank: the test kills it
            time.sleep(delay)
            return self.lin(x)

    def data() -> Iterator[torch.Tensor]:
        g = torch.Generator().manual_seed(rank)
        while True:
            if state["fault"] and scenario is Scenario.DATALOADER and faulty:
                time.sleep(DATA_DELAY_S)
            yield torch.randn(8, 32, generator=g)

    if scenario is Scenario.SLOW_COLLECTIVE:
        real = dist.all_reduce

        def slow_all_reduce(*args: Any, **kwargs: Any) -> Any:
            out = real(*args, **kwargs)
            if state["fault"]:
                time.sleep(SLOW_COLLECTIVE_S)  # a degraded link: every rank waits the same
            return out

        dist.all_reduce = slow_all_reduce  # before attach, so the monitor times the slow one

    from datetime import timedelta

    dist.init_process_group("gloo", init_method=f"tcp://127.0.0.1:{a.port}", rank=rank, world_size=a.world,
                            timeout=timedelta(seconds=120))  # fmt: skip
    model: nn.Module = Work()
    if a.ddp:
        from torch.nn.parallel import DistributedDataParallel

        model = DistributedDataParallel(model)  # gradients reduced by DDP's comm hook
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    from anyware import monitor

    mon = monitor.attach(model, opt) if not a.autostart else None
    if a.autostart:
        from anyware import _autostart

        _autostart.start_features()
    leak: list[torch.Tensor] = []
    batches = data()
    for step in range(a.steps):
        if step == a.onset and scenario is not Scenario.CLEAN:
            state["fault"] = True
            if fault_file is not None and faulty:
                fault_file.write_text(json.dumps({"t": time.time(), "step": step}))
            if scenario is Scenario.RANK_EXIT and faulty:
                os._exit(1)
        x = next(batches)
        loss = model(x).pow(2).mean()
        if state["fault"] and scenario is Scenario.NAN and faulty:
            loss = loss * float("nan")
        if state["fault"] and scenario is Scenario.LOSS_SPIKE and step < a.onset + 6:
            loss = loss + 19 * loss.detach()  # the value jumps 20×, the gradient does not
        opt.zero_grad()
        loss.backward()
        if not a.ddp:
            flat = torch.cat([p.grad.flatten() for p in model.parameters() if p.grad is not None])
            dist.all_reduce(flat)
        opt.step()
        if state["fault"] and scenario is Scenario.MEMORY_LEAK and faulty:
            leak.append(torch.ones(LEAK_BYTES // 4))
    dist.barrier()
    if mon is not None:
        mon.close()
    dist.destroy_process_group()
    return 0


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_world(
    scenario: Scenario | str,
    *,
    addr: str | None,
    events: Path | None,
    steps: int = 60,
    onset: int = 20,
    world: int = 2,
    timeout: float = 60.0,
    until: Callable[[], bool] | None = None,
    autostart: bool = False,
    env: dict[str, str] | None = None,
    linger: float = 0.0,
    ddp: bool = False,
) -> list[int | None]:
    """Run every rank of a scenario; return their exit codes (``None``: killed at the end).

    Stops early (killing the ranks) once ``until()`` is true; after every rank has exited it
    keeps polling ``until`` for ``linger`` seconds (a dead rank is only declared after its
    heartbeat timeout); ``timeout`` bounds the whole run.
    """
    port = free_port()
    base = {**os.environ, **(env or {}), "PYTHONUNBUFFERED": "1", "OMP_NUM_THREADS": "1"}
    for var in ("ANYWARE_MONITOR_ADDR", "ANYWARE_MONITOR_EVENTS"):
        base.pop(var, None)
    if addr:
        base["ANYWARE_MONITOR_ADDR"] = addr
    if events:
        base["ANYWARE_MONITOR_EVENTS"] = str(events)
        events.mkdir(parents=True, exist_ok=True)
    procs = []
    for rank in range(world):
        cmd = [sys.executable, "-m", "anyware.monitor.scenarios", "--scenario", str(scenario), "--rank", str(rank),
               "--world", str(world), "--port", str(port), "--steps", str(steps), "--onset", str(onset)]  # fmt: skip
        if events:
            cmd += ["--events", str(events)]
        if autostart:
            cmd.append("--autostart")
        if ddp:
            cmd.append("--ddp")
        log = open(events / f"worker-rank{rank}.log", "wb") if events else None  # noqa: SIM115
        procs.append(
            subprocess.Popen(cmd, env=base, stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        )
        if log is not None:
            log.close()  # the child holds its own descriptor
    deadline = time.monotonic() + timeout
    try:
        ended: float | None = None
        while time.monotonic() < deadline:
            if until is not None and until():
                break
            if all(p.poll() is not None for p in procs):
                ended = time.monotonic() if ended is None else ended
                if until is None or time.monotonic() - ended >= linger:
                    break
            time.sleep(0.05)
    finally:
        codes: list[int | None] = []
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(10)
                codes.append(None)
            else:
                codes.append(p.returncode)
    return codes


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m anyware.monitor.scenarios")
    p.add_argument("--scenario", choices=[s.value for s in Scenario], required=True)
    p.add_argument("--rank", type=int, required=True)
    p.add_argument("--world", type=int, default=2)
    p.add_argument("--port", type=int, required=True)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--onset", type=int, default=20)
    p.add_argument("--events")
    p.add_argument("--autostart", action="store_true")
    p.add_argument("--ddp", action="store_true")
    return _worker(p.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
