"""CUDA-style script whose children need the shim: multiprocessing spawn, DataLoader workers
(spawn context) and torch.multiprocessing.spawn. Each child moves a tensor to "cuda"."""

import multiprocessing as mp
import sys

import torch
import torch.multiprocessing as tmp


def child(q):
    q.put(str(torch.ones(1).cuda().device) + ":" + str(torch.cuda.is_available()))


def rank_fn(rank, q):
    q.put(f"rank{rank}:" + str(torch.zeros(1, device=f"cuda:{rank}").device))


class Data(torch.utils.data.Dataset):
    def __len__(self):
        return 4

    def __getitem__(self, i):
        return torch.full((1,), float(i), device="cuda") * 0 + int(torch.cuda.is_available())


if __name__ == "__main__":
    ctx = mp.get_context(sys.argv[1] if len(sys.argv) > 1 else "spawn")
    q = ctx.Queue()
    p = ctx.Process(target=child, args=(q,))
    p.start()
    print("process", q.get(timeout=120))
    p.join()
    dl = torch.utils.data.DataLoader(
        Data(), batch_size=2, num_workers=1, multiprocessing_context=ctx
    )
    print("loader", [b.sum().item() for b in dl])
    mq = tmp.get_context("spawn").SimpleQueue()
    tmp.spawn(rank_fn, args=(mq,), nprocs=1, join=True)
    print("mp.spawn", mq.get())
