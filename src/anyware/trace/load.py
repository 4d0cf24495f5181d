"""Read a trace directory into one polars frame (all ranks), with errors that name the input."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anyware.trace.schema import COLUMNS, TraceError, make_key
from anyware.trace.writer import read_meta


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One recorded run: its rows sorted by (rank, seq) and what it was recorded with."""

    path: Path
    frame: Any
    """polars DataFrame with the :data:`~anyware.trace.schema.COLUMNS`."""
    meta: dict[str, dict[str, Any]]
    nbytes: int
    """Size in memory of the columns loaded."""
    file_bytes: int
    """Size of the Parquet files on disk."""
    arrays: dict[str, Any] = field(default_factory=dict)
    """Nested columns read straight into numpy when ``frame`` lacks them: ``sketch``
    ``(rows, SKETCH)`` float32, ``in_off`` (rows + 1) and ``in_flat``, the ``inputs`` lists as
    offsets and values."""

    @property
    def ranks(self) -> list[int]:
        return sorted(self.frame["rank"].unique().to_list())

    def location(self, rank: int, seq: int) -> str:
        """``file:line`` of one row, read from its rank's file when the frame lacks it."""
        import polars as pl

        if "location" in self.frame.columns:
            hit = self.frame.filter((pl.col("rank") == rank) & (pl.col("seq") == seq))
        else:
            hit = (
                pl.scan_parquet(self.path / f"rank{rank}.parquet")
                .filter(pl.col("seq") == seq)
                .select("location")
                .collect()
            )
        return str(hit["location"][0]) if hit.height else ""

    def tensors(self, rank: int) -> dict[str, Any]:
        """Whole tensors saved with ``--tensors`` (empty when none were)."""
        p = self.path / f"rank{rank}.tensors.pt"
        if not p.exists():
            return {}
        import torch

        try:
            return dict(torch.load(p, map_location="cpu", weights_only=True))
        except Exception as e:
            raise TraceError(
                f"{p} is not a readable tensor file ({e}); re-record the trace"
            ) from None


#: What the diff reads into its frame. ``key`` is unique per row (a third of the decoding time)
#: and is rebuilt from its parts (:func:`row_key`); ``location`` is fetched for the few rows a
#: report names (:meth:`Run.location`); ``call`` is not used; the nested ``sketch`` and
#: ``inputs`` go straight from Arrow to numpy (:attr:`Run.arrays`): polars decodes them at
#: half the speed, and they were 60 % of the read.
DIFF_COLUMNS = tuple(c for c in COLUMNS if c not in ("key", "location", "call", "sketch", "inputs"))
_NESTED = ("sketch", "inputs")


def row_key(row: dict[str, Any]) -> str:
    """The stable key of a row read with or without its ``key`` column."""
    return make_key(
        int(row["step"]),
        row["phase"],
        row["module"],
        row["op"],
        int(row["call_index"]),
        row["slot"],
    )


def load_run(path: str | os.PathLike[str], *, columns: tuple[str, ...] = COLUMNS) -> Run:
    """Load every ``rank<N>.parquet`` of a trace directory (``columns`` of it, in one
    multi-threaded, memory-mapped read)."""
    import numpy as np
    import polars as pl

    p = Path(path)
    meta = read_meta(p)
    files = sorted(p.glob("rank*.parquet"))
    file_bytes = 0
    for f in files:
        schema = _schema_of(f)
        missing = [c for c in COLUMNS if c not in schema]
        if missing:
            raise TraceError(f"{f} is not an anyware trace file: missing columns {missing}")
        file_bytes += f.stat().st_size
    try:
        frame = pl.read_parquet(files, columns=list(columns))
    except Exception:  # polars names no file: find the one that does not read
        for f in files:
            try:
                pl.read_parquet(f, columns=list(columns))
            except Exception as e:
                raise TraceError(
                    f"{f} is truncated or not Parquet ({str(e).splitlines()[0]}); "
                    "re-record this rank"
                ) from None
        raise
    cats = [c for c, t in frame.schema.items() if t == pl.Categorical or t == pl.Enum]
    if cats and columns == COLUMNS:
        # A whole trace reads as plain strings. The diff keeps phase, role and level (written
        # as Arrow dictionaries) categorical: it only compares, hashes and groups them, and the
        # cast took a tenth of its time.
        frame = frame.with_columns(pl.col(c).cast(pl.String) for c in cats)
    frame = frame.rechunk()  # one chunk per column: every to_numpy below is then a view
    nested = [c for c in _NESTED if c not in columns]
    table = _read_nested(files, nested) if nested else None
    order = frame["rank"].to_numpy().astype(np.int64) * (1 << 40) + frame["seq"].to_numpy()
    if len(order) > 1 and not bool(np.all(order[1:] > order[:-1])):  # rank10 sorts before rank2
        perm = np.argsort(order, kind="stable")
        frame = frame[perm]
        if table is not None:
            table = table.take(perm)
    if frame.height == 0:
        raise TraceError(f"{p} holds no records: the traced program ran no module, op or step")
    arrays = _to_numpy(table) if table is not None else {}
    nbytes = int(frame.estimated_size()) + sum(int(v.nbytes) for v in arrays.values())
    return Run(path=p, frame=frame, meta=meta, nbytes=nbytes, file_bytes=file_bytes, arrays=arrays)


def _read_nested(files: list[Path], columns: list[str]) -> Any:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        return pq.read_table(files, columns=columns, memory_map=True)
    except (OSError, pa.ArrowException) as e:
        raise TraceError(
            f"{files[0].parent} holds a truncated or corrupt Parquet file "
            f"({str(e).splitlines()[0]}); re-record the trace"
        ) from None


def _to_numpy(table: Any) -> dict[str, Any]:
    import numpy as np

    from anyware.trace.schema import SKETCH

    out: dict[str, Any] = {}
    if "sketch" in table.column_names:
        sk = table.column("sketch").combine_chunks()
        out["sketch"] = sk.flatten().to_numpy().reshape(-1, SKETCH)
    if "inputs" in table.column_names:
        ins = table.column("inputs").combine_chunks()
        off = ins.offsets.to_numpy().astype(np.int64)
        out["in_flat"] = ins.values.to_numpy()[off[0] : off[-1]]
        out["in_off"] = off - off[0]
    return out


def _schema_of(f: Path) -> Any:
    import polars as pl

    try:
        return pl.read_parquet_schema(f)
    except Exception as e:
        raise TraceError(
            f"{f} is truncated or not Parquet ({str(e).splitlines()[0]}); re-record this rank"
        ) from None
