"""What every shim family shares: the target device, the patch ledger and the redirect ledger.

The target is read from :mod:`anyware.runtime` once per install (device type, distributed
backend, dtypes); patches look it up through :data:`STATE` on every call, so ``redirect()``
can swap it and swap it back. The ledger counts each redirected API with the user's
``file:line``, found by walking past our frames and torch's own.
"""

from __future__ import annotations

import os
import sys
import threading
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

#: Top-level packages that see the real ``torch.cuda`` answers: they pick their own device
#: (and would mislead the user's code or call CUDA kernels if told CUDA is present).
TRUTH_PACKAGES: frozenset[str] = frozenset(
    {
        "torch",
        "accelerate",
        "transformers",
        "diffusers",
        "peft",
        "lightning",
        "pytorch_lightning",
        "lightning_fabric",
        "deepspeed",
        "bitsandbytes",
        "xformers",
        "apex",
        "triton",
        "vllm",
        "torchvision",
        "anyware",
    }
)

_SHIM_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
#: Keep at most this many distinct call sites per API: a report, not a trace.
MAX_LOCATIONS = 20


class MigrationError(RuntimeError):
    """Raised under ``--strict`` where the shim cannot honour what the code asks for."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Target:
    """The device the shim sends CUDA work to."""

    name: str
    """anyware backend name (``cpu``, ``fake``, ``npu``, ...)."""
    device_type: str
    """torch device type of its tensors (fake → ``cpu``)."""
    dist_backend: str
    """torch.distributed backend replacing nccl."""
    dtypes: frozenset[str]
    """Capability dtype names (``fp64`` missing → float64 is demoted and reported)."""
    count: int
    """Devices present."""
    device_name: str = ""
    """What ``get_device_name`` answers."""
    memory_total: int | None = None
    """Bytes per device, for ``get_device_properties`` / ``mem_get_info``."""

    def __post_init__(self) -> None:
        if self.count < 0:
            raise ValueError(f"device count must be >= 0, got {self.count}")

    @property
    def host(self) -> bool:
        """Tensors live in host memory: no pinned memory, no streams, cpu autocast."""
        return self.device_type == "cpu"

    def device_module(self) -> Any:
        import torch

        return None if self.host else getattr(torch, self.device_type, None)


def target_from_runtime(name: str | None = None) -> Target:
    """The target for backend ``name`` (``None``: ``runtime.current()``)."""
    from anyware import runtime

    # A named backend (anyware run always names one) resolves without plug-in discovery.
    backend = runtime.select(name) if name is not None else runtime.current()
    cap = backend.capability()
    mem = backend.memory_stats().total
    return Target(
        name=backend.name,
        device_type=backend.device_type,
        dist_backend=backend.dist_backend,
        dtypes=cap.dtypes,
        count=backend.device_count(),
        device_name=cap.name,
        memory_total=mem,
    )


@dataclass(kw_only=True)
class Ledger:
    """Redirect counts and what could not be honoured, with the user's call sites."""

    redirects: dict[str, int] = field(default_factory=dict)
    locations: dict[str, dict[str, None]] = field(default_factory=dict)
    unsupported: dict[str, str] = field(default_factory=dict)
    unsupported_locations: dict[str, dict[str, None]] = field(default_factory=dict)

    def reset(self) -> None:
        self.redirects.clear()
        self.locations.clear()
        self.unsupported.clear()
        self.unsupported_locations.clear()

    def to_json(self, device: str) -> dict[str, Any]:
        return {
            "device": device,
            "redirects": [
                {"api": api, "count": n, "locations": list(self.locations.get(api, {}))}
                for api, n in sorted(self.redirects.items())
            ],
            "unsupported": [
                {
                    "api": api,
                    "reason": reason,
                    "locations": list(self.unsupported_locations.get(api, {})),
                }
                for api, reason in sorted(self.unsupported.items())
            ],
        }


@dataclass(kw_only=True)
class State:
    """The installed shim: target stack (``redirect`` pushes), ledger, strict flag."""

    targets: list[Target] = field(default_factory=list)
    ledger: Ledger = field(default_factory=Ledger)
    strict: bool = False
    #: ``torch.cuda.set_device`` on a host target: remembered so current_device agrees.
    current_index: int = 0
    warned: set[str] = field(default_factory=set)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def target(self) -> Target | None:
        return self.targets[-1] if self.targets else None


STATE = State()


def _torch_dir() -> str:
    mod = sys.modules.get("torch")
    f = getattr(mod, "__file__", None)
    return os.path.dirname(os.path.abspath(f)) if f else "\0"


_skip_dirs: tuple[str, ...] | None = None


def user_location(depth: int = 2) -> str:
    """``file:line`` of the first frame outside the shim and torch (the user's call site)."""
    global _skip_dirs
    if _skip_dirs is None:
        _skip_dirs = (_SHIM_DIR, _torch_dir())
    try:
        frame: FrameType | None = sys._getframe(depth)
    except ValueError:
        return "?"
    for _ in range(40):
        if frame is None:
            break
        fn = frame.f_code.co_filename
        if not fn.startswith(_skip_dirs) and not fn.startswith("<frozen"):
            return f"{fn}:{frame.f_lineno}"
        frame = frame.f_back
    return "?"


def caller_sees_truth(depth: int = 2) -> bool:
    """Whether the caller ``depth`` frames up belongs to a package in :data:`TRUTH_PACKAGES`."""
    try:
        g = sys._getframe(depth).f_globals
    except ValueError:
        return False
    name = g.get("__name__") or ""
    return name.partition(".")[0] in TRUTH_PACKAGES


def record(api: str) -> None:
    """Count one redirect of ``api`` at the user's call site."""
    loc = user_location(3)
    led = STATE.ledger
    with STATE.lock:
        led.redirects[api] = led.redirects.get(api, 0) + 1
        locs = led.locations.setdefault(api, {})
        if len(locs) < MAX_LOCATIONS:
            locs[loc] = None


def unsupported(api: str, reason: str, *, warn: bool = True) -> None:
    """Note what cannot be honoured; under ``--strict`` it is an error at the call site."""
    loc = user_location(3)
    led = STATE.ledger
    with STATE.lock:
        led.unsupported.setdefault(api, reason)
        locs = led.unsupported_locations.setdefault(api, {})
        if len(locs) < MAX_LOCATIONS:
            locs[loc] = None
        first = api not in STATE.warned
        STATE.warned.add(api)
    if STATE.strict:
        raise MigrationError(f"{api} at {loc}: {reason} (anyware run --strict)")
    if warn and first:
        print(f"anyware: warning: {api} at {loc}: {reason}", file=sys.stderr)
