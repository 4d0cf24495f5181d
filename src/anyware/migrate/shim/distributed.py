"""torch.distributed: ``nccl`` → the target's collective library, DDP/FSDP device arguments.

``init_process_group("nccl")`` (also ``"cuda:nccl,cpu:gloo"`` and ``new_group(backend=...)``)
uses the target's ``dist_backend`` (gloo on a host target). DDP's ``device_ids`` /
``output_device`` and FSDP's ``device_id`` name the target device; on a host target DDP must
get ``device_ids=None``, which is what torch requires for cpu modules.
"""

from __future__ import annotations

import functools
from typing import Any

from anyware.migrate import _hooks
from anyware.migrate.shim._patch import Patcher
from anyware.migrate.shim._state import STATE, Target, record
from anyware.migrate.shim._translate import translate
from anyware.migrate.shim.rules import Rule, RuleKind


def translate_backend(backend: Any) -> tuple[Any, bool]:
    target = STATE.target
    if target is None or not isinstance(backend, str) or "nccl" not in backend.lower():
        return backend, False
    if target.device_type == "cuda":
        return backend, False
    if ":" in backend:  # "cuda:nccl,cpu:gloo" → one backend for the target's tensors
        return target.dist_backend, True
    return backend.lower().replace("nccl", target.dist_backend), True


def _wrap_backend_kw(api: str, orig: Any, pos: int) -> Any:
    @functools.wraps(orig)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        target = STATE.target
        if "backend" in kwargs:
            kwargs["backend"], changed = translate_backend(kwargs["backend"])
        elif len(args) > pos:
            new, changed = translate_backend(args[pos])
            args = (*args[:pos], new, *args[pos + 1 :])
        else:
            changed = False
        if changed:
            record(api)
        if "device_id" in kwargs and kwargs["device_id"] is not None and target is not None:
            new, moved = translate(kwargs["device_id"])
            if moved:
                record(f"{api}(device_id=cuda)")
                kwargs["device_id"] = None if target.host else new
        return orig(*args, **kwargs)

    return wrapper


def _install_init(p: Patcher, t: Target) -> None:
    import torch.distributed as dist

    if not dist.is_available():
        return
    c10d = dist.distributed_c10d
    for mod in (dist, c10d):
        p.wrap(
            mod,
            "init_process_group",
            lambda o: _wrap_backend_kw("torch.distributed.init_process_group('nccl')", o, 0),
        )


def _install_new_group(p: Patcher, t: Target) -> None:
    import torch.distributed as dist

    if not dist.is_available():
        return
    for mod in (dist, dist.distributed_c10d):
        p.wrap(
            mod,
            "new_group",
            lambda o: _wrap_backend_kw("torch.distributed.new_group('nccl')", o, 2),
        )


def _device_list(ids: Any, target: Target) -> Any:
    if ids is None:
        return None
    if target.host:
        return None
    return [translate(i)[0] for i in ids]


def _install_ddp(p: Patcher, t: Target) -> None:
    from torch.nn.parallel import DistributedDataParallel as DDP

    def make(orig: Any) -> Any:
        @functools.wraps(orig)
        def __init__(
            self: Any,
            module: Any,
            device_ids: Any = None,
            output_device: Any = None,
            *args: Any,
            **kwargs: Any,
        ) -> None:
            target = STATE.target
            if (
                target is not None
                and target.device_type != "cuda"
                and (device_ids is not None or output_device is not None)
            ):
                record("DistributedDataParallel(device_ids=...)")
                device_ids = _device_list(device_ids, target)
                output_device = (
                    None if target.host or output_device is None else translate(output_device)[0]
                )
            orig(self, module, device_ids, output_device, *args, **kwargs)

        return __init__

    p.wrap(DDP, "__init__", make)


def _install_fsdp(p: Patcher, t: Target) -> None:
    def patch(mod: Any) -> None:
        if STATE.target is None:
            return  # the scoped redirect that asked for this has ended
        cls = getattr(mod, "FullyShardedDataParallel", None)
        if cls is None:
            return

        def make(orig: Any) -> Any:
            @functools.wraps(orig)
            def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
                target = STATE.target
                dev = kwargs.get("device_id")
                if target is not None and dev is not None:
                    new, changed = translate(dev)
                    if changed:
                        record("FullyShardedDataParallel(device_id=...)")
                        kwargs["device_id"] = new
                orig(self, *args, **kwargs)

            return __init__

        p.wrap(cls, "__init__", make)

    _hooks.when_imported("torch.distributed.fsdp", patch)


RULES: tuple[Rule, ...] = (
    Rule(api="torch.distributed.init_process_group", kind=RuleKind.DISTRIBUTED, install=_install_init,
         doc="backend 'nccl' → the target's dist backend (gloo on cpu); device_id= translated"),
    Rule(api="torch.distributed.new_group", kind=RuleKind.DISTRIBUTED, install=_install_new_group,
         doc="new_group(backend='nccl') → the target's dist backend"),
    Rule(api="torch.nn.parallel.DistributedDataParallel", kind=RuleKind.DISTRIBUTED, install=_install_ddp,
         doc="device_ids/output_device → target devices (None on a host target)"),
    Rule(api="torch.distributed.fsdp.FullyShardedDataParallel", kind=RuleKind.DISTRIBUTED,
         install=_install_fsdp, doc="device_id= → the target device (patched when fsdp is imported)"),
)  # fmt: skip
