"""A DDP communication hook, so unmodified ``DistributedDataParallel`` averages its gradient
buckets with anyware's algorithms and transports::

    from anyware.comm.ddp import register
    model = DistributedDataParallel(model)
    register(model)                      # or model.register_comm_hook(None, allreduce_hook)

Each bucket is averaged with ``all_reduce(..., op="avg", async_op=True)``: the collective runs
on the communicator's worker thread while autograd keeps producing the next buckets, and DDP
waits on the returned future only when backward ends — the overlap NCCL gets from its streams.
"""

# No ``from __future__ import annotations``: DDP inspects the hook's annotations at run time
# and wants the real dist.GradBucket / torch.futures.Future objects, not strings.
from typing import Any

import torch
import torch.distributed as dist


def allreduce_hook(state: Any, bucket: dist.GradBucket) -> torch.futures.Future[torch.Tensor]:  # type: ignore[name-defined]
    """``state`` is the process group (None: the default group)."""
    from anyware.comm import api

    buf = bucket.buffer()
    work = api.all_reduce(buf, op="avg", group=state, async_op=True)
    assert work is not None
    return work.get_future()


def register(model: torch.nn.parallel.DistributedDataParallel, group: Any = None) -> None:
    """Install :func:`allreduce_hook` on ``model``."""
    model.register_comm_hook(group, allreduce_hook)
