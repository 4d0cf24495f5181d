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
from anyware.comm.simulate.fit import COLUMNS, Fitted, Measured, features, fit, nnls

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
)
CAL = (("allreduce", "ring"), ("alltoall", "pairwise"))
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


def test_prediction_is_linear_in_the_fitted_parameters() -> None:
    # The fit's premise: simulate(topology(params)) == features @ params, for every algorithm.
    for op, algo in CAL + HELD:
        n = np.array(SIZES, dtype=np.float64)
        direct = TRUE.predict(op, algo, n)
        linear = features(2, op, algo, n, CACHE) @ TRUE.vector
        np.testing.assert_allclose(direct, linear, rtol=1e-12)


def test_fit_recovers_the_machine_and_predicts_held_out_algorithms() -> None:
    got = fit(_rows(TRUE, CAL), ranks=2, cache_bytes=CACHE)
    assert got.calibration == ("allreduce:ring", "alltoall:pairwise")
    for op, algo in HELD:
        n = np.array(SIZES, dtype=np.float64)
        np.testing.assert_allclose(got.predict(op, algo, n), TRUE.predict(op, algo, n), rtol=1e-6)


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
    got = fit(_rows(TRUE, CAL), ranks=2, cache_bytes=CACHE, fixed=pin)
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
    got = fit(_rows(TRUE, CAL), ranks=2, cache_bytes=CACHE)
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
    # 2-rank ring allreduce of 8 B: o + 2 rounds of (α + 4 B·β) + γ·(its local bytes); the fit
    # adds no term to the simulator, it only chooses the machine.
    local = float(features(2, "allreduce", "ring", np.array([8.0]), CACHE)[0, 4])
    expected = TRUE.call_overhead + 2 * (TRUE.alpha + 4 * TRUE.beta) + local * TRUE.gamma
    got = simulate(TRUE.topology(), "allreduce", "ring", np.array([8.0]))[0]
    assert got == pytest.approx(expected, rel=1e-12)
