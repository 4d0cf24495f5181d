"""NVIDIA GPUs through torch's CUDA build.

torch's ROCm build also answers to ``torch.cuda``; this backend claims the device only when
``torch.version.hip`` is unset, and the ``rocm`` backend takes the other case.
"""

from __future__ import annotations

from typing import ClassVar

from anyware.runtime.backends._torch_device import TorchDeviceBackend, triton_installed
from anyware.runtime.protocol import Availability, Capability


class CudaBackend(TorchDeviceBackend):
    name: ClassVar[str] = "cuda"
    device_type: ClassVar[str] = "cuda"
    dist_backend: ClassVar[str] = "nccl"
    visible_devices_var: ClassVar[str | None] = "CUDA_VISIBLE_DEVICES"
    priority: ClassVar[int] = 100

    def probe(self) -> Availability:
        import torch

        if getattr(torch.version, "hip", None):
            return Availability(
                available=False, reason="this torch is a ROCm build: see the rocm backend"
            )
        if torch.version.cuda is None:
            return Availability(
                available=False,
                reason=f"this torch build ({torch.__version__}) has no CUDA support",
            )
        # device_count() asks the driver (NVML where it can) without creating a context.
        count = torch.cuda.device_count()
        if count == 0:
            return Availability(
                available=False, reason="torch has CUDA support but no GPU is visible"
            )
        return Availability(available=True, reason=f"{count} device(s), CUDA {torch.version.cuda}")

    def capability(self, index: int = 0) -> Capability:
        import torch

        props = torch.cuda.get_device_properties(index)
        major, minor = props.major, props.minor
        dtypes = {"fp64", "fp32", "fp16"}
        if major >= 8:
            dtypes.add("bf16")
        if (major, minor) >= (8, 9):  # Ada and Hopper have FP8 tensor cores
            dtypes |= {"fp8_e4m3fn", "fp8_e5m2"}
        return Capability(
            name=props.name,
            arch=f"sm_{major}{minor}",
            dtypes=frozenset(dtypes),
            triton=triton_installed() and major >= 7,
            extra={
                "compute_capability": f"{major}.{minor}",
                "multiprocessors": props.multi_processor_count,
            },
        )
