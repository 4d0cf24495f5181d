"""The per-file map step: one pass over a file's blocks, keeping only what the analysis needs.

Why it is fast: a training log is ~all step lines. Each 64 MiB block becomes one polars string
column (the CSV reader, in Rust, on both cores), and a single Rust regex built from every
signature's literal needles picks the few candidate lines. Python only looks at those (and at
the last progress line of the block), so the cost per GB is a couple of memory passes, not ten
million Python string operations. ``scan_source`` is a pure function of one file, which is the
unit a cluster engine (Ray, Dask) maps over; :func:`anyware.logs.analyze.merge` is the reduce.
"""

from __future__ import annotations

import dataclasses
import io
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from anyware.logs import signatures
from anyware.logs.ingest import BLOCK_BYTES, Compression, Source, iter_blocks, run_in_order
from anyware.logs.lineinfo import line_host, line_rank, line_time
from anyware.logs.model import Category, Finding, Role, Signature

LEVEL_WORDS = ("ERROR", "WARN", "FATAL", "CRITICAL", "Error", "Exception", "Warning")
#: Progress lines: "step 1200", "iteration 1200/ 5000", "step=1200" (torch, Megatron, DeepSpeed).
STEP_RX = r"(?i)\b(?:step|iteration|iter)\b\s*[:=#]?\s*(\d+)"
_STEP = re.compile(STEP_RX)
_RANK_PREFIX_RX = r"^\s*\[(?:rank|default)(\d+)\]:"
#: Notable (non-signature) lines kept per block for clustering; the rest are only counted.
NOTABLE_CAP = 5000
_LOOKBACK = 200
_TAIL_PROGRESS = 2000


@dataclass(slots=True, kw_only=True)
class Progress:
    step: int
    time: float | None
    line: int


@dataclass(slots=True, kw_only=True)
class SourceScan:
    """What one file contributes to the analysis."""

    file: str
    rank: int | None
    host: str | None
    bytes: int = 0
    lines: int = 0
    findings: list[Finding] = field(default_factory=list)
    notable: list[tuple[str, int, int | None, float | None]] = field(default_factory=list)
    notable_dropped: int = 0
    first_t: float | None = None
    last_t: float | None = None
    progress: dict[int | None, Progress] = field(default_factory=dict)
    ranks_seen: set[int] = field(default_factory=set)
    errors: list[str] = field(default_factory=list)


def _needle_regex() -> str:
    words = (*signatures.needles(), *LEVEL_WORDS)
    return "|".join(re.escape(w) for w in words)


def _frame(block: bytes) -> Any:
    import polars as pl

    return pl.read_csv(
        io.BytesIO(block),
        has_header=False,
        separator="\x1f",
        quote_char=None,
        new_columns=["line"],
        encoding="utf8-lossy",
        truncate_ragged_lines=True,
        infer_schema=False,
        low_memory=False,
    ).get_column("line")


def _time_before(col: Any, idx: int, year: int) -> float | None:
    lo = max(0, idx - _LOOKBACK)
    for text in reversed(col.slice(lo, idx - lo).to_list()):
        if text:
            t = line_time(text, year)
            if t is not None:
                return t
    return None


def _classify(text: str, sigs: tuple[Signature, ...]) -> tuple[Signature, Any, Any] | None:
    for sig in sigs:
        hit = sig.match(text)
        if hit is not None:
            return sig, hit[0], hit[1]
    return None


def _finding(
    src: Source,
    scan: SourceScan,
    sigs: tuple[Signature, ...],
    col: Any,
    idx: int,
    line_no: int,
    text: str,
    year: int,
) -> Finding | None:
    hit = _classify(text, sigs)
    if hit is None:
        return None
    sig, rule, m = hit
    attrs: dict[str, Any] = {k: v for k, v in m.groupdict().items() if v is not None}
    category, role, severity, spec = (
        rule.category or sig.category,
        rule.role,
        rule.severity,
        rule.specificity,
    )
    if sig.extra is not None:
        after = [t or "" for t in col.slice(idx + 1, sig.context_after).to_list()]
        lo = max(0, idx - sig.context_before)
        before = [t or "" for t in col.slice(lo, idx - lo).to_list()] if sig.context_before else []
        attrs.update(sig.extra(text, before, after))
        if "_category" in attrs:
            category = Category(attrs.pop("_category"))
        if "_role" in attrs:
            role = Role(attrs.pop("_role"))
        if "_specificity" in attrs:
            spec = int(attrs.pop("_specificity"))
        exc = attrs.get("exception")
        if exc:  # a traceback takes the category of what it raised (OOM, watchdog timeout...)
            inner = _classify(
                f"{exc}: {attrs.get('exception_message', '')}",
                tuple(s for s in sigs if s.code != sig.code),
            )
            if inner is not None:
                category = inner[1].category or inner[0].category
                role, severity = inner[1].role, inner[1].severity
                spec = max(spec, inner[1].specificity)
                attrs["via"] = inner[0].code
                attrs.update({k: v for k, v in inner[2].groupdict().items() if v is not None})
    rank = int(attrs.pop("rank")) if "rank" in attrs else None
    if rank is None:
        rank = line_rank(text)
    if rank is None:
        rank = src.rank
    t = line_time(attrs.pop("time_text", None) or text, year)
    if t is None:
        t = _time_before(col, idx, year)
    msg = text.strip()
    if "exception" in attrs:
        msg = f"{attrs['exception']}: {attrs.get('exception_message', '')}".strip()
    return Finding(
        code=sig.code,
        category=category,
        role=Role(role),
        severity=severity,
        specificity=spec,
        rank=rank,
        host=attrs.pop("summary_host", None) or line_host(text) or src.host,
        time=t,
        file=str(src.path),
        line=line_no,
        message=msg[:500],
        attrs=attrs,
    )


def scan_source(
    src: Source,
    *,
    block_bytes: int = BLOCK_BYTES,
    on_block: Callable[[int], None] | None = None,
    in_flight: int = 2,
) -> SourceScan:
    """Scan one file: findings, notable lines, line/byte counts, time span and progress.

    Blocks of a big file are scanned ``in_flight`` at a time (threads: polars releases the GIL)
    with block-local line numbers, then merged in file order.
    """
    import polars as pl

    scan = SourceScan(file=str(src.path), rank=src.rank, host=src.host)
    ctx = _Ctx(
        src=src,
        sigs=signatures.all_signatures(),
        needle_rx=_needle_regex(),
        level_rx=re.compile("|".join(LEVEL_WORDS)),
        mixed=src.rank is None,
        pl=pl,
    )

    def absorb(part: SourceScan) -> None:
        base = scan.lines
        scan.bytes += part.bytes
        scan.lines += part.lines
        scan.first_t = scan.first_t if scan.first_t is not None else part.first_t
        scan.last_t = part.last_t if part.last_t is not None else scan.last_t
        scan.findings += [dataclasses.replace(f, line=f.line + base) for f in part.findings]
        scan.notable += [(t, ln + base, r, tm) for t, ln, r, tm in part.notable]
        scan.notable_dropped += part.notable_dropped
        for r, p in part.progress.items():
            scan.progress[r] = Progress(step=p.step, time=p.time, line=p.line + base)
        scan.ranks_seen |= part.ranks_seen

    blocks = iter_blocks(src, block_bytes=block_bytes, on_error=scan.errors.append)
    one_block = src.size <= block_bytes and src.compression is Compression.NONE
    run_in_order(
        blocks, lambda b, _seq: _scan_block(ctx, b), absorb, on_block, 1 if one_block else in_flight
    )
    if src.rank is not None:
        scan.ranks_seen.add(src.rank)
    return scan


@dataclass(frozen=True, slots=True, kw_only=True)
class _Ctx:
    src: Source
    sigs: tuple[Signature, ...]
    needle_rx: str
    level_rx: re.Pattern[str]
    mixed: bool
    pl: Any


def _scan_block(ctx: _Ctx, block: bytes) -> SourceScan:
    """One block with block-local line numbers (the caller adds the offset)."""
    pl, src = ctx.pl, ctx.src
    part = SourceScan(file=str(src.path), rank=src.rank, host=src.host, bytes=len(block))
    col = _frame(block)
    part.lines = len(col)
    # Year for yearless stamps (syslog, dmesg -T, glog): the block's first ISO stamp, else now.
    year = _year_of(time.time())
    for text in col.head(100).to_list():
        t = line_time(text, year) if text else None
        if t is not None:
            part.first_t = t
            year = _year_of(t)
            break
    for text in reversed(col.tail(100).to_list()):
        t = line_time(text, year) if text else None
        if t is not None:
            part.last_t = t
            break
    _progress(part, col, 0, year, ctx.mixed, pl)
    idx_col = (
        pl.DataFrame({"line": col})
        .with_row_index("i")
        .filter(pl.col("line").str.contains(ctx.needle_rx))
    )
    notable_left = NOTABLE_CAP
    for i, text in zip(
        idx_col.get_column("i").to_list(), idx_col.get_column("line").to_list(), strict=True
    ):
        f = _finding(src, part, ctx.sigs, col, i, i + 1, text, year)
        if f is not None:
            part.findings.append(f)
            if f.rank is not None:
                part.ranks_seen.add(f.rank)
        elif ctx.level_rx.search(text):
            if notable_left > 0:
                notable_left -= 1
                r = line_rank(text) if ctx.mixed else src.rank
                part.notable.append((text[:500], i + 1, r, line_time(text, year)))
            else:
                part.notable_dropped += 1
    return part


def _year_of(t: float) -> int:
    return time.gmtime(t).tm_year


def _progress(scan: SourceScan, col: Any, base: int, year: int, mixed: bool, pl: Any) -> None:
    if not mixed:
        # The last progress line is nearly always among the last lines of the block: look there
        # in Python (about a millisecond) before paying for a regex over the whole column.
        tail = col.tail(_TAIL_PROGRESS).to_list()
        for k in range(len(tail) - 1, -1, -1):
            text = tail[k]
            if text and _STEP.search(text):
                _set_progress(scan, scan.rank, base + len(col) - len(tail) + k + 1, text, year)
                return
    steps = (
        pl.DataFrame({"line": col}).with_row_index("i").filter(pl.col("line").str.contains(STEP_RX))
    )
    if steps.height == 0:
        return
    if mixed:
        steps = steps.with_columns(
            pl.col("line").str.extract(_RANK_PREFIX_RX, 1).cast(pl.Int64).alias("r")
        )
        for r, i, text in (
            steps.group_by("r").agg(pl.col("i").last(), pl.col("line").last()).iter_rows()
        ):
            _set_progress(scan, r, base + i + 1, text, year)
            if r is not None:
                scan.ranks_seen.add(r)
    else:
        i, text = steps.row(-1)
        _set_progress(scan, scan.rank, base + i + 1, text, year)


def _set_progress(scan: SourceScan, rank: int | None, line_no: int, text: str, year: int) -> None:
    m = _STEP.search(text)
    if m is not None:
        scan.progress[rank] = Progress(step=int(m[1]), time=line_time(text, year), line=line_no)
