"""Compare two runs record by record and find the first divergence.

**Error of one record.** With the sketches ``s = R·x`` (see :mod:`anyware.trace.stats`) the
relative L2 error is estimated as ``‖s_a − s_b‖ / (√K · max(‖a‖, ‖b‖))`` and combined with
the exact norm difference; equal checksums mean bit-identical tensors (error 0); a changed
NaN/Inf count or shape is an infinite error.

**Tolerance.** Noise-scaled, as in PyTorch's compiler accuracy check: by default the floor is
the dtype's ``rtol`` from :mod:`anyware.testing.tolerances`; with a reference pair (two fp32
runs, or fp32 against fp64) each record's tolerance is ``margin × its error in the reference
pair × u(dtype) / u(reference dtype)`` (``u`` the unit roundoff), so a bf16 run is judged by
how large fp32's own rounding error was at that very op, scaled to bf16. Which dtype a record
is judged in: when most records changed dtype between the runs (an fp32 run against a bf16
run), the lower precision of the two; when only a few did (one layer silently run in bf16),
the higher one, so the unintended cast is itself a divergence.

**First divergence.** The earliest record (step, then execution order, then rank) whose
error exceeds its tolerance while every input it was computed from agrees, and whose error
exceeds ``amplification ×`` its inputs' error (rounding noise that accumulates slowly
through a network never crosses this; a bug does). An op present only in run B whose inputs
agree (an extra multiply), or only in run A (a missing one), is reported as such.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

from anyware.trace.load import DIFF_COLUMNS, Run, load_run
from anyware.trace.schema import SKETCH, TraceError

#: Unit roundoff per dtype (2^-(mantissa bits + 1)); integers and bool compare exactly.
UNIT_ROUNDOFF = {
    "float64": 2.0**-53,
    "float32": 2.0**-24,
    "float16": 2.0**-11,
    "bfloat16": 2.0**-8,
    "float8_e4m3fn": 2.0**-4,
    "float8_e4m3fnuz": 2.0**-4,
    "float8_e5m2": 2.0**-3,
    "float8_e5m2fnuz": 2.0**-3,
}
#: Ops whose output equals their input's value (up to the dtype change they exist for).
VALUE_PRESERVING = frozenset(
    {"aten._to_copy", "aten.clone", "aten.copy_", "aten.copy", "aten.contiguous", "aten.to"}
)


@dataclass(frozen=True, slots=True, kw_only=True)
class DiffOptions:
    """How to compare."""

    mapping: dict[str, str] | None = None
    """Renamed modules: ``{"path in A": "path in B"}``."""
    calibrate: tuple[str, str] | None = None
    """A reference pair of trace directories whose differences are pure rounding noise."""
    margin: float = 3.0
    """Allowed multiple of the reference pair's error (PyTorch's accuracy check uses 2–3×)."""
    amplification: float = 4.0
    """An op must raise its inputs' error by more than this to be a first divergence."""
    precision: str = "auto"
    """Dtype a record is judged in: ``auto``, ``higher`` or ``lower`` of the two runs'."""

    def __post_init__(self) -> None:
        if self.precision not in ("auto", "higher", "lower"):
            raise ValueError(f"precision must be auto, higher or lower, got {self.precision!r}")
        if self.margin <= 0 or self.amplification < 1:
            raise ValueError("margin must be > 0 and amplification >= 1")


@dataclass(kw_only=True)
class DiffResult:
    first_divergence: dict[str, Any] | None
    compared: int
    unmatched: int
    divergent: int
    structure_differs_at: str | None
    precision_change: bool
    calibrated: bool
    modules: list[dict[str, Any]]
    worst: list[dict[str, Any]]
    nonfinite: dict[str, dict[str, Any] | None]
    ranks: list[int]
    records: int
    bytes: int
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "first_divergence": self.first_divergence,
            "compared": self.compared,
            "unmatched": self.unmatched,
            "divergent": self.divergent,
            "structure_differs_at": self.structure_differs_at,
            "precision_change": self.precision_change,
            "calibrated": self.calibrated,
            "ranks": self.ranks,
            "nonfinite": self.nonfinite,
            "modules": self.modules,
            "worst": self.worst,
            "records": self.records,
            "bytes": self.bytes,
            "seconds": round(self.seconds, 4),
            "notes": self.notes,
        }


DTYPES = tuple(UNIT_ROUNDOFF)
_CODE = {d: i for i, d in enumerate(DTYPES)}
_U_BY_CODE = [UNIT_ROUNDOFF[d] for d in DTYPES]


def _floor(dtype: str) -> float:
    from anyware.testing.tolerances import tolerance

    if dtype not in UNIT_ROUNDOFF:
        return 0.0
    try:
        return tolerance(dtype).rtol
    except KeyError:
        return 2 * UNIT_ROUNDOFF[dtype]


@dataclass(kw_only=True)
class _Side:
    """numpy columns of one run."""

    df: Any
    rank: Any
    seq: Any
    step: Any
    sk: Any
    l2: Any
    mn: Any
    mx: Any
    mean: Any
    nan: Any
    inf: Any
    ck: Any
    code: Any
    """dtype as an index into :data:`DTYPES` (``len(DTYPES)``: integer, bool, other)."""
    u: Any
    """unit roundoff of the row's dtype (0 for integers and bool)."""
    key: Any
    off: Any
    flat: Any
    shape: Any
    is_out: Any
    vp: Any
    is_copy: Any
    numel: Any

    @classmethod
    def of(cls, df: Any, run: Run | None = None) -> _Side:
        """numpy views of ``df`` (a run's frame, or B's aligned frame: same rows in the same
        order); nested columns the frame lacks come from ``run.arrays``."""
        import numpy as np
        import polars as pl

        # Derived columns in one multi-threaded polars pass; the rest are zero-copy views.
        # The sketch stays float32 (as stored): ``errors`` widens only the rows it reads.
        d = df.select(
            pl.col("dtype").replace_strict(_CODE, default=len(DTYPES), return_dtype=pl.Int64),
            (pl.col("rank").cast(pl.Int64) * (1 << 40) + pl.col("seq")).alias("key"),
            pl.col("shape").hash().alias("shape"),
            (pl.col("role") == "out").alias("is_out"),
            pl.col("op").is_in(list(VALUE_PRESERVING)).alias("vp"),
            (pl.col("op") == "aten.copy_").alias("is_copy"),
        )
        code = d["dtype"].to_numpy()
        arrays = run.arrays if run is not None else {}
        if "sketch" in arrays:
            sketch, off, flat = arrays["sketch"], arrays["in_off"], arrays["in_flat"]
        else:
            sketch = np.asarray(df["sketch"].to_numpy()).reshape(-1, SKETCH)
            n_in = df["inputs"].list.len().fill_null(0).cast(pl.Int64).to_numpy()
            off = np.concatenate([[0], np.cumsum(n_in)]).astype(np.int64)
            flat = df["inputs"].explode().drop_nulls().to_numpy()
        return cls(
            df=df,
            rank=df["rank"].to_numpy(),
            seq=df["seq"].to_numpy(),
            step=df["step"].to_numpy(),
            sk=sketch,
            l2=df["l2"].to_numpy(),
            mn=df["min"].to_numpy(),
            mx=df["max"].to_numpy(),
            mean=df["mean"].to_numpy(),
            nan=df["nan"].to_numpy(),
            inf=df["inf"].to_numpy(),
            ck=df["checksum"].to_numpy(),
            code=code,
            u=np.append(_U_BY_CODE, 0.0)[code],
            key=d["key"].to_numpy(),
            off=off,
            flat=flat,
            shape=d["shape"].to_numpy(),
            is_out=d["is_out"].to_numpy(),
            vp=d["vp"].to_numpy(),
            is_copy=d["is_copy"].to_numpy(),
            numel=df["numel"].to_numpy(),
        )

    def row_of(self, rank: int, seq: int) -> int:
        import numpy as np

        want = int(rank) * (1 << 40) + int(seq)
        i = int(np.searchsorted(self.key, want))
        return i if i < len(self.key) and self.key[i] == want else -1

    def inputs_of(self, r: int) -> list[int]:
        """The ``seq`` of the rows that produced row ``r``'s inputs."""
        return [int(s) for s in self.flat[self.off[r] : self.off[r + 1]]]


def errors(a: _Side, ia: Any, b: _Side, ib: Any) -> tuple[Any, Any]:
    """Relative error estimate and cosine estimate for row pairs ``(ia[k], ib[k])``.

    Bit-identical pairs (equal checksum, norm and extremes) are settled first and only the
    others touch the sketches: in a typical diff most records are identical up to the fault.
    """
    import numpy as np

    la, lb = a.l2[ia], b.l2[ib]
    same = (a.ck[ia] == b.ck[ib]) & (la == lb) & (a.mn[ia] == b.mn[ib]) & (a.mx[ia] == b.mx[ib])
    rel = np.zeros(len(ia))
    cos = np.ones(len(ia))
    k = np.nonzero(~same)[0]
    if len(k):
        sa = a.sk[ia[k]].astype(np.float64)
        sb = b.sk[ib[k]].astype(np.float64)
        lak, lbk = la[k], lb[k]
        denom = np.maximum(lak, lbk)
        diff = sa - sb
        with np.errstate(invalid="ignore", divide="ignore"):
            d = np.sqrt(np.einsum("ij,ij->i", diff, diff) / SKETCH)
            rk = np.where(denom > 0, np.maximum(d, np.abs(lak - lbk)) / denom, 0.0)
            na = np.sqrt(np.einsum("ij,ij->i", sa, sa))
            nb = np.sqrt(np.einsum("ij,ij->i", sb, sb))
            ck = np.einsum("ij,ij->i", sa, sb) / (na * nb)
        rel[k] = rk
        cos[k] = np.where(denom > 0, ck, 1.0)
    bad_nf = (a.nan[ia] != b.nan[ib]) | (a.inf[ia] != b.inf[ib]) | (a.shape[ia] != b.shape[ib])
    nonfinite_both = (a.nan[ia] + a.inf[ia]) > 0
    rel = np.where(bad_nf, np.inf, np.where(nonfinite_both & ~bad_nf & ~np.isfinite(rel), 0.0, rel))
    return rel, cos


def diff_runs(
    run_a: str | os.PathLike[str] | Run, run_b: str | os.PathLike[str] | Run, **kw: Any
) -> DiffResult:
    """Compare two trace directories (or loaded :class:`Run` s)."""
    import time

    opts = DiffOptions(**kw)
    t0 = time.perf_counter()
    ra, rb = _load_pair(run_a, run_b)
    calib = None
    if opts.calibrate is not None:
        calib = _calibration(opts)
    from anyware.trace.search import analyse

    res = analyse(ra, rb, opts, calib)
    res.seconds = time.perf_counter() - t0
    return res


def _load_pair(
    run_a: str | os.PathLike[str] | Run, run_b: str | os.PathLike[str] | Run
) -> tuple[Run, Run]:
    """Both runs at once, on two threads: Parquet decoding releases the GIL, and each load
    has single-threaded stretches (footers, the Arrow→numpy step) the other fills."""
    from concurrent.futures import ThreadPoolExecutor

    def one(r: str | os.PathLike[str] | Run) -> Run:
        return r if isinstance(r, Run) else load_run(r, columns=DIFF_COLUMNS)

    with ThreadPoolExecutor(2) as ex:
        fa, fb = ex.submit(one, run_a), ex.submit(one, run_b)
        return fa.result(), fb.result()


def _calibration(opts: DiffOptions) -> Any:
    """Per (rank, key): the reference pair's error and the unit roundoff it was judged in."""
    import numpy as np
    import polars as pl

    from anyware.trace.align import align, key_hash

    assert opts.calibrate is not None
    ca, cb = _load_pair(*opts.calibrate)
    b_df, al = align(ca.frame, cb.frame, opts.mapping)
    a, b = _Side.of(ca.frame, ca), _Side.of(b_df, cb)
    m = np.nonzero(al.a_index >= 0)[0]
    if len(m) == 0:
        raise TraceError(
            f"calibration runs {opts.calibrate[0]} and {opts.calibrate[1]} share no records"
        )
    rel, _ = errors(a, al.a_index[m], b, m)
    ua = a.u[al.a_index[m]]
    ub = b.u[m]
    return pl.DataFrame(
        {
            "rank": b.rank[m],
            "h": b_df.select(key_hash())[:, 0].to_numpy()[m],
            "cal_err": np.where(np.isfinite(rel), rel, np.nan),
            "cal_u": np.maximum(ua, ub),
        }
    )
