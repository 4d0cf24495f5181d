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

import itertools
import json
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from anyware.comm.simulate.topology import Topology

#: Reweighting steps of the L1 fit and the residual below which a row counts as exact (0.5 %:
#: well under the run-to-run noise, so no row gets an unbounded weight).
IRLS_STEPS = 30
IRLS_FLOOR = 0.005

#: Feature columns, in the order of :attr:`Fitted.vector`.
COLUMNS = ("call_overhead", "alpha", "beta", "beta_large", "gamma", "gamma_large")


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
    """Messages above this use ``beta_large``/``gamma_large`` (0: never)."""
    calibration: tuple[str, ...] = ()
    """``op:algo`` pairs the fit saw (the rest are held out)."""

    def __post_init__(self) -> None:
        if self.ranks < 1:
            raise ValueError(f"ranks must be at least 1, got {self.ranks}")
        for name in (*COLUMNS, "cache_bytes"):
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
            cache_bytes=self.cache_bytes,
            intra_bw_large=bw(self.beta_large),
            copy_bw_large=bw(self.gamma_large),
        )

    def predict(self, op: str, algo: str, sizes: np.ndarray) -> np.ndarray:
        from anyware.comm.simulate import simulate

        return simulate(self.topology(), op, algo, np.asarray(sizes, dtype=np.float64))

    def save(self, path: str | Path) -> None:
        """Write a cost-model file :meth:`~anyware.comm.select.CostModel.load` accepts (its
        ``links`` are the fitted α, β, γ, so algorithm selection uses them) with the full fit
        under ``"fit"`` for :meth:`load`."""
        from anyware._io import atomic_write_json
        from anyware.comm.algorithms import Links

        links = Links(alpha_intra=self.alpha, beta_intra=self.beta, gamma=self.gamma)
        fit = {**asdict(self), "calibration": list(self.calibration)}
        atomic_write_json(path, {"links": asdict(links), "source": "fit", "fit": fit})

    @staticmethod
    def load(path: str | Path) -> Fitted:
        p = Path(path)
        try:
            raw = json.loads(p.read_text())["fit"]
            raw["calibration"] = tuple(raw.get("calibration", ()))
            return Fitted(**raw)
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(
                f"cannot read a fitted comm model from {p}: {e}; write it with "
                "`python benchmarks/comm/bench_simulate.py --fit-out FILE`"
            ) from None


def features(ranks: int, op: str, algo: str, sizes: np.ndarray, cache_bytes: float) -> np.ndarray:
    """Rows × :data:`COLUMNS`: what each parameter multiplies in the simulator's prediction,
    read off the simulator on unit machines (so the fit cannot drift from the simulator)."""
    from anyware.comm.simulate import local_bytes, simulate

    n = np.asarray(sizes, dtype=np.float64)
    rounds = simulate(Topology(ranks=ranks, intra_latency=1.0, intra_bw=1e30), op, algo, n)
    wire = simulate(Topology(ranks=ranks, intra_latency=0.0, intra_bw=1.0), op, algo, n)
    local = local_bytes(Topology(ranks=ranks), op, algo, n)
    big = n > cache_bytes if cache_bytes > 0 else np.zeros(n.shape, dtype=bool)
    zero = np.zeros_like(n)
    return np.stack(
        [
            np.ones_like(n),
            rounds,
            np.where(big, zero, wire),
            np.where(big, wire, zero),
            np.where(big, zero, local),
            np.where(big, local, zero),
        ],
        axis=1,
    )


def nnls(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Non-negative least squares by trying every active set: exact, and cheap for the six
    columns here (64 small solves); columns that are all zero stay 0."""
    k = a.shape[1]
    live = [j for j in range(k) if np.any(a[:, j])]
    best, best_x = np.inf, np.zeros(k)
    for m in range(1, len(live) + 1):
        for cols in itertools.combinations(live, m):
            x, *_ = np.linalg.lstsq(a[:, cols], b, rcond=None)
            if np.any(x < 0):
                continue
            r = float(np.sum((a[:, cols] @ x - b) ** 2))
            if r < best:
                best, best_x = r, np.zeros(k)
                best_x[list(cols)] = x
    return best_x


def fit(
    rows: Sequence[Measured],
    *,
    ranks: int,
    cache_bytes: float = 0.0,
    fixed: Mapping[str, float] | None = None,
) -> Fitted:
    """Fit on ``rows`` minimising the sum of |relative error| of the predictions.

    L1, not least squares: on a shared host a row now and then is measured during someone
    else's burst (2–5× its neighbours, even as the fastest of 9 samples), and squared errors
    let one such row drag every parameter. The L1 fit is solved as iteratively reweighted
    non-negative least squares (weights 1/|residual|), columns scaled to O(1) for the solve.

    ``fixed`` pins parameters (by :data:`COLUMNS` name) to measured values: a calibration set
    with only one size per algorithm past ``cache_bytes`` would fit the two large-message
    bandwidths exactly to two rows, any noise in them included."""
    fixed = dict(fixed or {})
    unknown = set(fixed) - set(COLUMNS)
    if unknown:
        raise ValueError(f"cannot fix {sorted(unknown)}: the fitted parameters are {COLUMNS}")
    if not rows:
        raise ValueError("fit needs at least one measured row (the calibration set is empty)")
    x = np.concatenate(
        [features(ranks, r.op, r.algo, np.array([r.bytes]), cache_bytes) for r in rows]
    )
    t = np.array([r.seconds for r in rows])
    pinned = np.array([c in fixed for c in COLUMNS])
    known = x[:, pinned] @ np.array([fixed[c] for c in COLUMNS if c in fixed])
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
    p = np.where(pinned, [fixed.get(c, 0.0) for c in COLUMNS], p / norm)
    names = tuple(sorted({f"{r.op}:{r.algo}" for r in rows}))
    return Fitted(
        ranks=ranks,
        cache_bytes=cache_bytes,
        calibration=names,
        **{c: float(v) for c, v in zip(COLUMNS, p, strict=True)},
    )
