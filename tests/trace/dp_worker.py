"""One rank of a data-parallel run for the multi-rank tests (started by test_multirank.py)."""

from __future__ import annotations

import sys
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).parent))
from trace_workloads import build, step_inputs

import anyware.trace as tr


def main() -> None:
    out, bad_rank = Path(sys.argv[1]), int(sys.argv[2])
    dist.init_process_group("gloo")
    rank = dist.get_rank()
    model = build("mlp", "lower_dtype" if rank == bad_rank else None)
    opt = torch.optim.SGD(model.parameters(), lr=0.05)
    with tr.record(out, "op"):
        for step in range(2):
            x, y = step_inputs("mlp", 10 * step + rank, torch.float32)
            loss = F.cross_entropy(model(x), y)
            opt.zero_grad()
            loss.backward()
            for p in model.parameters():
                dist.all_reduce(p.grad)
                p.grad /= dist.get_world_size()
            opt.step()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
