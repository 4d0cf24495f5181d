"""PyTorch-GAN cluster_gan's failure, reduced: an optimizer step on the generator between the
forward pass and a backward pass through it. torch >= 1.5 refuses it ("modified by an inplace
operation") on every device; the shim must neither cause nor hide it, so the CUDA-spelled run
under the shim fails with exactly the message of the plain cpu run without it."""

from __future__ import annotations

from typing import Any

import pytest
import torch

INPLACE = "modified by an inplace operation"


def _cluster_gan_step(device: Any, tensor_type: Any) -> None:
    """The script's order: G+E step on ge_loss, then d_loss.backward() through the same
    D(G(z)) graph (cluster_gan lines 425-474), with its legacy typed-tensor spelling."""
    torch.manual_seed(0)
    gen = torch.nn.Sequential(
        torch.nn.Linear(4, 8), torch.nn.Unflatten(1, (1, 8)), torch.nn.ConvTranspose1d(1, 1, 3)
    )
    disc = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(10, 1), torch.nn.Sigmoid())
    gen, disc = gen.to(device), disc.to(device)
    opt_g = torch.optim.Adam(gen.parameters())
    bce = torch.nn.BCELoss()
    z = tensor_type(2, 4).normal_()
    d_gen = disc(gen(z))
    valid = tensor_type(2, 1).fill_(1.0)
    bce(d_gen, valid).backward(retain_graph=True)
    opt_g.step()  # updates the ConvTranspose1d weight in place (version + 1)
    bce(d_gen, tensor_type(2, 1).fill_(0.0)).backward()


def test_plain_cpu_torch_fails_without_any_shim() -> None:
    with pytest.raises(RuntimeError, match=INPLACE) as plain:
        _cluster_gan_step("cpu", torch.FloatTensor)
    assert "[torch.FloatTensor [1, 1, 3]] is at version 2; expected version 1" in str(plain.value)


def test_the_shim_reproduces_the_same_error(cpu_shim: Any) -> None:
    with pytest.raises(RuntimeError, match=INPLACE) as shimmed:
        _cluster_gan_step("cuda", torch.cuda.FloatTensor)
    assert "[torch.FloatTensor [1, 1, 3]] is at version 2; expected version 1" in str(shimmed.value)
