from __future__ import annotations

import math

import pytest
import torch

from anyware.models.data import VOCAB_SIZE, batches, decode, encode, make_text
from anyware.models.gpt import GPT, GPTConfig


@pytest.mark.parametrize(
    ("kw", "match"),
    [({"n_heads": 3}, "divide"), ({"n_layers": 0}, "positive"), ({"dropout": 1.0}, "dropout")],
)
def test_config_validation(kw: dict[str, object], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        GPTConfig(**kw)  # type: ignore[arg-type]


def test_corpus_is_deterministic_and_round_trips() -> None:
    text = make_text(50, seed=3)
    assert text == make_text(50, seed=3) != make_text(50, seed=4)
    ids = encode(text)
    assert int(ids.max()) < VOCAB_SIZE and decode(ids) == text


def test_training_lowers_the_loss_and_too_long_input_is_rejected() -> None:
    torch.manual_seed(0)
    cfg = GPTConfig(seq_len=32, d_model=32, n_heads=2, n_layers=1)
    model = GPT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    data = batches(encode(make_text(500)), batch_size=8, seq_len=32)
    losses = []
    for _ in range(30):
        x, y = next(data)
        _, loss = model(x, y)
        assert loss is not None
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(loss.item())
    assert abs(losses[0] - math.log(VOCAB_SIZE)) < 0.3  # starts near a uniform guess
    assert losses[-1] < losses[0] - 1.0
    with pytest.raises(ValueError, match="seq_len"):
        model(torch.zeros(1, 33, dtype=torch.long))
