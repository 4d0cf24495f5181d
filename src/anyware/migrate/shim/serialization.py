"""``torch.load``: CUDA-tagged storages land on the target.

``map_location`` may be missing (a checkpoint saved on ``cuda:0`` fails to load on a machine
without CUDA), a string, a ``torch.device``, a dict of tag → tag, or a callable. Each form is
turned into one callable that maps any ``cuda*`` tag the user's mapping would have produced onto
the target; the dict and callable keep their meaning for non-CUDA tags.
"""

from __future__ import annotations

import functools
from typing import Any

from anyware.migrate.shim._patch import Patcher
from anyware.migrate.shim._state import STATE, Target, record
from anyware.migrate.shim._translate import translate
from anyware.migrate.shim.rules import Rule, RuleKind


def _restore_location(storage: Any, location: str) -> Any:
    import torch

    ser: Any = torch.serialization
    return ser.default_restore_location(storage, location)


def _restore(storage: Any, location: str) -> Any:
    """Put a storage deserialised on the host onto ``location`` (already translated)."""

    if location.startswith("cpu"):
        return storage
    return _restore_location(storage, location)


def _target_location(location: Any) -> tuple[str, bool]:
    new, changed = translate(location)
    return str(new), changed


def map_location_for(map_location: Any, hits: set[str]) -> Any:
    """A callable ``(storage, tag) -> storage`` honouring ``map_location`` on the target;
    what it redirected is added to ``hits`` (recorded once per ``torch.load`` call)."""

    def via_tag(storage: Any, tag: str) -> Any:
        loc, changed = _target_location(tag)
        if changed:
            hits.add("torch.load(cuda storages)")
        return _restore(storage, loc)

    if map_location is None:
        return via_tag
    if isinstance(map_location, dict):
        table = dict(map_location)

        def via_dict(storage: Any, tag: str) -> Any:
            return via_tag(storage, str(table.get(tag, tag)))

        return via_dict
    if callable(map_location):
        user = map_location

        def via_callable(storage: Any, tag: str) -> Any:
            out = user(storage, tag)
            return via_tag(storage, tag) if out is None else out

        return via_callable
    loc, changed = _target_location(map_location)
    if not changed:
        return map_location

    def fixed(storage: Any, tag: str) -> Any:
        hits.add("torch.load(map_location='cuda')")
        return _restore(storage, loc)

    return fixed


def _install_load(p: Patcher, t: Target) -> None:
    import torch

    def make(orig: Any) -> Any:
        @functools.wraps(orig)
        def load(f: Any, map_location: Any = None, *args: Any, **kwargs: Any) -> Any:
            if STATE.target is None:
                return orig(f, map_location, *args, **kwargs)
            hits: set[str] = set()
            out = orig(f, map_location_for(map_location, hits), *args, **kwargs)
            for api in sorted(hits):
                record(api)
            return out

        return load

    p.wrap(torch, "load", make)


def _install_storage_cuda(p: Patcher, t: Target) -> None:
    import torch

    def make(api: str) -> Any:
        def cuda(self: Any, device: Any = None, non_blocking: bool = False) -> Any:
            record(api)
            target = STATE.target
            if target is None or target.host:
                return self
            loc, _ = _target_location("cuda" if device is None else device)
            return _restore_location(self, loc)

        return cuda

    p.set(torch.UntypedStorage, "cuda", make("UntypedStorage.cuda"))
    p.set(torch.storage.TypedStorage, "cuda", make("TypedStorage.cuda"))


RULES: tuple[Rule, ...] = (
    Rule(api="torch.load", kind=RuleKind.SERIALIZATION, install=_install_load,
         doc="map_location missing/str/device/dict/callable: cuda-tagged storages go to the target"),
    Rule(api="torch.UntypedStorage.cuda", kind=RuleKind.SERIALIZATION, install=_install_storage_cuda,
         doc="storage.cuda() in map_location lambdas moves to the target"),
)  # fmt: skip
