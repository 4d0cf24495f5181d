"""Kernel tests run in Triton's interpreter: it must be on before Triton decorates a kernel,
i.e. before ``anyware.ops`` is first imported, so it is set here at collection time."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")

import pytest
import torch


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    from anyware.ops._triton import HAS_TRITON, INTERPRETED

    if HAS_TRITON and not INTERPRETED:
        raise pytest.UsageError(
            "anyware.ops was imported before tests/ops/conftest.py set TRITON_INTERPRET=1; "
            "run with TRITON_INTERPRET=1 in the environment"
        )
