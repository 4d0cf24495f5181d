"""The algorithm registry: ``(collective, name) -> Algorithm``.

An :class:`Algorithm` pairs a schedule builder (plain data, see :mod:`anyware.comm.schedule`)
with its closed-form α-β cost, which both the selector and the simulator use. Importing this
package registers every in-tree algorithm.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

from anyware.comm.schedule import Schedule


class Collective(StrEnum):
    ALLREDUCE = "allreduce"
    REDUCE_SCATTER = "reduce_scatter"
    ALLGATHER = "allgather"
    BROADCAST = "broadcast"
    REDUCE = "reduce"
    ALLTOALL = "alltoall"


@dataclass(frozen=True, slots=True, kw_only=True)
class Args:
    """Everything a builder needs; counts are elements, never bytes."""

    rank: int
    world: int
    count: int = 0
    """allreduce/broadcast/reduce: the tensor; reduce_scatter: the output block; allgather:
    the input block; alltoall: unused (see the split counts)."""
    root: int = 0
    itemsize: int = 4
    """Bytes per element (pipelined algorithms size their chunks in bytes)."""
    ranks_per_host: int = 0
    """Ranks per host for hierarchical algorithms (0: all ranks on one host)."""
    send_counts: tuple[int, ...] = ()
    """alltoall: elements this rank sends to each rank (input splits)."""
    recv_counts: tuple[int, ...] = ()
    """alltoall: elements this rank receives from each rank (output splits)."""

    def __post_init__(self) -> None:
        if self.world < 1 or not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} is not in a world of {self.world}")
        if not 0 <= self.root < self.world:
            raise ValueError(f"root {self.root} is not in a world of {self.world}")
        if self.count < 0:
            raise ValueError(f"count must be >= 0, got {self.count}")

    @property
    def local(self) -> int:
        return self.ranks_per_host or self.world


@dataclass(frozen=True, slots=True, kw_only=True)
class Links:
    """α-β parameters (seconds, seconds per byte) within a host and across hosts."""

    alpha_intra: float
    beta_intra: float
    alpha_inter: float = 0.0
    beta_inter: float = 0.0
    ranks_per_host: int = 0
    """0: every rank on one host (only the intra parameters matter)."""
    gamma: float = 0.0
    """Seconds per byte of a local copy (staging, packing): on CPU transports local memory
    traffic costs as much as the transfer itself, so algorithms that repack data pay it."""

    def flat(self, world: int) -> tuple[float, float]:
        """The (α, β) a flat algorithm sees: the slowest link it crosses."""
        if self.ranks_per_host and self.ranks_per_host < world:
            return max(self.alpha_intra, self.alpha_inter), max(self.beta_intra, self.beta_inter)
        return self.alpha_intra, self.beta_intra


Cost = Callable[[int, float, Links], float]
"""(world, bytes, links) -> seconds."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Algorithm:
    collective: Collective
    name: str
    build: Callable[[Args], Schedule]
    cost: Cost
    doc: str
    unsupported: Callable[[Args], str | None] = field(default=lambda a: None)
    """A reason this algorithm cannot run these arguments, or None."""


REGISTRY: dict[Collective, dict[str, Algorithm]] = {c: {} for c in Collective}
ALIASES: dict[str, str] = {
    "tree": "double_binary_tree",
    "dbt": "double_binary_tree",
    "hd": "halving_doubling",
    "rd": "recursive_doubling",
    "hier": "hierarchical",
}


def register(algo: Algorithm) -> Algorithm:
    table = REGISTRY[algo.collective]
    if algo.name in table:
        raise ValueError(f"{algo.collective}: algorithm {algo.name!r} is registered twice")
    table[algo.name] = algo
    return algo


def parse_collective(name: str) -> Collective:
    key = name.strip().lower().replace("-", "_").replace("all_reduce", "allreduce")
    key = key.replace("all_gather", "allgather").replace("all_to_all", "alltoall")
    try:
        return Collective(key)
    except ValueError:
        close = difflib.get_close_matches(key, [c.value for c in Collective], n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ValueError(
            f"unknown collective {name!r}{hint}; known: {', '.join(c.value for c in Collective)}"
        ) from None


def get(collective: Collective | str, name: str) -> Algorithm:
    coll = parse_collective(collective) if isinstance(collective, str) else collective
    table = REGISTRY[coll]
    key = ALIASES.get(name.strip().lower(), name.strip().lower())
    if key in table:
        return table[key]
    close = difflib.get_close_matches(key, list(table) + list(ALIASES), n=1)
    hint = f" (did you mean {close[0]!r}?)" if close else ""
    raise ValueError(
        f"unknown {coll.value} algorithm {name!r}{hint}; registered: {', '.join(sorted(table))}"
    )


def names(collective: Collective) -> list[str]:
    return list(REGISTRY[collective])


def _load() -> None:
    from anyware.comm.algorithms import (  # noqa: F401  (registration side effects)
        alltoall,
        halving_doubling,
        hierarchical,
        recursive_doubling,
        ring,
        tree,
    )


_load()
