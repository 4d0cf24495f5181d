"""``anyware profile summary|export`` in process: one screen, a JSON twin, one-line errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from profile_traces import GEMM, device_trace

from anyware.cli.main import main


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        main(list(args))
    out, err = capsys.readouterr()
    return int(exc.value.code or 0), out, err


@pytest.fixture
def two_ranks(tmp_path: Path) -> Path:
    device_trace(0, 2).write(tmp_path / "rank0.pt.trace.json")
    device_trace(1, 2, extra_gemm=30).write(tmp_path / "rank1.pt.trace.json")
    return tmp_path


def test_summary_fits_one_screen_and_names_slowest_and_biggest_cost(
    capsys: pytest.CaptureFixture[str], two_ranks: Path
) -> None:
    code, out, _ = cli(capsys, "profile", "summary", str(two_ranks))
    assert code == 0
    lines = out.splitlines()
    assert len(lines) <= 40 and max(len(x) for x in lines) <= 80
    assert "Slowest rank: 1" in out and "+15.00 ms" not in out
    assert "compute +0.01 ms" in out  # 15 µs per step more gemm
    assert "Biggest cost: idle time" in out and "host-bound" in out
    assert "gemm_kernel" in out and "void gemm_kernel<" not in out  # short kernel names
    assert "yes" in out  # host-bound column


def test_summary_json_twin(capsys: pytest.CaptureFixture[str], two_ranks: Path) -> None:
    code, out, err = cli(capsys, "profile", "summary", str(two_ranks), "--json")
    assert code == 0 and err == ""
    j = json.loads(out)
    assert [r["rank"] for r in j["ranks"]] == [0, 1]
    assert j["slowest"]["rank"] == 1 and j["slowest"]["top_extra"][0]["name"] == GEMM
    assert j["ranks"][0]["breakdown"]["compute_us"] == 70.0
    assert j["ranks"][1]["breakdown"]["compute_us"] == 100.0
    assert j["ranks"][0]["steps"][0]["breakdown"]["idle_us"] == 20.0


def test_export_writes_a_merged_trace(
    capsys: pytest.CaptureFixture[str], two_ranks: Path, tmp_path: Path
) -> None:
    out_file = tmp_path / "out" / "merged.json"
    code, out, _ = cli(capsys, "profile", "export", str(two_ranks), "--out", str(out_file))
    assert code == 0 and "ui.perfetto.dev" in out
    events = json.loads(out_file.read_text())["traceEvents"]
    kernels = [e for e in events if e.get("cat") == "kernel"]
    assert len(kernels) == 6 + 7  # rank 0: 6 kernels, rank 1: one more gemm
    assert {e["pid"] // 1000 for e in kernels} == {0, 1}
    assert len({e["pid"] for e in kernels}) == 2


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["profile", "summary", "/nonexistent/prof"], "does not exist"),
        (["profile", "record", "--out", "x", "--steps", "4:2", "--", "t.py"], "--steps"),
        (["profile", "record", "--out", "x"], "give the program to profile after --"),
    ],
)
def test_one_line_errors(capsys: pytest.CaptureFixture[str], args: list[str], needle: str) -> None:
    code, _out, err = cli(capsys, *args)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("anyware: error: ") and needle in lines[0], err


def test_summary_of_a_directory_of_junk(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text('{"hello": 1}')
    code, _, err = cli(capsys, "profile", "summary", str(tmp_path))
    assert code == 2 and "no usable trace" in err and "a.json" in err and "Traceback" not in err


def test_export_adds_the_monitors_step_spans(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from anyware.events import Event, EventWriter, Kind, rank_file

    events_dir = tmp_path / "events"
    events_dir.mkdir()
    b = device_trace(0, 1)
    base_s = b.base_ns / 1e9
    with EventWriter(rank_file(events_dir, 0)) as w:
        w.write(Event(t=base_s + 0.0, rank=0, step=1, kind=Kind.SPAN, name="step", dur=100e-6))
        w.write(Event(t=base_s + 200e-6, rank=0, step=2, kind=Kind.SPAN, name="step", dur=100e-6))
        w.write(Event(t=base_s, rank=0, step=1, kind=Kind.SCALAR, name="loss", value=2.0))
    trace = b.to_json()
    trace["anyware"] = {"rank": 0, "world_size": 1, "monitor_events": str(events_dir)}
    (tmp_path / "prof").mkdir()
    (tmp_path / "prof" / "rank0.pt.trace.json").write_text(json.dumps(trace))
    out_file = tmp_path / "merged.json"
    code, _, _ = cli(capsys, "profile", "export", str(tmp_path / "prof"), "--out", str(out_file))
    assert code == 0
    spans = [
        e for e in json.loads(out_file.read_text())["traceEvents"] if e.get("cat") == "monitor"
    ]
    assert [(e["name"], round(e["ts"], 3), round(e["dur"], 3)) for e in spans] == [
        ("step (step 1)", 0.0, 100.0),
        ("step (step 2)", 200.0, 100.0),
    ]


def test_summary_of_many_ranks_still_fits_one_screen(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    for r in range(16):
        device_trace(r, 16, extra_gemm=50.0 if r == 11 else 0.0).write(
            tmp_path / f"rank{r}.pt.trace.json"
        )
    code, out, _ = cli(capsys, "profile", "summary", str(tmp_path))
    assert code == 0
    lines = out.splitlines()
    assert len(lines) <= 40 and max(len(x) for x in lines) <= 80, out
    assert "Slowest rank: 11" in out and "9 more ranks" in out
    assert any(line.split()[:1] == ["11"] for line in lines)
