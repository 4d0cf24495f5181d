"""Huawei Ascend NPUs through the ``torch_npu`` extension (CANN)."""

from __future__ import annotations

from typing import ClassVar

from anyware.runtime.backends._torch_device import (
    TorchDeviceBackend,
    package_installed,
    triton_installed,
)
from anyware.runtime.protocol import Availability, Capability


class NpuBackend(TorchDeviceBackend):
    name: ClassVar[str] = "npu"
    device_type: ClassVar[str] = "npu"
    dist_backend: ClassVar[str] = "hccl"
    visible_devices_var: ClassVar[str | None] = "ASCEND_RT_VISIBLE_DEVICES"
    priority: ClassVar[int] = 80

    def probe(self) -> Availability:
        if not package_installed("torch_npu"):
            return Availability(available=False, reason="package torch_npu is not installed")
        import torch
        import torch_npu  # noqa: F401  (registers torch.npu)

        count = torch.npu.device_count()  # type: ignore[attr-defined]
        if count == 0:
            return Availability(
                available=False, reason="torch_npu is installed but no NPU is visible"
            )
        return Availability(available=True, reason=f"{count} device(s)")

    def capability(self, index: int = 0) -> Capability:
        import torch

        name = str(torch.npu.get_device_name(index))  # type: ignore[attr-defined]
        # Ascend 910B computes fp16/bf16 in its cube units; fp64 runs on the vector units only.
        return Capability(
            name=name,
            arch=name.split()[-1] if name else "ascend",
            dtypes=frozenset({"fp32", "fp16", "bf16"}),
            # triton-ascend ships its own "triton" package; the plain one cannot target NPUs.
            triton=triton_installed() and package_installed("triton.backends.ascend"),
        )
