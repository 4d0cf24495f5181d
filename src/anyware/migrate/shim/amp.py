"""Mixed precision: ``torch.autocast(device_type="cuda")``, ``torch.amp.*("cuda")``,
``torch.cuda.amp.autocast`` and ``GradScaler``, with a per-target dtype policy.

Autocast on the target uses the requested dtype when the target computes in it and its autocast
supports it; otherwise the policy's fallback (fp16 on a host target → bf16, because cpu fp16
matmuls are emulated and slower than fp32), and the change is reported, never silent. A target
with neither 16-bit type runs with autocast off, reported as not honoured.
"""

from __future__ import annotations

from typing import Any

from anyware.migrate.shim._patch import Patcher
from anyware.migrate.shim._state import STATE, Target, record, unsupported
from anyware.migrate.shim._translate import translate, translate_type
from anyware.migrate.shim.rules import Rule, RuleKind

#: device type → autocast dtypes in order of preference (torch's own autocast support).
AUTOCAST_DTYPES: dict[str, tuple[str, ...]] = {
    "cpu": ("bf16",),
    "xpu": ("bf16", "fp16"),
    "npu": ("fp16", "bf16"),
    "mlu": ("fp16", "bf16"),
    "mps": ("fp16", "bf16"),
}
_NAMES = {"fp16": "float16", "bf16": "bfloat16"}


def policy_dtype(target: Target, requested: Any) -> tuple[Any, bool, str | None]:
    """``(dtype, enabled, note)`` for autocast on ``target`` when ``requested`` was asked."""
    import torch

    by_name = {"fp16": torch.float16, "bf16": torch.bfloat16}
    wanted = {torch.float16: "fp16", torch.bfloat16: "bf16"}.get(requested, "fp16")
    usable = [
        d for d in AUTOCAST_DTYPES.get(target.device_type, ("fp16", "bf16")) if d in target.dtypes
    ]
    if wanted in usable:
        return by_name[wanted], True, None
    if usable:
        alt = usable[0]
        return by_name[alt], True, f"{_NAMES[wanted]} → {_NAMES[alt]}"
    return requested, False, None


def _install_autocast(p: Patcher, t: Target) -> None:
    import torch

    base = torch.amp.autocast_mode.autocast

    class autocast(base):  # type: ignore[misc, valid-type]
        __doc__ = base.__doc__

        def __init__(
            self,
            device_type: str,
            dtype: Any = None,
            enabled: bool = True,
            cache_enabled: bool | None = None,
        ) -> None:
            device_type, changed = translate_type(device_type)
            target = STATE.target
            if changed and target is not None:
                record("torch.autocast(device_type='cuda')")
                new_dtype, ok, note = policy_dtype(
                    target, dtype if dtype is not None else torch.float16
                )
                if note:
                    record(f"torch.autocast dtype {note} on {target.name}")
                if not ok and enabled:
                    unsupported(
                        "torch.autocast",
                        f"device {target.name!r} has no 16-bit autocast type; running in float32",
                    )
                dtype, enabled = new_dtype, enabled and ok
            super().__init__(device_type, dtype=dtype, enabled=enabled, cache_enabled=cache_enabled)

    def cuda_autocast(enabled: bool = True, dtype: Any = None, cache_enabled: bool = True) -> Any:
        import torch as _t

        return autocast(
            "cuda",
            dtype=dtype if dtype is not None else _t.float16,
            enabled=enabled,
            cache_enabled=cache_enabled,
        )

    p.set(torch, "autocast", autocast)
    p.set(torch.amp, "autocast", autocast)
    p.set(torch.cuda.amp, "autocast", cuda_autocast)


def _install_grad_scaler(p: Patcher, t: Target) -> None:
    import torch

    base = torch.amp.GradScaler

    class GradScaler(base):  # type: ignore[misc, valid-type]
        __doc__ = base.__doc__

        def __init__(self, device: str = "cuda", *args: Any, **kwargs: Any) -> None:
            new, changed = translate_type(device)
            if changed:
                record("torch.amp.GradScaler('cuda')")
            super().__init__(new, *args, **kwargs)

    def cuda_scaler(*args: Any, **kwargs: Any) -> Any:
        return GradScaler("cuda", *args, **kwargs)

    p.set(torch.amp, "GradScaler", GradScaler)
    p.set(torch.cuda.amp, "GradScaler", cuda_scaler)
    _ = translate  # device objects are not accepted by GradScaler; names only


RULES: tuple[Rule, ...] = (
    Rule(api="torch.autocast", kind=RuleKind.AMP, install=_install_autocast,
         doc="autocast('cuda') / torch.cuda.amp.autocast on the target, dtype by AUTOCAST_DTYPES"),
    Rule(api="torch.amp.GradScaler", kind=RuleKind.AMP, install=_install_grad_scaler,
         doc="GradScaler('cuda') / torch.cuda.amp.GradScaler() scale on the target"),
)  # fmt: skip
