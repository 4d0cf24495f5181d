"""The shim's rule table: one entry per CUDA API the shim redirects.

Each family module (``devices``, ``cuda_module``, ``amp``, ``distributed``, ``serialization``,
``flags``) contributes a tuple of :class:`Rule`; installing the shim runs every rule's
``install`` against one :class:`~anyware.migrate.shim._patch.Patcher`, so the whole set comes
off again in one ``undo``. ``tests/migrate/test_shim_rules.py`` holds one test per ``api``
and fails when a rule is added without one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

from anyware.migrate.shim._patch import Patcher
from anyware.migrate.shim._state import Target


class RuleKind(StrEnum):
    """What the redirected API does, for grouping in the report and the docs."""

    DEVICE_QUERY = "device query"
    DEVICE_ARGUMENT = "device argument"
    MEMORY = "memory"
    STREAM = "stream/event"
    RANDOM = "random"
    AMP = "mixed precision"
    DISTRIBUTED = "distributed"
    SERIALIZATION = "serialization"
    LEGACY_TYPE = "legacy tensor type"
    FLAG = "backend flag"
    PROFILING = "profiling"
    GRAPH = "cuda graph"
    EXTENSION = "binary extension"


Installer = Callable[[Patcher, Target], None]


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One redirected API."""

    api: str
    """The CUDA spelling, as the report names it (``torch.cuda.synchronize``)."""
    kind: RuleKind
    """Group for the docs."""
    install: Installer
    """Patches what is needed to redirect ``api`` to the target."""
    doc: str
    """One line: what the shim does instead."""

    def __post_init__(self) -> None:
        if not self.api.startswith(("torch", "Tensor", "Module")):
            raise ValueError(f"rule api {self.api!r} must name a torch API")


def all_rules() -> tuple[Rule, ...]:
    """Every rule, in install order (``torch.device`` first: others build devices)."""
    from anyware.migrate.shim import (
        amp,
        cuda_module,
        devices,
        distributed,
        flags,
        serialization,
    )

    rules = (
        *devices.RULES,
        *cuda_module.RULES,
        *amp.RULES,
        *distributed.RULES,
        *serialization.RULES,
        *flags.RULES,
    )
    apis = [r.api for r in rules]
    dupes = {a for a in apis if apis.count(a) > 1}
    assert not dupes, f"duplicate shim rules: {sorted(dupes)}"
    return rules
