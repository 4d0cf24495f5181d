"""A training script written the way CUDA users write them.

It assumes an NVIDIA GPU: ``.cuda()``, ``torch.cuda.amp``, cuDNN flags, CUDA events for timing,
a checkpoint reloaded onto ``cuda:0``. Run it on whatever device is present with::

    anyware run examples/cuda_train.py --steps 20

or rewrite it into device-agnostic PyTorch with ``anyware migrate fix examples/cuda_train.py``.
"""

import argparse
import os
import tempfile

import torch
import torch.nn.functional as F

from anyware.models.data import VOCAB_SIZE, batches, encode, make_text
from anyware.models.gpt import GPT, GPTConfig


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--batch-size", type=int, default=8)
    args = parser.parse_args()

    if not torch.cuda.is_available():
        raise SystemExit("this script needs a CUDA GPU")
    torch.cuda.manual_seed_all(0)
    torch.manual_seed(0)
    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    print(f"training on {torch.cuda.get_device_name(0)} ({torch.cuda.device_count()} GPU(s))")

    cfg = GPTConfig(vocab_size=VOCAB_SIZE, seq_len=32, d_model=48, n_heads=4, n_layers=2)
    model = GPT(cfg).cuda()
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    scaler = torch.cuda.amp.GradScaler()
    data = batches(encode(make_text(1500)), batch_size=args.batch_size, seq_len=cfg.seq_len)

    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for step in range(args.steps):
        x, y = next(data)
        x, y = x.cuda(non_blocking=True), y.to("cuda:0")
        with torch.cuda.amp.autocast(dtype=torch.float16):
            logits, _ = model(x)
            loss = F.cross_entropy(logits.float().view(-1, VOCAB_SIZE), y.view(-1))
        opt.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(opt)
        scaler.update()
        if step % 5 == 0 or step == args.steps - 1:
            print(f"step {step:3d} loss {loss.item():.3f}")
    end.record()
    torch.cuda.synchronize()
    print(
        f"{args.steps} steps in {start.elapsed_time(end):.0f} ms, "
        f"peak memory {torch.cuda.max_memory_allocated() / 2**20:.0f} MiB"
    )

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "ckpt.pt")
        torch.save(model.state_dict(), path)
        state = torch.load(path, map_location="cuda:0")
        model.load_state_dict(state)
        print(f"checkpoint reloaded: {len(state)} tensors")


if __name__ == "__main__":
    main()
