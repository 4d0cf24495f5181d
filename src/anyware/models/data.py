"""A corpus the tests and benchmarks fabricate themselves (nothing is downloaded).

The text comes from a small stochastic grammar, so it has structure a model can learn (loss
falls well below the uniform ``log(vocab)``) while staying deterministic for a seed.
"""

from __future__ import annotations

import random
from collections.abc import Iterator

import torch

_SUBJECTS = [
    "the cat",
    "a dog",
    "my friend",
    "the old man",
    "every child",
    "the engineer",
    "a bird",
]
_VERBS = ["sees", "likes", "builds", "finds", "carries", "paints", "follows", "trains"]
_OBJECTS = ["a red ball", "the big house", "two small boxes", "the model", "a long road", "the gpu"]
_TAILS = ["today", "at night", "with care", "again", "in the rain", "very slowly", ""]

#: printable ASCII: every character the grammar can produce maps to an id below 96.
VOCAB_SIZE = 96


def make_text(n_sentences: int, seed: int = 0) -> str:
    rng = random.Random(seed)
    out = []
    for _ in range(n_sentences):
        s = f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)} {rng.choice(_TAILS)}".strip()
        out.append(s + ". ")
    return "".join(out)


def encode(text: str) -> torch.Tensor:
    """Characters → ids in [0, 96): printable ASCII shifted by 32, anything else → 0."""
    return torch.tensor(
        [c - 32 if 32 <= c < 128 else 0 for c in text.encode("ascii", "replace")], dtype=torch.long
    )


def decode(ids: torch.Tensor) -> str:
    return "".join(chr(int(i) + 32) for i in ids.flatten().tolist())


def batches(
    data: torch.Tensor, batch_size: int, seq_len: int, *, seed: int = 0
) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An endless iterator of ``(inputs, targets)`` windows drawn with a seeded generator."""
    if data.numel() <= seq_len + 1:
        raise ValueError(f"corpus of {data.numel()} tokens is too short for seq_len={seq_len}")
    g = torch.Generator().manual_seed(seed)
    offsets = torch.arange(seq_len)
    while True:
        starts = torch.randint(0, data.numel() - seq_len - 1, (batch_size, 1), generator=g)
        yield data[starts + offsets], data[starts + offsets + 1]
