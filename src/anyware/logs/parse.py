"""``anyware logs parse``: split headers, mine templates, write Loghub-style CSVs.

Why it is fast: per 64 MiB block, every digit is turned into '0' (``bytes.translate``, one
C pass) and the block is read twice by polars' Rust CSV reader, raw and masked. Training logs
then collapse to a few hundred distinct *masked lines*; only those go through the Python format
regex and the template miner (cached across blocks). Because the masking keeps every character
in place, the header fields' offsets found on a masked line are the offsets in every raw line of
that shape, so the fields are cut with ``str.slice`` in Rust instead of a capturing regex over
ten million lines (measured ~4x slower). Blocks with too many distinct shapes fall back to the
capturing regex. Two blocks are in flight on two threads (polars releases the GIL). Both
outputs go to temporary files renamed at the end: a failed run leaves no half-written CSV.

A file of more than one block is read twice: a first pass counts the distinct masked lines so
the miner sees the whole file at once (mining block by block makes early templates too
specific: a 4-block OpenSSH sample drops from GA 1.0 to 0.62), and keeps each line's shape id
(4 bytes a line), so the second pass reads only the raw lines and gathers offsets and templates
by id.
"""

from __future__ import annotations

import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anyware.logs.formats import FormatError, headers, resolve, to_regex
from anyware.logs.ingest import (
    Compression,
    IngestError,
    Source,
    discover,
    iter_blocks,
    run_in_order,
)
from anyware.logs.miner import TemplateMiner

_SAMPLE_LINES = 1000
#: Digits become '0' one for one, so a masked line has its header fields at the same offsets.
_ZERO_DIGITS = bytes.maketrans(b"123456789", b"000000000")
#: Above this share of distinct masked lines in a block (hex ids, random words) the per-shape
#: cache stops paying and the block goes through the regex path instead.
_FAST_MAX_UNIQUE = 0.05
_CACHE_MAX = 500_000
#: Shape ids kept from the first pass (4 bytes a line; 400 MB at most), else re-masked.
_CODES_MAX_LINES = 100_000_000
_IN_FLIGHT = 2


def _sample(src: Source) -> list[str]:
    for block in iter_blocks(src, block_bytes=1 << 20):
        text = block.decode("utf-8", errors="replace")
        return [ln.rstrip("\r") for ln in text.split("\n")[:_SAMPLE_LINES]]
    return []


def templates_path(out: str | os.PathLike[str]) -> Path:
    p = Path(out)
    return p.with_name(p.stem.removesuffix("_structured") + "_templates.csv")


def parse_file(
    path: str | os.PathLike[str],
    *,
    out: str | os.PathLike[str],
    log_format: str = "auto",
    masks: Sequence[str] = (),
    split_threshold: int = 5,
    block_bytes: int = 64 << 20,
    on_total: Callable[[int], None] | None = None,
    on_bytes: Callable[[int], None] | None = None,
) -> dict[str, Any]:
    """Parse one log file into ``out`` (structured CSV) and its templates CSV; a summary dict."""
    import polars as pl

    t0 = time.perf_counter()
    errors: list[str] = []
    sources = discover([path], on_error=errors.append)
    if len(sources) != 1:
        raise IngestError(
            f"parse takes one log file, but {path} names {len(sources)}; pass a single file"
        )
    src = sources[0]
    sample = _sample(src)
    if not any(s.strip() for s in sample):
        raise IngestError(f"{src.path} is empty; nothing to parse")
    fmt = resolve(log_format, sample)
    compiled = []
    for m in masks:
        try:
            compiled.append(re.compile(m))
            pl.Series(["x"]).str.replace_all(m, "<*>")
        except Exception as e:  # re.error, or polars' ComputeError for Rust-only syntax issues
            raise FormatError(f"--mask {m!r} is not a valid regex: {e}") from None
    names = headers(fmt)
    st = _State(
        fmt=fmt,
        rx=re.compile(to_regex(fmt)),
        names=names,
        fields=[n for n in names if n != "Content"],
        masks=masks,
        compiled_masks=tuple(compiled),
        miner=TemplateMiner(split_threshold=split_threshold),
    )
    multi = src.size > block_bytes or src.compression is not Compression.NONE
    if on_total is not None:
        on_total(src.size * (2 if multi else 1))
    if multi:
        _premine(pl, src, st, block_bytes, errors, on_bytes)
    out_p = Path(out)
    tpl_p = templates_path(out_p)
    out_p.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out_p.with_name(f".{out_p.name}.tmp")
    tmp_tpl = tpl_p.with_name(f".{tpl_p.name}.tmp")
    lines = 0
    unmatched = 0
    try:
        with open(tmp_out, "wb") as fh:

            def write(df: Any) -> None:
                nonlocal lines, unmatched
                unmatched += int(df.get_column("_unmatched").sum())
                df.drop("_unmatched").with_row_index("LineId", offset=lines + 1).write_csv(
                    fh, include_header=lines == 0
                )
                lines += df.height

            blocks = iter_blocks(src, block_bytes=block_bytes, on_error=errors.append)
            run_in_order(
                blocks, lambda b, seq: _parse_block(pl, b, st, seq), write, on_bytes, _IN_FLIGHT
            )
        rows = [(t.event_id, t.text, t.count) for t in st.miner.templates if t.count]
        pl.DataFrame(
            rows, schema=["EventId", "EventTemplate", "Occurrences"], orient="row"
        ).write_csv(tmp_tpl)
        os.replace(tmp_out, out_p)
        os.replace(tmp_tpl, tpl_p)
    finally:
        tmp_out.unlink(missing_ok=True)
        tmp_tpl.unlink(missing_ok=True)
    return {
        "file": str(src.path),
        "log_format": fmt,
        "lines": lines,
        "unmatched": unmatched,
        "templates": sum(1 for t in st.miner.templates if t.count),
        "out": str(out_p),
        "templates_out": str(tpl_p),
        "bytes": src.size,
        "seconds": round(time.perf_counter() - t0, 3),
        "errors": errors,
    }


@dataclass(slots=True, kw_only=True)
class _State:
    """What every block shares: the format, the miner and the caches (blocks take turns)."""

    fmt: str
    rx: re.Pattern[str]
    names: list[str]
    fields: list[str]
    masks: Sequence[str]
    compiled_masks: tuple[re.Pattern[str], ...]
    miner: TemplateMiner
    cache: dict[str, tuple[tuple[int, ...], int, bool]] = field(default_factory=dict)
    """masked line -> (field offsets/lengths + content start, template index, unmatched)."""
    key_tid: dict[str, int] = field(default_factory=dict)
    """mining key (masked content) -> template index."""
    codes: dict[int, Any] = field(default_factory=dict)
    """First pass: block number -> per-line shape id (u32), so the second pass reads only the
    raw lines and gathers each line's offsets and template by id (no second masking)."""
    table: Any = None
    """Shape id -> offsets, template and unmatched flag, one row per id (a polars frame)."""
    tid_of: list[int] = field(default_factory=list)
    """Shape id -> template index (the coded second pass counts with it)."""
    turn: int = 0
    """Blocks mine in file order (the miner's result depends on what it has seen)."""
    cond: threading.Condition = field(default_factory=threading.Condition)

    @contextmanager
    def mining(self, seq: int) -> Iterator[None]:
        with self.cond:
            self.cond.wait_for(lambda: self.turn == seq)
            try:
                yield
            finally:
                self.turn += 1
                self.cond.notify_all()

    def shape_info(self, shape: str) -> tuple[tuple[int, ...], str, bool]:
        m = self.rx.match(shape)
        if m is None:
            return (0,) * (2 * len(self.fields) + 1), _key(shape, self.compiled_masks), True
        offs: list[int] = []
        for f in self.fields:
            offs += [m.start(f), m.end(f) - m.start(f)]
        offs.append(m.start("Content"))
        return tuple(offs), _key(m.group("Content"), self.compiled_masks), False

    def assign(self, keys: Sequence[str], counts: Sequence[int]) -> list[int]:
        """Template index per key: known keys count up, new ones are mined together."""
        out = [self.key_tid.get(k, -1) for k in keys]
        fresh = [i for i, t in enumerate(out) if t < 0]
        for i, t in enumerate(out):
            if t >= 0:
                self.miner.templates[t].count += counts[i]
        if fresh:
            tids = self.miner.add([keys[i] for i in fresh], [counts[i] for i in fresh])
            for i, t in zip(fresh, tids, strict=True):
                out[i] = t
                self.key_tid[keys[i]] = t
        return out


def _key(content: str, masks: tuple[re.Pattern[str], ...]) -> str:
    for m in masks:
        content = m.sub("<*>", content)
    # Collapsing digit runs never changes a template (a word with a digit is a variable).
    return _DIGITS.sub("0", content.strip())


_DIGITS = re.compile(r"\d+")


def _frames(pl: Any, block: bytes) -> Any:
    from anyware.logs.scan import _frame

    raw = _frame(block).fill_null("")
    masked = _frame(block.translate(_ZERO_DIGITS)).fill_null("")
    return pl.DataFrame({"line": raw, "_m": masked})


def _premine(
    pl: Any,
    src: Source,
    st: _State,
    block_bytes: int,
    errors: list[str],
    on_bytes: Callable[[int], None] | None,
) -> None:
    """First pass over a multi-block file: count every masked line, then mine them at once."""
    shapes: Counter[str] = Counter()
    keys: Counter[str] = Counter()

    def count(block: bytes, seq: int) -> tuple[str, Any, Any]:
        from anyware.logs.scan import _frame

        masked = _frame(block.translate(_ZERO_DIGITS)).fill_null("").to_frame("_m")
        uniq = masked.group_by("_m").len()
        if uniq.height > max(1000, _FAST_MAX_UNIQUE * masked.height):
            raw = _frame(block).fill_null("").to_frame("line")
            return "key", _regex_frame(pl, raw, st).group_by("_key").len(), None
        uniq = uniq.with_row_index("_c")
        codes = masked.join(uniq.select("_m", "_c"), on="_m", how="left", maintain_order="left")
        return "shape", uniq.select("_m", "len"), codes.get_column("_c")

    ids: dict[str, int] = {}
    stored = 0
    seq = 0

    def merge(res: tuple[str, Any, Any]) -> None:
        nonlocal stored, seq
        kind, df, codes = res
        if kind == "key":
            for k, n in df.iter_rows():
                keys[k] += n
        else:
            local = []
            for k, n in df.iter_rows():
                shapes[k] += n
                local.append(ids.setdefault(k, len(ids)))
            if stored + len(codes) <= _CODES_MAX_LINES:
                st.codes[seq] = pl.Series(local, dtype=pl.UInt32).gather(codes)
                stored += len(codes)
        seq += 1

    blocks = iter_blocks(src, block_bytes=block_bytes, on_error=lambda e: None)
    run_in_order(blocks, count, merge, on_bytes, _IN_FLIGHT)
    if len(shapes) > _CACHE_MAX:
        return  # too many shapes to hold: mine block by block instead
    infos = {s: st.shape_info(s) for s in shapes}
    for s, n in shapes.items():
        keys[infos[s][1]] += n
    key_list = list(keys)
    st.assign(key_list, [keys[k] for k in key_list])
    for s, (offs, key, unmatched) in infos.items():
        st.cache[s] = (offs, st.key_tid[key], unmatched)
    for t in st.miner.templates:  # the second pass counts again
        t.count = 0
    entries = [st.cache[s] for s in ids]
    st.tid_of = [e[1] for e in entries]
    st.table = _entry_frame(pl, st, entries)


def _entry_frame(pl: Any, st: _State, entries: Sequence[tuple[tuple[int, ...], int, bool]]) -> Any:
    """One row per shape: field offsets/lengths, content start, template, unmatched flag."""
    tpl = [st.miner.templates[e[1]] for e in entries]
    cols: dict[str, Any] = {}
    for k, f in enumerate(st.fields):
        cols[f"_s{f}"] = pl.Series([e[0][2 * k] for e in entries], dtype=pl.Int64)
        cols[f"_l{f}"] = pl.Series([e[0][2 * k + 1] for e in entries], dtype=pl.Int64)
    cols["_cs"] = pl.Series([e[0][-1] for e in entries], dtype=pl.Int64)
    cols["_tid"] = pl.Series([e[1] for e in entries], dtype=pl.UInt32)
    # Enums: gathering them per line moves 4-byte codes, not ten million string copies.
    ids = [t.event_id for t in tpl]
    texts = [t.text for t in tpl]
    cols["EventId"] = pl.Series(ids, dtype=pl.Enum(sorted(set(ids))))
    cols["EventTemplate"] = pl.Series(texts, dtype=pl.Enum(sorted(set(texts))))
    cols["_unmatched"] = pl.Series([e[2] for e in entries], dtype=pl.Boolean)
    return pl.DataFrame(cols)


def _cut(pl: Any, st: _State, j: Any) -> Any:
    line = pl.col("line")
    return j.select(
        *[line.str.slice(pl.col(f"_s{f}"), pl.col(f"_l{f}")).alias(f) for f in st.fields],
        line.str.slice(pl.col("_cs")).alias("Content"),
        "EventId",
        "EventTemplate",
        "_unmatched",
    )


def _parse_block_coded(pl: Any, block: bytes, st: _State, seq: int, codes: Any) -> Any | None:
    """Second pass with the first pass's shape ids: one read, then gathers and slices."""
    from anyware.logs.scan import _frame

    raw = _frame(block).fill_null("")
    if len(raw) != len(codes):  # the file changed between the passes
        return None
    per = codes.value_counts()
    with st.mining(seq):
        for gid, n in per.iter_rows():
            st.miner.templates[st.tid_of[gid]].count += n
    j = st.table.select(pl.all().gather(codes)).with_columns(raw.alias("line"))
    return _cut(pl, st, j)


def _parse_block(pl: Any, block: bytes, st: _State, seq: int) -> Any:
    codes = st.codes.pop(seq, None)
    if codes is not None and st.table is not None:
        done = _parse_block_coded(pl, block, st, seq, codes)
        if done is not None:
            return done
    df = _frames(pl, block)
    uniq = df.group_by("_m").len()
    if uniq.height > max(1000, _FAST_MAX_UNIQUE * df.height):
        return _parse_block_regex(pl, df.drop("_m"), st, seq)
    shapes = uniq.get_column("_m").to_list()
    counts = uniq.get_column("len").to_list()
    with st.mining(seq):
        if len(st.cache) > _CACHE_MAX:
            st.cache.clear()
        fresh = [i for i, s in enumerate(shapes) if s not in st.cache]
        infos = [st.shape_info(shapes[i]) for i in fresh]
        tids = st.assign([x[1] for x in infos], [counts[i] for i in fresh])
        for i, info, tid in zip(fresh, infos, tids, strict=True):
            st.cache[shapes[i]] = (info[0], tid, info[2])
        fresh_set = set(fresh)
        for i, s in enumerate(shapes):
            if i not in fresh_set:
                st.miner.templates[st.cache[s][1]].count += counts[i]
        entries = [st.cache[s] for s in shapes]
        mapping = _entry_frame(pl, st, entries).with_columns(pl.Series("_m", shapes))
    j = df.join(mapping, on="_m", how="left", maintain_order="left")
    return _cut(pl, st, j)


def _regex_frame(pl: Any, df: Any, st: _State) -> Any:
    """Header fields by the capturing regex, and the mining key, for every line of a block."""
    df = df.with_columns(pl.col("line").str.extract_groups(to_regex(st.fmt)).alias("_h")).unnest(
        "_h"
    )
    df = df.with_columns(
        pl.col("Content").is_null().alias("_unmatched"),
        pl.col("Content").fill_null(pl.col("line")).alias("Content"),
    )
    key = pl.col("Content").str.strip_chars()
    for m in st.masks:
        key = key.str.replace_all(m, "<*>")
    return df.with_columns(key.str.replace_all(r"\d+", "0").alias("_key"))


def _parse_block_regex(pl: Any, df: Any, st: _State, seq: int) -> Any:
    df = _regex_frame(pl, df, st)
    uniq = df.group_by("_key").len()
    keys = uniq.get_column("_key").to_list()
    with st.mining(seq):
        tids = st.assign(keys, uniq.get_column("len").to_list())
        ids = [st.miner.templates[t].event_id for t in tids]
        texts = [st.miner.templates[t].text for t in tids]
    mapping = pl.DataFrame({"_key": keys, "EventId": ids, "EventTemplate": texts})
    df = df.join(mapping, on="_key", how="left", maintain_order="left")
    return df.select(*st.fields, "Content", "EventId", "EventTemplate", "_unmatched")
