"""Kernel tests run in Triton's interpreter: it must be on before the first kernel is launched
(anyware.ops decorates kernels lazily, so an earlier import of the package is fine)."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from anyware.ops import _triton

    if _triton.HAS_TRITON and not _triton.interpreted():
        raise pytest.UsageError(
            "a Triton kernel ran before tests/ops/conftest.py set TRITON_INTERPRET=1; "
            "run with TRITON_INTERPRET=1 in the environment"
        )
