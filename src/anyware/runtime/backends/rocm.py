"""AMD GPUs through torch's ROCm (HIP) build, which reuses the ``cuda`` device type."""

from __future__ import annotations

from typing import ClassVar

from anyware.runtime.backends._torch_device import TorchDeviceBackend, triton_installed
from anyware.runtime.protocol import Availability, Capability

# gfx942 (MI300) computes in the "fnuz" FP8 variants; gfx950 (MI350) in the OCP ones.
_FP8_BY_ARCH = {
    "gfx942": {"fp8_e4m3fnuz", "fp8_e5m2fnuz"},
    "gfx950": {"fp8_e4m3fn", "fp8_e5m2"},
}


class RocmBackend(TorchDeviceBackend):
    name: ClassVar[str] = "rocm"
    device_type: ClassVar[str] = "cuda"
    dist_backend: ClassVar[str] = "nccl"  # RCCL answers to the nccl name in torch.distributed
    visible_devices_var: ClassVar[str | None] = "HIP_VISIBLE_DEVICES"
    priority: ClassVar[int] = 100

    def probe(self) -> Availability:
        import torch

        hip = getattr(torch.version, "hip", None)
        if not hip:
            return Availability(
                available=False,
                reason=f"this torch build ({torch.__version__}) is not a ROCm build",
            )
        count = torch.cuda.device_count()
        if count == 0:
            return Availability(
                available=False, reason="torch has ROCm support but no GPU is visible"
            )
        return Availability(available=True, reason=f"{count} device(s), HIP {hip}")

    def capability(self, index: int = 0) -> Capability:
        import torch

        props = torch.cuda.get_device_properties(index)
        arch = str(getattr(props, "gcnArchName", "gfx")).split(":")[0]
        dtypes = {"fp64", "fp32", "fp16", "bf16"} | _FP8_BY_ARCH.get(arch, set())
        return Capability(
            name=props.name,
            arch=arch,
            dtypes=frozenset(dtypes),
            triton=triton_installed(),
            extra={"multiprocessors": props.multi_processor_count},
        )
