"""Find log files and read them as blocks of whole lines.

Inputs are files, directories (searched recursively) and globs; ``.gz`` and ``.zst`` are
decompressed as streams. A block is a ``bytes`` object of whole lines of about ``block_bytes``
(64 MiB: large enough that polars' per-call overhead vanishes, small enough that a 1 GB input
stays well under the 2 GB memory budget). Problems with one file (unreadable, truncated
archive) are reported through ``on_error`` and the rest of the input is still read.
"""

from __future__ import annotations

import glob
import gzip
import os
import zlib
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import IO, TypeVar

from anyware.logs.lineinfo import name_rank_host

BLOCK_BYTES = 64 << 20
T = TypeVar("T")
#: A line longer than this is cut into pieces (one 100 MB line must not need 100 MB per piece).
MAX_LINE_BYTES = 8 << 20
_LOG_SUFFIXES = {".log", ".txt", ".out", ".err", ".gz", ".zst", ".jsonl", ""}


class Compression(StrEnum):
    NONE = "none"
    GZIP = "gzip"
    ZSTD = "zstd"


class IngestError(ValueError):
    """An input that cannot be read at all; the message names it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Source:
    """One input file and what its name says about who wrote it."""

    path: Path
    size: int
    compression: Compression
    rank: int | None
    host: str | None

    def __post_init__(self) -> None:
        if self.size < 0:
            raise ValueError(f"size must be >= 0, got {self.size}")


def _compression(path: Path) -> Compression:
    if path.suffix == ".gz":
        return Compression.GZIP
    if path.suffix == ".zst":
        return Compression.ZSTD
    return Compression.NONE


def _source(path: Path) -> Source:
    stem = path.name
    for suffix in (".gz", ".zst"):
        stem = stem.removesuffix(suffix)
    rank, host = name_rank_host(stem)
    if host is None:  # a directory per host: node03/rank5.log
        _, host = name_rank_host(path.parent.name)
    return Source(
        path=path, size=path.stat().st_size, compression=_compression(path), rank=rank, host=host
    )


def discover(
    inputs: Sequence[str | os.PathLike[str]], on_error: Callable[[str], None] | None = None
) -> list[Source]:
    """Every log file named by ``inputs``; raises :class:`IngestError` when none is found."""
    found: dict[Path, None] = {}
    missing: list[str] = []
    for raw in inputs:
        p = Path(raw)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if (
                    f.is_file()
                    and not f.name.startswith(".")
                    and (f.suffix in _LOG_SUFFIXES or f.suffix.isdigit())
                ):
                    found[f] = None
        elif p.is_file():
            found[p] = None
        elif any(c in str(raw) for c in "*?["):
            hits = [Path(h) for h in sorted(glob.glob(str(raw), recursive=True))]
            files = [h for h in hits if h.is_file()]
            if not files:
                missing.append(str(raw))
            found.update(dict.fromkeys(files))
        else:
            missing.append(str(raw))
    if missing and on_error is not None:
        for m in missing:
            on_error(f"{m}: no such file, directory or matching glob (skipped)")
    if not found:
        raise IngestError(
            f"no log files found in {', '.join(map(str, inputs))}; pass files, directories or "
            "globs such as 'logs/*.log'"
        )
    sources = []
    for f in found:
        try:
            sources.append(_source(f))
        except OSError as e:
            if on_error is not None:
                on_error(f"{f}: cannot stat ({e.strerror or e}; skipped)")
    return sources


def _open(src: Source) -> IO[bytes]:
    if src.compression is Compression.GZIP:
        return gzip.open(src.path, "rb")  # type: ignore[return-value]
    if src.compression is Compression.ZSTD:
        import zstandard

        raw = open(src.path, "rb")  # noqa: SIM115 (closed with the reader)
        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)  # type: ignore[no-any-return]
    return open(src.path, "rb", buffering=0)


def iter_blocks(
    src: Source, *, block_bytes: int = BLOCK_BYTES, on_error: Callable[[str], None] | None = None
) -> Iterator[bytes]:
    """Whole-line blocks of ``src``; a truncated archive yields what was readable, then reports."""
    carry = b""
    try:
        f = _open(src)
    except OSError as e:
        if on_error is not None:
            on_error(f"{src.path}: cannot open ({e.strerror or e}; skipped)")
        return
    with f:
        pending = b""
        while True:
            try:
                data = f.read(block_bytes)
            except (EOFError, OSError, zlib.error, ValueError) as e:
                if on_error is not None:
                    on_error(
                        f"{src.path}: truncated or corrupt {src.compression} data after "
                        f"the readable part ({e}); analysed what could be read"
                    )
                break
            if not data:
                break
            # One read behind, so that a last line without a newline stays in the last block
            # instead of becoming a one-line block of its own.
            if pending:
                data = pending + data
            cut = data.rfind(b"\n")
            if cut < 0:
                if len(data) > MAX_LINE_BYTES:
                    if carry:
                        yield carry
                    yield data + b"\n"
                    carry = pending = b""
                else:
                    pending = data
                continue
            if carry:
                yield carry
            carry = data[: cut + 1]
            pending = data[cut + 1 :]
            if len(pending) > MAX_LINE_BYTES:
                yield carry + pending + b"\n"
                carry = pending = b""
    if carry or pending:
        yield carry + pending


def run_in_order(
    blocks: Iterator[bytes],
    work: Callable[[bytes, int], T],
    done: Callable[[T], None],
    on_bytes: Callable[[int], None] | None = None,
    in_flight: int = 2,
) -> None:
    """``work(block, seq)`` on up to ``in_flight`` blocks at once (threads); ``done`` sees the
    results in file order. Bounded, so at most ``in_flight + 1`` blocks are in memory."""
    if in_flight <= 1:
        for seq, block in enumerate(blocks):
            done(work(block, seq))
            if on_bytes is not None:
                on_bytes(len(block))
        return
    with ThreadPoolExecutor(max_workers=in_flight) as pool:
        pending: deque[tuple[Future[T], int]] = deque()

        def drain(keep: int) -> None:
            while len(pending) > keep:
                fut, size = pending.popleft()
                done(fut.result())
                if on_bytes is not None:
                    on_bytes(size)

        for seq, block in enumerate(blocks):
            pending.append((pool.submit(work, block, seq), len(block)))
            drain(in_flight)
        drain(0)
