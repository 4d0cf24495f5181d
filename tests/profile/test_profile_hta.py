"""The device breakdown agrees with Holistic Trace Analysis on the same trace (HTA is the
reference, installed for the benchmark; skipped where it is not installed)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import pytest

from anyware.profile.report import analyze_path
from anyware.profile.synth import write_large_rank


def test_breakdown_and_overlap_match_hta(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("hta")
    # HTA rounds ns timestamps to whole µs unless told not to; compare like with like.
    monkeypatch.setenv("HTA_DISABLE_NS_ROUNDING", "1")
    write_large_rank(
        tmp_path / "rank0.pt.trace.json", rank=0, world_size=1, steps=4, kernels_per_step=60, seed=3
    )
    logging.disable(logging.CRITICAL)
    try:
        from hta.trace_analysis import TraceAnalysis

        ta = TraceAnalysis(trace_dir=str(tmp_path), include_last_profiler_step=True)
        tb = ta.get_temporal_breakdown(visualize=False).iloc[0]
        ov = ta.get_comm_comp_overlap(visualize=False).iloc[0]
    finally:
        logging.disable(logging.NOTSET)
    assert os.environ["HTA_DISABLE_NS_ROUNDING"] == "1"
    r = analyze_path(tmp_path).ranks[0]
    w = r.whole
    ours = {
        "kernel_time": w.span_us,
        "compute": w.compute_us,
        "non_compute": w.comm_us + w.memory_us + w.other_us,
        "idle": w.idle_us,
    }
    hta = {
        "kernel_time": tb["kernel_time(us)"],
        "compute": tb["compute_time(us)"],
        "non_compute": tb["non_compute_time(us)"],
        "idle": tb["idle_time(us)"],
    }
    for key, ref in hta.items():
        assert ours[key] == pytest.approx(float(ref), rel=1e-6), key
    assert w.comm_us > 0 and w.memory_us > 0  # both non-compute kinds are exercised
    assert r.overlap_pct == pytest.approx(float(ov["comp_comm_overlap_pctg"]), abs=0.006)
