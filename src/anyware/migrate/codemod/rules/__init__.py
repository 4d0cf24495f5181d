"""The codemod rules, one per file, in the order the engine applies them.

Converting rules (MIG001–MIG010) run on each call in turn; MIG011 runs last on the result to
report what remains CUDA-specific. Hazard rules (MIG020+) only report.
"""

from __future__ import annotations

import difflib

from anyware.migrate.codemod.rules._base import CodemodRule, Context, Finding
from anyware.migrate.codemod.rules.mig001_cuda_method import CudaMethod
from anyware.migrate.codemod.rules.mig002_device_argument import DeviceArgument
from anyware.migrate.codemod.rules.mig003_torch_device import TorchDevice
from anyware.migrate.codemod.rules.mig004_cuda_runtime import CudaRuntime
from anyware.migrate.codemod.rules.mig005_autocast import Autocast
from anyware.migrate.codemod.rules.mig006_grad_scaler import GradScaler
from anyware.migrate.codemod.rules.mig007_nccl import Nccl
from anyware.migrate.codemod.rules.mig008_legacy_types import LegacyTypes
from anyware.migrate.codemod.rules.mig009_torch_load import TorchLoad
from anyware.migrate.codemod.rules.mig010_ddp_device_ids import DdpDeviceIds
from anyware.migrate.codemod.rules.mig011_cuda_leftover import CudaLeftover
from anyware.migrate.codemod.rules.mig020_cuda_string_test import CudaStringTest
from anyware.migrate.codemod.rules.mig021_rank_modulo import RankModulo
from anyware.migrate.codemod.rules.mig022_device_allowlist import DeviceAllowList
from anyware.migrate.codemod.rules.mig023_binary_kernels import BinaryKernels

__all__ = ["RULES", "CodemodRule", "Context", "Finding", "get_rule"]

RULES: tuple[CodemodRule, ...] = (
    CudaMethod(),
    DeviceArgument(),
    TorchDevice(),
    CudaRuntime(),
    Autocast(),
    GradScaler(),
    Nccl(),
    LegacyTypes(),
    TorchLoad(),
    DdpDeviceIds(),
    CudaLeftover(),
    CudaStringTest(),
    RankModulo(),
    DeviceAllowList(),
    BinaryKernels(),
)
_BY_CODE = {r.code: r for r in RULES}
assert len(_BY_CODE) == len(RULES), "duplicate codemod rule codes"


def get_rule(code: str) -> CodemodRule:
    try:
        return _BY_CODE[code.upper()]
    except KeyError:
        close = difflib.get_close_matches(code.upper(), list(_BY_CODE), n=1)
        hint = f"; did you mean {close[0]}?" if close else ""
        raise KeyError(
            f"unknown codemod rule {code!r}: known {', '.join(_BY_CODE)}{hint}"
        ) from None
