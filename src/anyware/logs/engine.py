"""Where the per-file map of ``analyze`` runs: on this machine's threads, or on a Dask cluster.

The analysis is a map and a reduce. The map, :func:`~anyware.logs.scan.scan_source`, turns one
file into a :class:`~anyware.logs.scan.SourceScan` (findings, notable lines, counts, progress:
kilobytes for a gigabyte of steps); the reduce, :func:`~anyware.logs.analyze.merge`, is a pure
function of those records. Both sides are picklable, so a cluster engine only has to run the map
where the files are and send the records back; this module is that layer and nothing more.

* ``local``: files go through a pool of ``workers`` threads. polars releases the GIL in its Rust
  reader and regexes, so two threads keep two cores busy without pickling anything.
* ``dask``: a ``LocalCluster`` of ``workers`` processes on this machine (mostly for testing the
  path; it costs a few seconds of start-up).
* ``dask:ADDRESS``: a running scheduler (``dask scheduler``, with ``dask worker ADDRESS`` on
  every node). Each worker must see the log files at the same absolute paths as this process
  (a shared or parallel file system) and have anyware installed.

Either way the records come back in one fixed order (largest file first, as the local pool
schedules them), so the report is the same whichever engine produced it.
"""

from __future__ import annotations

import dataclasses
import difflib
import importlib
import logging
import socket
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any

from anyware.logs.ingest import Source
from anyware.logs.scan import SourceScan, scan_source

#: How long to wait for a remote scheduler (and for its first worker) before giving up.
CONNECT_TIMEOUT_S = 10.0


class EngineKind(StrEnum):
    LOCAL = "local"
    DASK = "dask"


class EngineError(ValueError):
    """An engine that cannot be used (unknown name, unreachable scheduler, missing package)."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Engine:
    """Which engine runs the per-file map, and with how many workers."""

    kind: EngineKind = EngineKind.LOCAL
    address: str | None = None
    """Dask scheduler address (``tcp://head:8786``); ``None`` starts a local cluster."""
    workers: int = 2
    """Threads (``local``) or worker processes of a local Dask cluster."""
    connect_timeout: float = CONNECT_TIMEOUT_S
    """Seconds to wait for a remote scheduler and its first worker."""

    def __post_init__(self) -> None:
        if self.workers < 1:
            raise EngineError(f"workers must be >= 1, got {self.workers}")
        if self.connect_timeout <= 0:
            raise EngineError(
                f"the connect timeout (--connect-timeout) must be > 0 s, got {self.connect_timeout:g}"
            )
        if self.address is not None and self.kind is not EngineKind.DASK:
            raise EngineError(f"engine {self.kind} takes no address, got {self.address!r}")
        if self.address is not None and not self.address.strip():
            raise EngineError("the Dask scheduler address is empty; use dask:tcp://HOST:8786")

    @classmethod
    def parse(
        cls, spec: str, *, workers: int = 2, connect_timeout: float = CONNECT_TIMEOUT_S
    ) -> Engine:
        """``local``, ``dask`` or ``dask:ADDRESS`` (as on the command line)."""
        name, sep, address = spec.strip().partition(":")
        try:
            kind = EngineKind(name.lower())
        except ValueError:
            names = [k.value for k in EngineKind]
            close = difflib.get_close_matches(name.lower(), names, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise EngineError(
                f"unknown engine {spec!r}: choose local, dask or dask:SCHEDULER_ADDRESS{hint}"
            ) from None
        if sep and kind is EngineKind.LOCAL:
            raise EngineError(f"engine 'local' takes no address, got {spec!r}")
        if sep and not address.strip():
            raise EngineError(
                f"engine {spec!r} names no scheduler: use dask:tcp://HOST:8786, or plain 'dask' "
                "for a cluster on this machine"
            )
        return cls(
            kind=kind,
            address=address.strip() if sep else None,
            workers=workers,
            connect_timeout=connect_timeout,
        )


def scan_order(sources: Sequence[Source]) -> list[Source]:
    """Largest first, so one big file does not start last and run alone on one worker."""
    return sorted(sources, key=lambda s: -s.size)


def map_scans(
    sources: Sequence[Source], engine: Engine, on_bytes: Callable[[int], None] | None = None
) -> list[SourceScan]:
    """``scan_source`` over every source on ``engine``; results in :func:`scan_order`."""
    order = scan_order(sources)
    if engine.kind is EngineKind.DASK:
        return _map_dask(order, engine, on_bytes)
    if engine.workers <= 1 or len(order) == 1:
        return [scan_source(s, on_block=on_bytes) for s in order]
    with ThreadPoolExecutor(max_workers=engine.workers) as pool:
        return list(pool.map(lambda s: scan_source(s, on_block=on_bytes), order))


def scan_at(src: Source, label: str) -> SourceScan:
    """The map as a worker runs it: scan ``src`` (an absolute path) and report it as ``label``,
    the path as the user wrote it, so the report does not depend on where the map ran."""
    where = str(src.path)
    if not src.path.exists():
        # The usual cluster mistake: the files are on the client's disk only. Say so instead of
        # a bare "no such file" from a machine the user never looked at.
        return SourceScan(
            file=label,
            rank=src.rank,
            host=src.host,
            errors=[
                f"{label}: not found at {where} on Dask worker {socket.gethostname()} "
                "(skipped); workers must see the log files at the same paths as this machine"
            ],
        )
    scan = scan_source(src)
    if where == label:
        return scan
    scan.file = label
    scan.findings = [
        dataclasses.replace(f, file=label) if f.file == where else f for f in scan.findings
    ]
    scan.errors = [label + e[len(where) :] if e.startswith(where) else e for e in scan.errors]
    return scan


def _connect(dist: Any, engine: Engine, stack: ExitStack) -> Any:
    if engine.address is None:
        cluster = stack.enter_context(
            dist.LocalCluster(
                n_workers=engine.workers,
                threads_per_worker=1,
                processes=True,
                dashboard_address=None,
                silence_logs=logging.ERROR,
            )
        )
        return stack.enter_context(dist.Client(cluster))
    hint = (
        "start one with `dask scheduler` and `dask worker ADDRESS` on each node, check the "
        "address and port, or use --engine dask for a cluster on this machine"
    )
    try:
        client = dist.Client(engine.address, timeout=engine.connect_timeout)
    except (OSError, ValueError, TimeoutError) as e:
        raise EngineError(
            f"cannot reach the Dask scheduler at {engine.address!r} ({e}); {hint}"
        ) from None
    stack.enter_context(client)
    try:
        client.wait_for_workers(1, timeout=engine.connect_timeout)
    except (OSError, TimeoutError) as e:
        raise EngineError(
            f"the Dask scheduler at {engine.address!r} has no workers after "
            f"{engine.connect_timeout:g} s ({e}); start `dask worker {engine.address}` on the "
            "nodes that see the log files"
        ) from None
    return client


def _map_dask(
    order: list[Source], engine: Engine, on_bytes: Callable[[int], None] | None
) -> list[SourceScan]:
    try:
        # As a plain module: its API is untyped, and dask stays out of the local path.
        dist: Any = importlib.import_module("distributed")
    except ImportError:
        raise EngineError(
            "--engine dask needs dask.distributed, which is not installed; "
            "pip install 'anyware[dask]'"
        ) from None
    with ExitStack() as stack:
        client = _connect(dist, engine, stack)
        # Workers may run in another directory (or on another machine): send absolute paths.
        futures = [
            client.submit(
                scan_at,
                dataclasses.replace(s, path=Path(s.path).absolute()),
                str(s.path),
                pure=False,
            )
            for s in order
        ]
        size = {f.key: s.size for f, s in zip(futures, order, strict=True)}
        for fut in dist.as_completed(futures):
            if on_bytes is not None:
                on_bytes(size[fut.key])
        scans: list[SourceScan] = client.gather(futures)
        return scans
