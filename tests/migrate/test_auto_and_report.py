"""``import anyware.migrate.auto`` in a plain interpreter, and merging per-process report parts."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from anyware.migrate.reporting import merge, summary


def test_import_auto_redirects_and_reports_at_exit(tmp_path: Path) -> None:
    out = tmp_path / "report.json"
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYWARE_")}
    env["ANYWARE_MIGRATE_REPORT"] = str(out)
    code = "import anyware.migrate.auto\nimport torch\nprint(torch.ones(1).cuda().device, torch.cuda.is_available())\n"
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "cpu True"
    assert "anyware migrate: ran on cpu: 2 redirect(s)" in proc.stderr
    data = json.loads(out.read_text())
    assert {r["api"] for r in data["redirects"]} == {"Tensor.cuda", "torch.cuda.is_available"}
    assert data["redirects"][0]["locations"] == ["<string>:3"]


def test_merge_adds_counts_and_keeps_first_reason() -> None:
    a = {"device": "cpu", "redirects": [{"api": "Tensor.cuda", "count": 2, "locations": ["a.py:1"]}],
         "unsupported": [{"api": "torch.cuda.graph", "reason": "r1", "locations": ["a.py:9"]}]}  # fmt: skip
    b = {"device": "cpu", "redirects": [{"api": "Tensor.cuda", "count": 3, "locations": ["a.py:1", "b.py:2"]}],
         "unsupported": [{"api": "torch.cuda.graph", "reason": "r2", "locations": ["b.py:4"]}]}  # fmt: skip
    m = merge([a, b], "cpu")
    assert m["redirects"] == [{"api": "Tensor.cuda", "count": 5, "locations": ["a.py:1", "b.py:2"]}]
    assert m["unsupported"] == [
        {"api": "torch.cuda.graph", "reason": "r1", "locations": ["a.py:9", "b.py:4"]}
    ]
    text = summary(m)
    assert "5 redirect(s) across 1 API(s), 1 not honoured" in text
    assert "not honoured: torch.cuda.graph at a.py:9: r1" in text
