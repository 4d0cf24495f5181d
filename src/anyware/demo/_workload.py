"""The tiny GPT, its optimizer and its data, as the demo sections that train it set them up."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from anyware.models.gpt import GPT, GPTConfig


def tiny_gpt(
    device: torch.device, *, seq_len: int = 32, batch_size: int = 8, sentences: int = 2000
) -> tuple[GPTConfig, GPT, torch.optim.Optimizer, Iterator[tuple[torch.Tensor, torch.Tensor]]]:
    """A seeded tiny GPT on ``device`` with AdamW and an endless batch iterator."""
    import torch

    from anyware.models.data import VOCAB_SIZE, batches, encode, make_text
    from anyware.models.gpt import GPT, GPTConfig

    torch.manual_seed(0)
    cfg = GPTConfig(vocab_size=VOCAB_SIZE, seq_len=seq_len, d_model=64, n_heads=4, n_layers=2)
    model = GPT(cfg).to(device)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    data = batches(encode(make_text(sentences)), batch_size=batch_size, seq_len=seq_len)
    return cfg, model, opt, data


def train_step(
    model: torch.nn.Module, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor
) -> torch.Tensor:
    """One forward, backward and optimizer step of a model that returns ``(logits, loss)``;
    returns the loss."""
    _, loss = model(x, y)
    assert loss is not None
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return loss  # type: ignore[no-any-return]
