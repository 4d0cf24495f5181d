"""Fitting the simulator to measured rows: the fit recovers a known machine from rows it
generated, predicts held-out algorithms with it, and round-trips through the cost-model file
that algorithm selection loads."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from anyware.comm.select import CostModel
from anyware.comm.simulate import simulate
from anyware.comm.simulate.calibrate import SWEEP_COPIES, SWEEP_SIZES
from anyware.comm.simulate.fit import (
    CACHE_GRID,
    COLUMNS,
    CopySweep,
    Fitted,
    Measured,
    features,
    fit,
    nnls,
)

SIZES = (8, 1 << 10, 16 << 10, 64 << 10, 256 << 10, 1 << 20, 4 << 20, 16 << 20)
CACHE = float(4 << 20)
TRUE = Fitted(
    ranks=2,
    call_overhead=40e-6,
    alpha=180e-6,
    beta=1 / 2.5e9,
    beta_large=1 / 1.2e9,
    gamma=1 / 20e9,
    gamma_large=1 / 6e9,
    cache_bytes=CACHE,
    copy_op=6e-6,
    reduce_op=30e-6,
)
CAL = (
    ("allreduce", "ring"),
    ("alltoall", "pairwise"),
    ("reduce_scatter", "ring"),
    ("allgather", "ring"),
)
HELD = (
    ("allreduce", "recursive_doubling"),
    ("allreduce", "halving_doubling"),
    ("alltoall", "bruck"),
)


def _rows(model: Fitted, pairs: tuple[tuple[str, str], ...]) -> list[Measured]:
    return [
        Measured(
            op=op, algo=algo, bytes=n, seconds=float(model.predict(op, algo, np.array([n]))[0])
        )
        for op, algo in pairs
        for n in SIZES
    ]


def _sweeps(model: Fitted, fixed_cost: float = 7e-6) -> list[CopySweep]:
    """The copy sweep ``model`` would measure, with its own per-run cost ``fixed_cost``."""
    out = []
    for k in SWEEP_COPIES:
        for m in SWEEP_SIZES:
            row = CopySweep(copies=k, bytes=m, seconds=1.0)
            t = fixed_cost + float(row.features(model.cache_bytes) @ model.vector)
            out.append(CopySweep(copies=k, bytes=m, seconds=t))
    return out


def test_prediction_is_linear_in_the_fitted_parameters() -> None:
    # The fit's premise: simulate(topology(params)) == features @ params, for every algorithm.
    for op, algo in CAL + HELD:
        n = np.array(SIZES, dtype=np.float64)
        direct = TRUE.predict(op, algo, n)
        linear = features(2, op, algo, n, CACHE) @ TRUE.vector
        np.testing.assert_allclose(direct, linear, rtol=1e-12)


def test_fit_recovers_the_machine_and_predicts_held_out_algorithms() -> None:
    got = fit(_rows(TRUE, CAL), ranks=2, sweeps=_sweeps(TRUE), cache_bytes=CACHE)
    assert got.calibration == (
        "allgather:ring",
        "allreduce:ring",
        "alltoall:pairwise",
        "reduce_scatter:ring",
        "copy-sweep",
    )
    np.testing.assert_allclose(got.vector, TRUE.vector, rtol=1e-6)
    for op, algo in HELD:
        n = np.array(SIZES, dtype=np.float64)
        np.testing.assert_allclose(got.predict(op, algo, n), TRUE.predict(op, algo, n), rtol=1e-6)


def test_without_the_copy_sweep_the_per_op_costs_are_not_identified() -> None:
    """At 2 ranks the calibration collectives see o, α, copy op c and reduce op r only as
    o+2α+r, o+α+c and o+α+r+2c: moving along (o, α, c, r) += t·(−3, 2, 1, −1) changes no
    calibration row but changes Bruck (o+α+6c) and recursive doubling (o+α+r). This is why
    the fit takes the copy sweep."""
    t = 2e-6
    other = Fitted(
        **{  # type: ignore[arg-type]
            **_kw(TRUE),
            "call_overhead": TRUE.call_overhead - 3 * t,
            "alpha": TRUE.alpha + 2 * t,
            "copy_op": TRUE.copy_op + t,
            "reduce_op": TRUE.reduce_op - t,
        }
    )
    n = np.array(SIZES, dtype=np.float64)
    for op, algo in CAL:
        np.testing.assert_allclose(other.predict(op, algo, n), TRUE.predict(op, algo, n), rtol=1e-9)
    bruck = other.predict("alltoall", "bruck", n[:1]) - TRUE.predict("alltoall", "bruck", n[:1])
    assert bruck[0] == pytest.approx(5 * t, rel=1e-6)
    rd = other.predict("allreduce", "recursive_doubling", n[:1])
    assert rd[0] - TRUE.predict("allreduce", "recursive_doubling", n[:1])[0] == pytest.approx(
        -2 * t
    )
    # With the sweep the fit tells the two machines apart.
    got = fit(_rows(other, CAL), ranks=2, sweeps=_sweeps(other), cache_bytes=CACHE)
    assert got.copy_op == pytest.approx(other.copy_op, rel=1e-6)


def test_a_collective_with_its_own_overhead_informs_only_the_byte_terms() -> None:
    """Reduce-scatter's API wrapper costs more than allreduce's: fitted with its own fixed
    cost, its extra 20 µs does not leak into the shared o, α and op costs."""
    rows = [
        Measured(op=r.op, algo=r.algo, bytes=r.bytes, seconds=r.seconds + 20e-6)
        if r.op == "reduce_scatter"
        else r
        for r in _rows(TRUE, CAL)
    ]
    got = fit(
        rows,
        ranks=2,
        sweeps=_sweeps(TRUE),
        cache_bytes=CACHE,
        fixed={"reduce_op": TRUE.reduce_op},
        own_overhead=("reduce_scatter", "allgather"),
    )
    np.testing.assert_allclose(got.vector, TRUE.vector, rtol=1e-6)
    own = dict(got.own_overhead)
    assert own["reduce_scatter"] == pytest.approx(20e-6, rel=1e-6)
    assert own["allgather"] == pytest.approx(0.0, abs=1e-12)
    for r in rows:  # the fitted model predicts every calibration row, own overheads included
        pred = got.predict(r.op, r.algo, np.array([r.bytes]))[0]
        assert pred == pytest.approx(r.seconds, rel=1e-6), r


def test_the_cache_size_is_chosen_on_the_calibration_rows() -> None:
    assert CACHE in CACHE_GRID
    got = fit(_rows(TRUE, CAL), ranks=2, sweeps=_sweeps(TRUE), inner_cache_bytes=0.0)
    assert got.cache_bytes == CACHE
    assert got.beta_large == pytest.approx(TRUE.beta_large, rel=1e-6)


def test_fit_is_relative_so_small_messages_count() -> None:
    # 10 % noise on every row: a relative fit keeps the 8 B rows near 10 % error, where an
    # absolute fit would sacrifice them to the 16 MiB rows.
    rng = np.random.default_rng(0)
    rows = [
        Measured(op=r.op, algo=r.algo, bytes=r.bytes, seconds=r.seconds * rng.uniform(0.9, 1.1))
        for r in _rows(TRUE, CAL)
    ]
    got = fit(rows, ranks=2, cache_bytes=CACHE)
    small = [r for r in rows if r.bytes <= 1024]
    for r in small:
        pred = float(got.predict(r.op, r.algo, np.array([r.bytes]))[0])
        assert abs(pred / r.seconds - 1) < 0.2, (r, pred)


def test_pinned_parameters_stay_and_the_rest_fit_around_them() -> None:
    pin = {"beta_large": TRUE.beta_large, "gamma_large": TRUE.gamma_large}
    got = fit(_rows(TRUE, CAL), ranks=2, sweeps=_sweeps(TRUE), cache_bytes=CACHE, fixed=pin)
    assert got.beta_large == TRUE.beta_large and got.gamma_large == TRUE.gamma_large
    assert got.alpha == pytest.approx(TRUE.alpha, rel=1e-6)
    with pytest.raises(ValueError, match="cannot fix"):
        fit(_rows(TRUE, CAL), ranks=2, fixed={"latency": 1.0})


def test_nnls_keeps_parameters_non_negative() -> None:
    a = np.array([[1.0, 1.0], [1.0, 2.0], [1.0, 3.0]])
    b = np.array([3.0, 2.0, 1.0])  # unconstrained slope is -1
    x = nnls(a, b)
    assert np.all(x >= 0)
    np.testing.assert_allclose(x, [2.0, 0.0])


def test_fitted_model_round_trips_as_a_cost_model_file(tmp_path: Path) -> None:
    path = tmp_path / "fit.json"
    got = fit(_rows(TRUE, CAL), ranks=2, cache_bytes=CACHE, own_overhead=("reduce_scatter",))
    assert got.own_overhead and got.own_overhead[0][0] == "reduce_scatter"
    got.save(path)
    assert Fitted.load(path) == got
    cm = CostModel.load(path)  # what ANYWARE_COMM_COST_FILE / selection reads
    assert cm.links.alpha_intra == pytest.approx(got.alpha)
    assert cm.links.beta_intra == pytest.approx(got.beta)
    assert cm.links.gamma == pytest.approx(got.gamma)
    assert json.loads(path.read_text())["source"] == "fit"
    assert set(COLUMNS) <= set(json.loads(path.read_text())["fit"])


def test_bad_inputs_name_the_problem(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="calibration set is empty"):
        fit([], ranks=2)
    with pytest.raises(ValueError, match="seconds > 0"):
        Measured(op="allreduce", algo="ring", bytes=8, seconds=0.0)
    bad = tmp_path / "bad.json"
    bad.write_text('{"links": {}}')
    with pytest.raises(ValueError, match="cannot read a fitted comm model"):
        Fitted.load(bad)
    with pytest.raises(ValueError, match="alpha must be finite"):
        Fitted(**{**_kw(TRUE), "alpha": -1.0})


def _kw(f: Fitted) -> dict[str, object]:
    return {name: getattr(f, name) for name in (*COLUMNS, "ranks", "cache_bytes", "calibration")}


def test_fitted_topology_is_the_alpha_beta_model_by_hand() -> None:
    # 2-rank ring allreduce of 8 B: o + 2 rounds of (α + 4 B·β) + γ·(its local bytes) + one
    # reduce op (8 B is far inside the cache: the past-cache terms weigh ~1e-12); the fit
    # adds no term to the simulator, it only chooses the machine.
    local = float(
        features(2, "allreduce", "ring", np.array([8.0]), CACHE)[0, COLUMNS.index("gamma")]
    )
    expected = (
        TRUE.call_overhead
        + 2 * (TRUE.alpha + 4 * TRUE.beta)
        + local * TRUE.gamma
        + TRUE.reduce_op  # its one reducing receive
    )
    got = simulate(TRUE.topology(), "allreduce", "ring", np.array([8.0]))[0]
    assert got == pytest.approx(expected, rel=1e-12)
