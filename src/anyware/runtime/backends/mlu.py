"""Cambricon MLUs through the ``torch_mlu`` extension (NeuWare)."""

from __future__ import annotations

from typing import ClassVar

from anyware.runtime.backends._torch_device import (
    TorchDeviceBackend,
    package_installed,
    triton_installed,
)
from anyware.runtime.protocol import Availability, Capability


class MluBackend(TorchDeviceBackend):
    name: ClassVar[str] = "mlu"
    device_type: ClassVar[str] = "mlu"
    dist_backend: ClassVar[str] = "cncl"
    visible_devices_var: ClassVar[str | None] = "MLU_VISIBLE_DEVICES"
    priority: ClassVar[int] = 80

    def probe(self) -> Availability:
        if not package_installed("torch_mlu"):
            return Availability(available=False, reason="package torch_mlu is not installed")
        import torch
        import torch_mlu  # noqa: F401  (registers torch.mlu)

        count = torch.mlu.device_count()  # type: ignore[attr-defined]
        if count == 0:
            return Availability(
                available=False, reason="torch_mlu is installed but no MLU is visible"
            )
        return Availability(available=True, reason=f"{count} device(s)")

    def capability(self, index: int = 0) -> Capability:
        import torch

        props = torch.mlu.get_device_properties(index)  # type: ignore[attr-defined]
        major = int(getattr(props, "major", 0))
        dtypes = {"fp32", "fp16"}
        if major >= 5:  # MLU500 series adds bf16
            dtypes.add("bf16")
        return Capability(
            name=str(props.name),
            arch=f"mtp_{major}{getattr(props, 'minor', 0)}",
            dtypes=frozenset(dtypes),
            triton=triton_installed() and package_installed("triton.backends.mlu"),
        )
