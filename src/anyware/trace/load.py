"""Read a trace directory into one polars frame (all ranks), with errors that name the input."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anyware.trace.schema import COLUMNS, TraceError
from anyware.trace.writer import read_meta


@dataclass(frozen=True, slots=True, kw_only=True)
class Run:
    """One recorded run: its rows sorted by (rank, seq) and what it was recorded with."""

    path: Path
    frame: Any
    """polars DataFrame with the :data:`~anyware.trace.schema.COLUMNS`."""
    meta: dict[str, dict[str, Any]]
    nbytes: int
    """Size of the rows in memory (Arrow), the figure diff throughput is measured against."""
    file_bytes: int
    """Size of the Parquet files on disk."""

    @property
    def ranks(self) -> list[int]:
        return sorted(self.frame["rank"].unique().to_list())

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


def load_run(path: str | os.PathLike[str]) -> Run:
    """Load every ``rank<N>.parquet`` of a trace directory."""
    import polars as pl
    import pyarrow as pa
    import pyarrow.parquet as pq

    p = Path(path)
    meta = read_meta(p)
    tables = []
    file_bytes = 0
    for f in sorted(p.glob("rank*.parquet")):
        try:
            t = pq.read_table(f)
        except (OSError, pa.ArrowException) as e:
            raise TraceError(
                f"{f} is truncated or not Parquet ({str(e).splitlines()[0]}); re-record this rank"
            ) from None
        missing = [c for c in COLUMNS if c not in t.column_names]
        if missing:
            raise TraceError(f"{f} is not an anyware trace file: missing columns {missing}")
        tables.append(t.select(list(COLUMNS)))
        file_bytes += f.stat().st_size
    table = pa.concat_tables(tables)
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    frame = frame.with_columns(
        pl.col("phase").cast(pl.String),
        pl.col("role").cast(pl.String),
        pl.col("level").cast(pl.String),
    )
    import numpy as np

    order = frame["rank"].to_numpy().astype(np.int64) * (1 << 40) + frame["seq"].to_numpy()
    if len(order) > 1 and not bool(np.all(order[1:] > order[:-1])):  # rank10 sorts before rank2
        frame = frame.sort(["rank", "seq"])
    if frame.height == 0:
        raise TraceError(f"{p} holds no records: the traced program ran no module, op or step")
    return Run(path=p, frame=frame, meta=meta, nbytes=table.nbytes, file_bytes=file_bytes)
