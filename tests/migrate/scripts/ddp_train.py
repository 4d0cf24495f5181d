"""torchrun-style DDP training with nccl and device_ids, as written for GPUs."""

import os

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel as DDP

local_rank = int(os.environ["LOCAL_RANK"])
torch.cuda.set_device(local_rank)
dist.init_process_group(backend="nccl")
model = DDP(torch.nn.Linear(4, 1).cuda(), device_ids=[local_rank])
opt = torch.optim.SGD(model.parameters(), lr=0.1)
for step in range(3):
    x = torch.randn(8, 4, device=f"cuda:{local_rank}")
    loss = model(x).pow(2).mean()
    opt.zero_grad()
    loss.backward()
    opt.step()
    print(f"rank {dist.get_rank()} step {step} loss {loss.item():.4f} backend {dist.get_backend()}")
dist.destroy_process_group()
