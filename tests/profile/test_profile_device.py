"""On a real accelerator: the capture records device kernels and the analysis agrees with HTA.
Skips with a reason on machines without one."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from anyware.profile.report import analyze_path
from anyware.testing.markers import require_device

pytestmark = [pytest.mark.device, require_device()]

TRAIN = textwrap.dedent(
    """
    import torch
    import anyware._autostart as autostart
    from anyware import runtime
    from anyware.models.data import VOCAB_SIZE, batches, encode, make_text
    from anyware.models.gpt import GPT, GPTConfig

    autostart.start_features()
    dev = runtime.device()
    cfg = GPTConfig(vocab_size=VOCAB_SIZE, seq_len=64, d_model=128, n_heads=4, n_layers=2)
    model = GPT(cfg).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    data = batches(encode(make_text(2000)), batch_size=16, seq_len=cfg.seq_len)
    for _ in range(8):
        x, y = next(data)
        _, loss = model(x.to(dev), y.to(dev))
        loss.backward()
        opt.step()
        opt.zero_grad()
    runtime.current().synchronize()
    """
)


def test_device_capture_has_kernels_and_matches_hta(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(TRAIN)
    out = tmp_path / "prof"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYWARE_")}
    env.update(ANYWARE_PROFILE_DIR=str(out), ANYWARE_PROFILE_STEPS="2:6")
    proc = subprocess.run(
        [sys.executable, str(script)], env=env, capture_output=True, text=True, timeout=600
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    r = analyze_path(out).ranks[0]
    assert r.mode == "device" and [s.step for s in r.steps] == [2, 3, 4, 5]
    assert (
        r.whole.compute_us > 0 and r.top_kernels and r.launch is not None and r.launch.launches > 0
    )
    assert any(k.launched_by for k in r.top_kernels)
    assert any(m["device"] != "cpu" and m["peak_allocated"] > 0 for m in r.memory)
    hta = pytest.importorskip("hta.trace_analysis")
    os.environ["HTA_DISABLE_NS_ROUNDING"] = "1"
    logging.disable(logging.CRITICAL)
    try:
        tb = (
            hta.TraceAnalysis(trace_dir=str(out), include_last_profiler_step=True)
            .get_temporal_breakdown(visualize=False)
            .iloc[0]
        )
    finally:
        logging.disable(logging.NOTSET)
        os.environ.pop("HTA_DISABLE_NS_ROUNDING", None)
    # HTA counts every device-stream event; ours too (both include the last step).
    assert r.whole.span_us == pytest.approx(float(tb["kernel_time(us)"]), rel=0.01)
    assert r.whole.compute_us == pytest.approx(float(tb["compute_time(us)"]), rel=0.01)
    assert r.whole.idle_us == pytest.approx(float(tb["idle_time(us)"]), rel=0.01, abs=1.0)
