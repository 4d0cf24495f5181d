"""``anyware logs parse``: split headers, mine templates, write Loghub-style CSVs.

Per 64 MiB block, in polars (Rust, both cores): split each line into header fields with the
format's regex, apply the masks, collapse digit runs and *deduplicate*. Only the unique masked
messages (thousands per GB of training logs) reach the Python miner; their templates are
joined back onto the lines in polars and appended to the CSV. Both outputs are written to
temporary files and renamed at the end, so a failed run leaves no half-written CSV.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from anyware.logs.formats import FormatError, headers, resolve, to_regex
from anyware.logs.ingest import IngestError, Source, discover, iter_blocks
from anyware.logs.miner import TemplateMiner

_SAMPLE_LINES = 1000


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

    from anyware.logs.scan import _frame

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
    rx = to_regex(fmt)
    names = headers(fmt)
    for m in masks:
        try:
            pl.Series(["x"]).str.replace_all(m, "<*>")
        except Exception as e:  # polars raises its own ComputeError for a bad pattern
            raise FormatError(f"--mask {m!r} is not a valid regex: {e}") from None
    if on_total is not None:
        on_total(src.size)
    miner = TemplateMiner(split_threshold=split_threshold)
    out_p = Path(out)
    tpl_p = templates_path(out_p)
    out_p.parent.mkdir(parents=True, exist_ok=True)
    tmp_out = out_p.with_name(f".{out_p.name}.tmp")
    tmp_tpl = tpl_p.with_name(f".{tpl_p.name}.tmp")
    lines = 0
    unmatched = 0
    try:
        with open(tmp_out, "wb") as fh:
            for block in iter_blocks(src, block_bytes=block_bytes, on_error=errors.append):
                df = _parse_block(pl, _frame(block), rx, names, masks, miner, lines)
                unmatched += int(df.get_column("_unmatched").sum())
                df.drop("_unmatched").write_csv(fh, include_header=lines == 0)
                lines += df.height
                if on_bytes is not None:
                    on_bytes(len(block))
        rows = [(t.event_id, t.text, t.count) for t in miner.templates if t.count]
        pl.DataFrame(
            rows,
            schema=["EventId", "EventTemplate", "Occurrences"],
            orient="row",
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
        "templates": sum(1 for t in miner.templates if t.count),
        "out": str(out_p),
        "templates_out": str(tpl_p),
        "bytes": src.size,
        "seconds": round(time.perf_counter() - t0, 3),
        "errors": errors,
    }


def _parse_block(
    pl: Any,
    col: Any,
    rx: str,
    names: list[str],
    masks: Sequence[str],
    miner: TemplateMiner,
    first_line: int,
) -> Any:
    df = (
        col.fill_null("")
        .to_frame("line")
        .with_columns(pl.col("line").str.extract_groups(rx).alias("_h"))
        .unnest("_h")
    )
    df = df.with_columns(
        pl.col("Content").is_null().alias("_unmatched"),
        pl.col("Content").fill_null(pl.col("line")).alias("Content"),
    )
    key = pl.col("Content").str.strip_chars()
    for m in masks:
        key = key.str.replace_all(m, "<*>")
    # Collapsing digit runs never changes a template (a word with a digit is a variable) but
    # turns a GB of step lines into a few thousand distinct keys.
    df = df.with_columns(key.str.replace_all(r"\d+", "0").alias("_key"))
    uniq = df.group_by("_key").len()
    keys = uniq.get_column("_key").to_list()
    tids = miner.add(keys, uniq.get_column("len").to_list())
    mapping = pl.DataFrame(
        {
            "_key": keys,
            "EventId": [miner.templates[t].event_id for t in tids],
            "EventTemplate": [miner.templates[t].text for t in tids],
        }
    )
    df = df.join(mapping, on="_key", how="left", maintain_order="left")
    return df.with_row_index("LineId", offset=first_line + 1).select(
        "LineId",
        *[n for n in names if n != "Content"],
        "Content",
        "EventId",
        "EventTemplate",
        "_unmatched",
    )
