"""``anyware trace record / diff / nonfinite``: the JSON contract, HTML, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from trace_workloads import train
from typer.testing import CliRunner

from anyware.cli.main import app

runner = CliRunner()

SCRIPT = """
import torch
from torch import nn
torch.manual_seed(0)
m = nn.Sequential(nn.Linear(8, 8), nn.GELU(), nn.Linear(8, 2))
opt = torch.optim.SGD(m.parameters(), lr=0.1)
for _ in range(2):
    loss = m(torch.randn(4, 8)).pow(2).mean()
    opt.zero_grad(); loss.backward(); opt.step()
print("done", float(loss))
"""


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("runs")
    train(d / "a", "gpt")
    train(d / "b", "gpt", "softmax_dim")
    train(d / "mlp", "mlp")
    return d


def test_diff_json_contract_and_html(runs: Path, tmp_path: Path) -> None:
    out, page = tmp_path / "d.json", tmp_path / "d.html"
    r = runner.invoke(
        app,
        [
            "trace",
            "diff",
            str(runs / "a"),
            str(runs / "b"),
            "--json",
            str(out),
            "--html",
            str(page),
        ],
    )
    assert r.exit_code == 0, r.output
    assert "first divergence" in r.output and "blocks.1.attn" in r.output
    d = json.loads(out.read_text())
    fd = d["first_divergence"]
    assert set(fd) >= {
        "module",
        "op",
        "phase",
        "step",
        "rank",
        "call_index",
        "key",
        "metrics",
        "location",
    }
    assert (fd["module"], fd["op"], fd["phase"], fd["step"], fd["rank"]) == (
        "blocks.1.attn",
        "aten._softmax",
        "forward",
        0,
        0,
    )
    assert isinstance(d["compared"], int) and d["compared"] > 0 and isinstance(d["unmatched"], int)
    html = page.read_text()
    assert html.startswith("<!doctype html>") and "blocks.1.attn" in html and "<script" not in html


def test_diff_no_divergence_is_null(runs: Path) -> None:
    r = runner.invoke(app, ["trace", "diff", str(runs / "a"), str(runs / "a"), "--json", "-"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["first_divergence"] is None


def test_different_models_report_structure_differs(runs: Path) -> None:
    r = runner.invoke(app, ["trace", "diff", str(runs / "a"), str(runs / "mlp"), "--json", "-"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["structure_differs_at"] is not None
    r = runner.invoke(app, ["trace", "diff", str(runs / "a"), str(runs / "mlp")])
    assert "structure differs at" in r.output


def test_renamed_modules_align_by_tree_and_mapping(runs: Path, tmp_path: Path) -> None:
    import shutil

    import polars as pl

    renamed = tmp_path / "renamed"
    shutil.copytree(runs / "b", renamed)
    f = renamed / "rank0.parquet"
    df = pl.read_parquet(f).with_columns(
        pl.col("module").str.replace(r"^blocks\.", "layers."),
        pl.col("key").str.replace("/blocks.", "/layers.", literal=True),
    )
    df.write_parquet(f)
    r = runner.invoke(app, ["trace", "diff", str(runs / "a"), str(renamed), "--json", "-"])
    d = json.loads(r.stdout)
    assert d["first_divergence"]["module"] == "blocks.1.attn" and d["unmatched"] == 0
    mp = tmp_path / "map.json"
    mp.write_text(json.dumps({"blocks": "layers"}))
    r = runner.invoke(
        app, ["trace", "diff", str(runs / "a"), str(renamed), "--map", str(mp), "--json", "-"]
    )
    assert json.loads(r.stdout)["first_divergence"]["module"] == "blocks.1.attn"


def test_bad_inputs_are_one_clear_error(
    runs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from anyware.cli.main import main

    empty = tmp_path / "empty"
    empty.mkdir()
    torn = tmp_path / "torn"
    torn.mkdir()
    data = (runs / "a" / "rank0.parquet").read_bytes()
    (torn / "rank0.parquet").write_bytes(data[: len(data) // 2])
    for bad, words in [
        (tmp_path / "nope", "does not exist"),
        (empty, "not a trace directory"),
        (torn, "truncated or not Parquet"),
        (runs / "a" / "rank0.parquet", "is a file"),
    ]:
        with pytest.raises(SystemExit) as e:
            main(["trace", "diff", str(runs / "a"), str(bad)])
        assert e.value.code == 2, bad
        err = capsys.readouterr().err
        assert words in err and "Traceback" not in err and len(err.strip().splitlines()) == 1
    r = runner.invoke(app, ["trace", "diff", str(runs / "a"), str(torn)])
    assert type(r.exception).__name__ == "CliError", r.exception  # main() prints it, exit 2


def test_nonfinite_command(runs: Path, tmp_path: Path) -> None:
    train(tmp_path / "nan", "cnn", "nan")
    r = runner.invoke(app, ["trace", "nonfinite", str(tmp_path / "nan"), "--json", "-"])
    nf = json.loads(r.stdout)["first_nonfinite"]
    assert (nf["module"], nf["op"], nf["step"], nf["rank"]) == ("act1", "aten.pow", 0, 0)


def test_autostart_records_an_unmodified_script(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    env = dict(os.environ, ANYWARE_TRACE_DIR=str(tmp_path / "t"), ANYWARE_TRACE_LEVEL="op")
    code = "import anyware._autostart as a; a.start_features(); import runpy; runpy.run_path(%r, run_name='__main__')"
    p = subprocess.run(
        [sys.executable, "-c", code % str(script)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert p.returncode == 0, p.stderr
    from anyware.trace.load import load_run

    df = load_run(tmp_path / "t").frame
    assert sorted(df["step"].unique().to_list()) == [0, 1]
    assert {"forward", "backward", "optimizer"} <= set(df["phase"].to_list())


def test_trace_record_command(tmp_path: Path) -> None:
    script = tmp_path / "train.py"
    script.write_text(SCRIPT)
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "anyware.cli.main",
            "trace",
            "record",
            "--out",
            str(tmp_path / "t"),
            "--level",
            "mix",
            "--",
            "python",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=180,
    )
    assert p.returncode == 0, p.stdout + p.stderr
    assert "done" in p.stdout
    assert (tmp_path / "t" / "rank0.parquet").exists()
    p = subprocess.run(
        [
            sys.executable,
            "-m",
            "anyware.cli.main",
            "trace",
            "record",
            "--out",
            str(tmp_path / "u"),
            "--level",
            "kernel",
            "--",
            "python",
            str(script),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert p.returncode == 2 and "not a trace level" in p.stderr


del torch
