"""Intel GPUs through torch's built-in XPU support (torch >= 2.4)."""

from __future__ import annotations

from typing import ClassVar

from anyware.runtime.backends._torch_device import TorchDeviceBackend, triton_installed
from anyware.runtime.protocol import Availability, Capability


class XpuBackend(TorchDeviceBackend):
    name: ClassVar[str] = "xpu"
    device_type: ClassVar[str] = "xpu"
    dist_backend: ClassVar[str] = "xccl"
    visible_devices_var: ClassVar[str | None] = "ZE_AFFINITY_MASK"
    priority: ClassVar[int] = 90

    def probe(self) -> Availability:
        import torch

        xpu = getattr(torch, "xpu", None)
        if xpu is None or not getattr(torch._C, "_has_xpu", False):
            return Availability(
                available=False, reason=f"this torch build ({torch.__version__}) has no XPU support"
            )
        count = xpu.device_count()
        if count == 0:
            return Availability(
                available=False, reason="torch has XPU support but no Intel GPU is visible"
            )
        return Availability(available=True, reason=f"{count} device(s)")

    def capability(self, index: int = 0) -> Capability:
        import torch

        props = torch.xpu.get_device_properties(index)
        dtypes = {"fp32", "fp16", "bf16"}
        if getattr(props, "has_fp64", True):
            dtypes.add("fp64")
        return Capability(
            name=props.name,
            arch=str(getattr(props, "architecture", "xpu")),
            dtypes=frozenset(dtypes),
            triton=triton_installed(),
            extra={"driver": str(getattr(props, "driver_version", ""))},
        )
