"""``anyware formats info [--json]`` and the demo section's entry."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "anyware.cli.main", *args],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_info_json_schema() -> None:
    proc = _cli("formats", "info", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = json.loads(proc.stdout)
    names = [r["format"] for r in rows]
    assert names[:2] == ["fp8_e4m3", "fp8_e5m2"] and "mxfp4_e2m1" in names and "int4" in names
    for r in rows:
        assert {
            "bits",
            "max",
            "min_normal",
            "min_subnormal",
            "precision",
            "inf",
            "nan",
            "scale",
        } <= set(r)
        assert r["min_subnormal"] <= r["min_normal"] < r["max"]


def test_info_table_and_usage_errors() -> None:
    proc = _cli("formats", "info")
    assert proc.returncode == 0 and "fp8_e4m3" in proc.stdout and "448" in proc.stdout
    bad = _cli("formats", "inf")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_demo_section_is_registered() -> None:
    from anyware.demo import SECTIONS

    assert ("anyware.demo.formats:run") in [t for _, t in SECTIONS]


@pytest.mark.slow
def test_demo_section_reports_the_gap(tmp_path: object) -> None:
    from rich.console import Console

    from anyware.demo import run

    console = Console(record=True, width=120)
    results = run(device="cpu", workdir=tmp_path, console=console, only=["formats"])  # type: ignore[arg-type]
    r = results["formats"]
    # measured -0.03% (control 0.00%): a broken cast or gradient moves it by far more than 1%
    assert r["fp32_loss"] > 0 and abs(r["relative_gap"]) < 0.01
    assert "gap" in console.export_text()
