"""Fitting the simulator's machine to measured runs: the parameters of a :class:`Topology`
(per-round cost α, β, γ, per-call overhead o, and β, γ past the cache) that best explain a
*calibration set* of measured rows, so the rows it did not see can be predicted honestly.

Why a fit and not the ping-pong: a bare ping-pong measures the transport, not our schedule
executor. Each round of a schedule also posts isend/irecv, waits, and walks Python bookkeeping,
which on this host costs more than the ping-pong's own latency (1 KiB ring allreduce over gloo:
870 µs measured, 450 µs predicted from ping-pong α). The fitted α is that *effective* per-round
cost; the model's form is unchanged, so the simulator stays the closed forms' twin.

Because a round on one link class is linear in the parameters —
``o + rounds·α + wire_bytes·β + local_bytes·γ`` — the simulator itself supplies the features
(evaluated on unit machines), and a non-negative least-squares fit on *relative* errors gives
the parameters: the 10 % target is relative, and absolute residuals would let the 16 MiB rows
(milliseconds) drown the 1 KiB rows (microseconds).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from anyware.comm.simulate.topology import Topology

#: Reweighting steps of the L1 fit and the residual below which a row counts as exact (0.5 %:
#: well under the run-to-run noise, so no row gets an unbounded weight).
IRLS_STEPS = 30
IRLS_FLOOR = 0.005

#: Feature columns, in the order of :attr:`Fitted.vector`.
COLUMNS = (
    "call_overhead",
    "alpha",
    "copy_op",
    "reduce_op",
    "beta_inner",
    "beta",
    "beta_large",
    "gamma_inner",
    "gamma",
    "gamma_large",
)

#: Cache sizes the fit tries when none is given (half-octave steps): the outer level 2 MiB …
#: 256 MiB, the inner one none or 128 KiB … 4 MiB, always smaller than the outer. The blend is
#: not linear in the sizes, so each pair gets its own linear fit and the calibration rows
#: alone pick the best.
CACHE_GRID = tuple(float(2 ** (k / 2)) for k in range(42, 57))
INNER_GRID = (0.0, *(float(2 ** (k / 2)) for k in range(34, 45)))


@dataclass(frozen=True, slots=True, kw_only=True)
class Measured:
    """One measured collective: seconds per call for ``bytes`` with ``algo`` on ``ranks``."""

    op: str
    algo: str
    bytes: int
    seconds: float

    def __post_init__(self) -> None:
        if self.bytes < 0 or not self.seconds > 0:
            raise ValueError(
                f"a measured row needs bytes >= 0 and seconds > 0, got {self.bytes} B, "
                f"{self.seconds} s ({self.op}:{self.algo})"
            )


@dataclass(frozen=True, slots=True, kw_only=True)
class CopySweep:
    """One copy-sweep row (:mod:`.calibrate`): ``copies`` local copies of ``bytes`` each,
    ``seconds`` per run of that schedule (the slower rank's fastest sample)."""

    copies: int
    bytes: int
    seconds: float

    def __post_init__(self) -> None:
        if self.copies < 1 or self.bytes < 0 or not self.seconds > 0:
            raise ValueError(
                f"a copy-sweep row needs copies >= 1, bytes >= 0 and seconds > 0, got "
                f"{self.copies} × {self.bytes} B in {self.seconds} s"
            )

    def features(self, cache_bytes: float, inner_cache_bytes: float = 0.0) -> np.ndarray:
        """The row's :data:`COLUMNS`: k copy ops and k·m copied bytes, whose working set is
        2·k·m (source and destination)."""
        from anyware.comm.simulate import level_weights

        moved = float(self.copies * self.bytes)
        w = level_weights(inner_cache_bytes, cache_bytes, np.array([2 * moved]))
        w_in, w_mid, w_out = (float(x[0]) for x in w)
        return np.array([0, 0, self.copies, 0, 0, 0, 0, w_in * moved, w_mid * moved, w_out * moved])


@dataclass(frozen=True, slots=True, kw_only=True)
class Fitted:
    """A machine fitted to measured rows; all times in seconds, all β/γ in seconds per byte."""

    ranks: int
    call_overhead: float
    alpha: float
    """Effective cost of one schedule round: transport latency plus executor overhead."""
    beta: float
    beta_large: float
    gamma: float
    gamma_large: float
    cache_bytes: float
    """Working-set size where the past-cache ``beta_large``/``gamma_large`` weigh half (0:
    never; see :attr:`Topology.cache_bytes`)."""
    inner_cache_bytes: float = 0.0
    """The inner cache level (0: none; see :attr:`Topology.inner_cache_bytes`)."""
    beta_inner: float = 0.0
    """β for working sets well inside the inner cache."""
    gamma_inner: float = 0.0
    """γ for working sets well inside the inner cache."""
    copy_op: float = 0.0
    """Seconds per local copy op (fixed part; the bytes are γ's)."""
    reduce_op: float = 0.0
    """Seconds per reducing receive (fixed part)."""
    calibration: tuple[str, ...] = ()
    """``op:algo`` pairs the fit saw (the rest are held out)."""
    own_overhead: tuple[tuple[str, float], ...] = ()
    """(collective, seconds) for collectives fitted with their own call overhead: what their
    API wrapper costs on top of ``call_overhead`` (≥ 0, as every fitted parameter)."""

    def __post_init__(self) -> None:
        if self.ranks < 1:
            raise ValueError(f"ranks must be at least 1, got {self.ranks}")
        for name in (*COLUMNS, "cache_bytes", "inner_cache_bytes"):
            v = getattr(self, name)
            if not (v >= 0 and np.isfinite(v)):
                raise ValueError(f"fitted {name} must be finite and >= 0, got {v}")

    @property
    def vector(self) -> np.ndarray:
        return np.array([getattr(self, c) for c in COLUMNS])

    def topology(self) -> Topology:
        """The simulator's machine with these parameters (a zero β means "free", so it is
        kept tiny rather than infinite: the topology needs a positive bandwidth)."""

        def bw(x: float) -> float:
            return 1 / x if x > 0 else 1e30

        return Topology(
            ranks=self.ranks,
            intra_latency=self.alpha,
            intra_bw=bw(self.beta),
            copy_bw=bw(self.gamma),
            call_overhead=self.call_overhead,
            copy_op_cost=self.copy_op,
            reduce_op_cost=self.reduce_op,
            cache_bytes=self.cache_bytes,
            intra_bw_large=bw(self.beta_large),
            copy_bw_large=bw(self.gamma_large),
            inner_cache_bytes=self.inner_cache_bytes,
            intra_bw_inner=bw(self.beta_inner),
            copy_bw_inner=bw(self.gamma_inner),
        )

    def predict(self, op: str, algo: str, sizes: np.ndarray) -> np.ndarray:
        from anyware.comm.simulate import simulate

        t = simulate(self.topology(), op, algo, np.asarray(sizes, dtype=np.float64))
        return t + dict(self.own_overhead).get(op, 0.0)

    def save(self, path: str | Path) -> None:
        """Write a cost-model file :meth:`~anyware.comm.select.CostModel.load` accepts (its
        ``links`` are the fitted α, β, γ, so algorithm selection uses them) with the full fit
        under ``"fit"`` for :meth:`load`."""
        from anyware._io import atomic_write_json
        from anyware.comm.algorithms import Links

        links = Links(alpha_intra=self.alpha, beta_intra=self.beta, gamma=self.gamma)
        fit = {
            **asdict(self),
            "calibration": list(self.calibration),
            "own_overhead": [list(x) for x in self.own_overhead],
        }
        atomic_write_json(path, {"links": asdict(links), "source": "fit", "fit": fit})

    @staticmethod
    def load(path: str | Path) -> Fitted:
        p = Path(path)
        try:
            raw = json.loads(p.read_text())["fit"]
            raw["calibration"] = tuple(raw.get("calibration", ()))
            raw["own_overhead"] = tuple((str(a), float(b)) for a, b in raw.get("own_overhead", ()))
            return Fitted(**raw)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(
                f"cannot read a fitted comm model from {p}: {e}; write it with "
                "`python benchmarks/comm/bench_simulate.py --fit-out FILE`"
            ) from None


def features(
    ranks: int,
    op: str,
    algo: str,
    sizes: np.ndarray,
    cache_bytes: float,
    inner_cache_bytes: float = 0.0,
) -> np.ndarray:
    """Rows × :data:`COLUMNS`: what each parameter multiplies in the simulator's prediction,
    read off the simulator on unit machines and its own op counts and cache weights (so the
    fit cannot drift from the simulator)."""
    return _columns(_parts(ranks, op, algo, sizes), cache_bytes, inner_cache_bytes)


def _parts(ranks: int, op: str, algo: str, sizes: np.ndarray) -> tuple[np.ndarray, ...]:
    """What does not depend on the cache sizes: rounds, wire bytes, local bytes, copy ops,
    reduce ops and working set per size."""
    from anyware.comm.simulate import local_bytes, simulate, stats

    n = np.asarray(sizes, dtype=np.float64)
    flat = Topology(ranks=ranks)
    rounds = simulate(Topology(ranks=ranks, intra_latency=1.0, intra_bw=1e30), op, algo, n)
    wire = simulate(Topology(ranks=ranks, intra_latency=0.0, intra_bw=1.0), op, algo, n)
    local = local_bytes(flat, op, algo, n)
    st = stats(flat, op, algo)
    one = np.ones_like(n)
    return rounds, wire, local, st.copies * one, st.reduces * one, st.working_set * n


def _columns(parts: tuple[np.ndarray, ...], cache: float, inner: float) -> np.ndarray:
    from anyware.comm.simulate import level_weights

    rounds, wire, local, copies, reduces, working = parts
    w_in, w_mid, w_out = level_weights(inner, cache, working)
    cols = [np.ones_like(rounds), rounds, copies, reduces]
    cols += [w * wire for w in (w_in, w_mid, w_out)] + [w * local for w in (w_in, w_mid, w_out)]
    return np.stack(cols, axis=1)


def nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Non-negative least squares, min ‖a·x − b‖ with x ≥ 0, by Lawson and Hanson's active
    set method (exact in finitely many steps): grow the set of free columns by the one whose
    gradient most wants to rise, solve on the free set, and step back to the boundary while a
    free variable would go negative. Columns that are all zero stay 0."""
    n = a.shape[1]
    x = np.zeros(n)
    free = np.zeros(n, dtype=bool)
    grad = a.T @ b
    tol = 1e-12 * max(1.0, float(np.abs(grad).max(initial=0.0)))
    for _ in range(3 * n):
        want = np.where(free, -np.inf, grad)
        j = int(np.argmax(want))
        if want[j] <= tol:
            break
        free[j] = True
        while True:
            z = np.zeros(n)
            z[free], *_ = np.linalg.lstsq(a[:, free], b, rcond=None)
            if np.all(z[free] > 0):
                x = z
                break
            neg = free & (z <= 0)
            step = float(np.min(x[neg] / (x[neg] - z[neg])))
            x = x + step * (z - x)
            free &= x > tol
            x[~free] = 0.0
            if not free.any():
                break
        grad = a.T @ (b - a @ x)
    return x


def fit(
    rows: Sequence[Measured],
    *,
    ranks: int,
    sweeps: Sequence[CopySweep] = (),
    cache_bytes: float | None = None,
    inner_cache_bytes: float | None = None,
    fixed: Mapping[str, float] | None = None,
    own_overhead: Collection[str] = (),
) -> Fitted:
    """Fit on ``rows`` (and the copy ``sweeps``) minimising the sum of |relative error|.

    L1, not least squares: on a shared host a row now and then is measured during someone
    else's burst (2–5× its neighbours, even as the fastest of 9 samples), and squared errors
    let one such row drag every parameter. The L1 fit is solved as iteratively reweighted
    non-negative least squares (weights 1/|residual|), columns scaled to O(1) for the solve.

    The sweep rows get one more column of their own, their run's fixed cost (a nuisance:
    only their slopes in copies and bytes inform the model), and so do the rows of each
    collective named in ``own_overhead``: a collective whose API wrapper costs differently
    (here reduce-scatter's: 27 µs for one round where allgather takes 17 µs) then informs
    the byte and cache terms without skewing the shared o, α and op costs. A cache size given as None is
    chosen from :data:`CACHE_GRID` / :data:`INNER_GRID`: the pair whose fit explains the given
    rows best (those rows, nothing else). ``fixed`` pins parameters (by :data:`COLUMNS`
    name)."""
    fixed = dict(fixed or {})
    unknown = set(fixed) - set(COLUMNS)
    if unknown:
        raise ValueError(f"cannot fix {sorted(unknown)}: the fitted parameters are {COLUMNS}")
    if not rows:
        raise ValueError("fit needs at least one measured row (the calibration set is empty)")
    t = np.array([r.seconds for r in rows] + [s.seconds for s in sweeps])
    groups = [[r.op == op for r in rows] + [False] * len(sweeps) for op in sorted(own_overhead)]
    groups.append([False] * len(rows) + [True] * len(sweeps))
    nuisance = np.array(groups, dtype=np.float64).T
    nuisance = nuisance[:, nuisance.any(axis=0)]
    parts = [_parts(ranks, r.op, r.algo, np.array([r.bytes])) for r in rows]
    outers = CACHE_GRID if cache_bytes is None else (cache_bytes,)
    inners = INNER_GRID if inner_cache_bytes is None else (inner_cache_bytes,)
    best: tuple[float, float, float, np.ndarray] | None = None
    for cache in outers:
        for inner in inners:
            if inner and cache and inner >= cache:
                continue
            x = np.concatenate(
                [_columns(q, cache, inner) for q in parts]
                + [s.features(cache, inner)[None, :] for s in sweeps]
            )
            x = np.hstack([x, nuisance])
            p = _l1(x, t, fixed)
            loss = float(np.abs(x @ p / t - 1).sum())
            if best is None or loss < best[0] - 1e-12:
                best = (loss, cache, inner, p)
    assert best is not None
    _, cache, inner, p = best
    ops = sorted(own_overhead)
    present = [op for op in ops if any(r.op == op for r in rows)]
    own = tuple((op, float(v)) for op, v in zip(present, p[len(COLUMNS) :], strict=False))
    names = tuple(sorted({f"{r.op}:{r.algo}" for r in rows}))
    return Fitted(
        ranks=ranks,
        cache_bytes=cache,
        inner_cache_bytes=inner,
        calibration=names + (("copy-sweep",) if sweeps else ()),
        own_overhead=own,
        **{c: float(v) for c, v in zip(COLUMNS, p[: len(COLUMNS)], strict=True)},
    )


def _l1(x: np.ndarray, t: np.ndarray, fixed: Mapping[str, float]) -> np.ndarray:
    """Parameters minimising Σ|x·p / t − 1| with p ≥ 0 and the ``fixed`` ones pinned."""
    names = COLUMNS + ("nuisance",) * (x.shape[1] - len(COLUMNS))
    pinned = np.array([c in fixed for c in names])
    known = x[:, pinned] @ np.array([fixed[c] for c in names if c in fixed])
    x = np.where(pinned, 0.0, x)  # a pinned column's time is known: fit the rest
    norm = np.where(x.max(axis=0) > 0, x.max(axis=0), 1.0)
    a = (x / norm) / t[:, None]  # each row divided by its measured time: relative residuals
    b = 1 - known / t
    w = np.ones_like(t)
    p = np.zeros(x.shape[1])
    for _ in range(IRLS_STEPS):
        sw = np.sqrt(w)
        p = nnls(a * sw[:, None], b * sw)
        w = 1 / np.maximum(np.abs(a @ p - b), IRLS_FLOOR)
    return np.where(pinned, [fixed.get(c, 0.0) for c in names], p / norm)
