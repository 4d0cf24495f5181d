"""The simulated machine: ``ranks`` processes, ``ranks_per_host`` per host (contiguous, as
launchers place them), every rank with its own full-duplex link of each class:

* intra-host (NVLink, shared memory): latency ``intra_latency``, bandwidth ``intra_bw``;
* inter-host (a NIC per rank, rail-optimised): latency ``inter_latency``, bandwidth ``inter_bw``.

A round costs, for each link class it uses, the class latency plus the largest number of bytes
one rank pushes through that class divided by its bandwidth; the round takes the slower class.
That is the α-β model with sender-side serialisation — the same one the closed forms use, so a
flat topology reproduces them exactly — plus the topology, which the closed forms lack.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np


@dataclass(frozen=True, slots=True, kw_only=True)
class Topology:
    ranks: int
    """Total ranks (processes, devices)."""
    ranks_per_host: int = 0
    """Ranks sharing a host's fast links; 0 means all of them (one host)."""
    intra_bw: float = 150e9
    """Bytes per second one rank can send to a rank on its host."""
    inter_bw: float = 25e9
    """Bytes per second one rank can send to another host."""
    intra_latency: float = 2e-6
    """Seconds of fixed cost per message within a host."""
    inter_latency: float = 5e-6
    """Seconds of fixed cost per message across hosts."""
    copy_bw: float = 0.0
    """Bytes per second of a rank's local copies (staging, packing); 0 ignores them, as the
    textbook formulas do. On CPU transports they cost as much as the transfers."""
    cache_bytes: float = 0.0
    """Size of the caches a collective's *working set* (buffers touched + staging, see
    :mod:`.ops`) competes for; 0: one bandwidth for every size. A collective whose working set
    is W bytes pays a blend of the in-cache and the past-cache bandwidths with weight
    g = 1 / (1 + (cache_bytes / W)²) on the latter: half-way at W = cache_bytes, within 6 %
    of either end a factor 4 away. On a CPU host copies slow down ~4× out of the last-level
    cache (here: 46 GB/s at 4 MiB, 10.5 GB/s at 16 MiB), which no single β fits, and Bruck's
    working set (4.5× its message) leaves the cache at a quarter of ring allreduce's size."""
    intra_bw_large: float = 0.0
    """Intra-host bandwidth past the caches (0: ``intra_bw``)."""
    copy_bw_large: float = 0.0
    """Local copy bandwidth past the caches (0: ``copy_bw``)."""
    inner_cache_bytes: float = 0.0
    """A second, smaller cache level (a core's own L2), blended the same way: a working set
    well inside it uses ``intra_bw_inner``/``copy_bw_inner``, one between the two levels
    ``intra_bw``/``copy_bw``; 0: no inner level. On a CPU transport the inner level is where
    a message the peer just wrote still sits dirty in the *peer's* L2, and reading it costs
    more than reading it from the shared L3 (here: a 2-rank allreduce moves 256 KiB at
    ~10 GB/s, 1 MiB at ~17 GB/s)."""
    intra_bw_inner: float = 0.0
    """Intra-host bandwidth inside the inner cache (0: ``intra_bw``)."""
    copy_bw_inner: float = 0.0
    """Local copy bandwidth inside the inner cache (0: ``copy_bw``)."""
    copy_op_cost: float = 0.0
    """Seconds of software cost per local copy op a rank's schedule issues (packing,
    rotation), on top of its bytes; 0, as the textbook formulas do."""
    reduce_op_cost: float = 0.0
    """Seconds of software cost per reducing receive (one elementwise-combine call)."""
    call_overhead: float = 0.0
    """Seconds of software cost per collective call, outside its rounds (argument checks,
    algorithm lookup, the call into the transport); 0, as the textbook formulas do. A Python
    library on a CPU pays tens of µs here, as much as a small message's rounds."""

    def __post_init__(self) -> None:
        if self.ranks < 1:
            raise ValueError(f"ranks must be at least 1, got {self.ranks}")
        if self.ranks_per_host < 0 or (self.ranks_per_host and self.ranks % self.ranks_per_host):
            raise ValueError(
                f"ranks_per_host={self.ranks_per_host} must divide ranks={self.ranks} "
                "(or be 0 for a single host)"
            )
        for name in ("intra_bw", "inter_bw"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be positive, got {getattr(self, name)}")
        if self.copy_bw < 0:
            raise ValueError(f"copy_bw must be >= 0, got {self.copy_bw}")
        for name in (
            "cache_bytes",
            "intra_bw_large",
            "copy_bw_large",
            "inner_cache_bytes",
            "intra_bw_inner",
            "copy_bw_inner",
        ):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if (
            self.inner_cache_bytes
            and self.cache_bytes
            and self.inner_cache_bytes >= self.cache_bytes
        ):
            raise ValueError(
                f"inner_cache_bytes={self.inner_cache_bytes:g} must be smaller than "
                f"cache_bytes={self.cache_bytes:g} (the inner level sits inside the outer)"
            )
        for name in ("copy_op_cost", "reduce_op_cost"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        if self.call_overhead < 0:
            raise ValueError(f"call_overhead must be >= 0, got {self.call_overhead}")
        for name in ("intra_latency", "inter_latency"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def large(self) -> Topology:
        """The machine as a working set far past ``cache_bytes`` sees it."""
        return replace(
            self,
            intra_bw=self.intra_bw_large or self.intra_bw,
            copy_bw=self.copy_bw_large or self.copy_bw,
            cache_bytes=0.0,
            inner_cache_bytes=0.0,
        )

    def inner(self) -> Topology:
        """The machine as a working set well inside ``inner_cache_bytes`` sees it."""
        return replace(
            self,
            intra_bw=self.intra_bw_inner or self.intra_bw,
            copy_bw=self.copy_bw_inner or self.copy_bw,
            cache_bytes=0.0,
            inner_cache_bytes=0.0,
        )

    def middle(self) -> Topology:
        """The machine between the two cache levels (the plain bandwidths)."""
        return replace(self, cache_bytes=0.0, inner_cache_bytes=0.0)

    @property
    def local(self) -> int:
        return self.ranks_per_host or self.ranks

    @property
    def hosts(self) -> int:
        return self.ranks // self.local

    def host(self, rank: np.ndarray) -> np.ndarray:
        return rank // self.local

    def links(self) -> object:
        """The matching :class:`~anyware.comm.algorithms.Links` for the closed forms."""
        from anyware.comm.algorithms import Links

        return Links(
            alpha_intra=self.intra_latency,
            beta_intra=1 / self.intra_bw,
            alpha_inter=self.inter_latency,
            beta_inter=1 / self.inter_bw,
            ranks_per_host=self.ranks_per_host if self.hosts > 1 else 0,
            gamma=1 / self.copy_bw if self.copy_bw > 0 else 0.0,
        )
