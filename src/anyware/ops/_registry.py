"""The operator registry: which implementations each op has, and which one a call runs.

Every op file registers one :class:`OpSpec`. A call picks its implementation in this order:

1. the explicit ``impl=`` argument (``"reference"`` or ``"triton"``);
2. ``ANYWARE_OPS_IMPL``;
3. the backend's default: Triton where the backend compiles it (cuda, rocm, xpu, ... and a
   ``fake`` device configured with ``triton: true``), the reference on ``cpu`` (Triton's
   interpreter is a correctness tool, ~1000× slower than aten);
4. the reference.

A Triton kernel that cannot run these inputs (no Triton, tensors on a device Triton does not
target here, a dtype or shape the kernel does not handle) is skipped when it was chosen
automatically, with one log line per op and reason, and is an error when it was asked for
explicitly: a user who names an implementation wants that one or to hear why not.
"""

from __future__ import annotations

import difflib
import logging
import threading
from collections import Counter
from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, Any

from anyware import _env
from anyware.ops._triton import HAS_TRITON, interpreted

if TYPE_CHECKING:
    import torch

log = logging.getLogger("anyware.ops")


class Impl(StrEnum):
    """An implementation of an op."""

    REFERENCE = "reference"
    """Pure PyTorch: the specification, runs on every device."""
    TRITON = "triton"
    """The Triton kernel."""


class ImplUnavailableError(ValueError):
    """An explicitly requested implementation cannot run these inputs here."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OpSpec:
    """One op: its name, what it computes and which implementations it has."""

    name: str
    """Public name, also the function's name in :mod:`anyware.ops`."""
    summary: str
    """One line for ``anyware ops list``."""
    impls: tuple[Impl, ...] = (Impl.REFERENCE, Impl.TRITON)
    """Implementations, the reference first."""
    backward: str = "triton"
    """How the Triton path differentiates: ``triton``, ``torch`` (aten ops), or ``none``."""

    def __post_init__(self) -> None:
        if not self.name.isidentifier():
            raise ValueError(f"OpSpec.name must be an identifier, got {self.name!r}")
        if not self.impls or self.impls[0] is not Impl.REFERENCE:
            raise ValueError(f"OpSpec {self.name!r}: impls must start with the reference")
        if self.backward not in {"triton", "torch", "none"}:
            raise ValueError(f"OpSpec {self.name!r}: backward must be triton, torch or none")


@dataclass(frozen=True, slots=True, kw_only=True)
class Choice:
    """The implementation a call (or ``ops list``) resolves to, and why."""

    impl: Impl
    reason: str


_OPS: dict[str, OpSpec] = {}
_lock = threading.Lock()
_logged: set[tuple[str, str]] = set()
#: (op, impl) → number of calls, for ``ops.use()`` reports and the demo.
CALLS: Counter[tuple[str, str]] = Counter()


def register_op(spec: OpSpec) -> OpSpec:
    """Add ``spec`` to the registry (once per name)."""
    with _lock:
        if spec.name in _OPS and _OPS[spec.name] != spec:
            raise ValueError(f"op {spec.name!r} is already registered")
        _OPS[spec.name] = spec
    return spec


def op_names() -> list[str]:
    return sorted(_OPS)


def get_op(name: str) -> OpSpec:
    """The registered op called ``name``; a miss lists the ops and suggests the closest."""
    try:
        return _OPS[name]
    except KeyError:
        close = difflib.get_close_matches(name, _OPS, n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise KeyError(f"no op named {name!r}.{hint} Registered: {', '.join(op_names())}") from None


def parse_impl(value: str, *, source: str) -> Impl:
    """``value`` as an :class:`Impl`, or a ValueError that names ``source`` and the choices."""
    try:
        return Impl(value.strip().lower())
    except ValueError:
        close = difflib.get_close_matches(value.lower(), [i.value for i in Impl], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(
            f"{source}={value!r} is not an implementation; use one of "
            f"{', '.join(i.value for i in Impl)}.{hint}"
        ) from None


def triton_blocker(device: torch.device | None = None) -> str | None:
    """Why Triton cannot run on ``device`` (the backend's device when ``None``), or ``None``."""
    from anyware import runtime

    if not HAS_TRITON:
        return "triton is not installed (pip install 'anyware[triton]')"
    backend = runtime.current()
    dev_type = device.type if device is not None else backend.device_type
    if dev_type == "cpu":
        if interpreted():
            return None
        return "cpu tensors need Triton's interpreter (TRITON_INTERPRET=1 before import)"
    if dev_type != backend.device_type:
        return f"tensors are on {dev_type} but the backend is {backend.name}"
    if not backend.triton_supported():
        return f"triton cannot target the {backend.name} backend here"
    return None


def _default(spec: OpSpec) -> Choice:
    from anyware import runtime

    backend = runtime.current()
    if Impl.TRITON in spec.impls and backend.name != "cpu" and backend.triton_supported():
        return Choice(impl=Impl.TRITON, reason=f"default on {backend.name}: triton targets it")
    if backend.name == "cpu":
        return Choice(
            impl=Impl.REFERENCE,
            reason="cpu default (Triton's interpreter: correctness only)",
        )
    return Choice(impl=Impl.REFERENCE, reason=f"default on {backend.name}: no triton there")


def choose(name: str, impl: str | Impl | None = None) -> Choice:
    """The implementation ``name`` would take before looking at any tensor."""
    spec = get_op(name)
    if impl is not None:
        chosen = impl if isinstance(impl, Impl) else parse_impl(impl, source="impl")
        choice = Choice(impl=chosen, reason="requested with impl=")
    elif (env := _env.OPS_IMPL.get()) is not None:
        chosen = parse_impl(env, source="ANYWARE_OPS_IMPL")
        choice = Choice(impl=chosen, reason="ANYWARE_OPS_IMPL")
    else:
        choice = _default(spec)
    if choice.impl not in spec.impls:
        raise ValueError(f"op {name!r} has no {choice.impl.value} implementation")
    return choice


def resolve(
    name: str,
    impl: str | Impl | None,
    device: torch.device,
    *,
    unsupported: str | None = None,
    count: bool = True,
) -> Impl:
    """The implementation a call runs. ``unsupported`` is the op's own reason its kernel cannot
    take these inputs (dtype, shape), checked after the device."""
    choice = choose(name, impl)
    if choice.impl is Impl.TRITON:
        blocker = triton_blocker(device) or unsupported
        if blocker is not None:
            if impl is not None:
                raise ImplUnavailableError(f"{name}: impl='triton' cannot run here: {blocker}")
            key = (name, blocker)
            if key not in _logged:
                _logged.add(key)
                log.warning("%s: falling back to the reference: %s", name, blocker)
            choice = Choice(impl=Impl.REFERENCE, reason=f"fallback: {blocker}")
    if count:
        CALLS[(name, choice.impl.value)] += 1
    return choice.impl


def interpreter_dtype_blocker(dtype: torch.dtype, device: torch.device) -> str | None:
    """bf16 arithmetic is wrong in Triton's interpreter (numpy has no bfloat16), so bf16 on
    cpu tensors is the reference's job; the kernels' bf16 path is checked on a GPU."""
    import torch

    if device.type == "cpu" and dtype == torch.bfloat16:
        return "bf16 is not computed correctly by Triton's interpreter"
    return None


def describe() -> list[dict[str, Any]]:
    """What ``anyware ops list --json`` prints: every op, its impls, and the active one."""
    rows = []
    for name in op_names():
        spec = _OPS[name]
        choice = choose(name)
        reason = choice.reason
        if choice.impl is Impl.TRITON and (blocker := triton_blocker()) is not None:
            choice = Choice(impl=Impl.REFERENCE, reason=f"fallback: {blocker}")
            reason = choice.reason
        rows.append(
            {
                "name": name,
                "impls": [i.value for i in spec.impls],
                "active": choice.impl.value,
                "reason": reason,
                "summary": spec.summary,
                "backward": spec.backward,
            }
        )
    return rows
