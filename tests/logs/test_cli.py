"""`anyware logs analyze|parse` from the command line: outputs, exit codes, one-line errors."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from types import ModuleType


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("ANYWARE_")}
    return subprocess.run(
        [sys.executable, "-m", "anyware.cli.main", "logs", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )


def test_analyze_writes_json_and_html(corpus: ModuleType, tmp_path: Path) -> None:
    truth = corpus.generate(tmp_path / "logs", failure="xid", ranks=8, seed=4)
    proc = _cli(
        "analyze",
        str(tmp_path / "logs"),
        "--json",
        str(tmp_path / "r.json"),
        "--html",
        str(tmp_path / "r.html"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "root cause" in proc.stdout and "xid" in proc.stdout
    d = json.loads((tmp_path / "r.json").read_text())
    assert (d["root_cause"]["rank"], d["root_cause"]["category"]) == (truth.rank, "xid")
    page = (tmp_path / "r.html").read_text()
    assert page.startswith("<!doctype html>") and "<svg" in page and "<script" not in page
    assert f"rank {truth.rank}" in page and 'id="root-cause"' in page


def test_analyze_json_to_stdout(corpus: ModuleType, tmp_path: Path) -> None:
    truth = corpus.generate(tmp_path, failure="hang", ranks=6, seed=1)
    proc = _cli("analyze", str(tmp_path), "--json", "-")
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["root_cause"]["rank"] == truth.rank


def test_analyze_missing_input_is_one_line_error(tmp_path: Path) -> None:
    proc = _cli("analyze", str(tmp_path / "none*.log"))
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "no log files found" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_parse_wrong_format_is_one_line_error(loghub: Path, tmp_path: Path) -> None:
    proc = _cli(
        "parse",
        str(loghub / "Apache" / "Apache_2k.log"),
        "--out",
        str(tmp_path / "a.csv"),
        "--log-format",
        "<Date> <Time> <Pid> <Content>",
    )
    assert proc.returncode == 2, proc.stderr
    assert "first line that does not match" in proc.stderr and "[Sun Dec 04" in proc.stderr
    assert "Traceback" not in proc.stderr and not (tmp_path / "a.csv").exists()


def test_parse_json_summary(loghub: Path, tmp_path: Path) -> None:
    proc = _cli(
        "parse",
        str(loghub / "HDFS" / "HDFS_2k.log"),
        "--out",
        str(tmp_path / "h_structured.csv"),
        "--mask",
        r"blk_-?\d+",
        "--json",
    )
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["lines"] == 2000 and 10 <= s["templates"] <= 20
    assert (tmp_path / "h_templates.csv").is_file()


def test_parse_into_a_directory_is_one_line_error(loghub: Path, tmp_path: Path) -> None:
    proc = _cli("parse", str(loghub / "Apache" / "Apache_2k.log"), "--out", str(tmp_path))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.startswith("anyware: error: cannot parse") and "Traceback" not in proc.stderr
