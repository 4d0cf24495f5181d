"""Bad input: a clear message, and the analysis of what is valid goes on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from profile_traces import device_trace

from anyware.profile.report import NoTracesError, analyze_path


def test_truncated_trace_is_analysed_up_to_the_cut(tmp_path: Path) -> None:
    full = tmp_path / "full"
    device_trace().write(full / "rank0.pt.trace.json")
    text = (full / "rank0.pt.trace.json").read_text()
    cut_dir = tmp_path / "cut"
    cut_dir.mkdir()
    # Cut inside the last event: every device event is earlier in the file.
    (cut_dir / "rank0.pt.trace.json").write_text(text[: text.rindex('"[memory]"')])
    report = analyze_path(cut_dir)
    assert any("truncated" in p and "rank0.pt.trace.json" in p for p in report.problems)
    assert report.ranks[0].whole.parts()["compute"] == pytest.approx(70.0)


def test_non_kineto_files_are_skipped_with_a_message(tmp_path: Path) -> None:
    device_trace().write(tmp_path / "rank0.pt.trace.json")
    (tmp_path / "config.json").write_text(json.dumps({"lr": 0.1}))
    (tmp_path / "notes.json").write_text("not json at all")
    (tmp_path / "empty.json").write_text(json.dumps({"traceEvents": [{"ph": "M", "name": "x"}]}))
    report = analyze_path(tmp_path)
    assert [r.rank for r in report.ranks] == [0]
    text = "\n".join(report.problems)
    assert "skipped config.json" in text and "no 'traceEvents' array" in text
    assert "skipped notes.json" in text
    assert "skipped empty.json: no profiler events" in text


def test_only_bad_files_is_one_clear_error(tmp_path: Path) -> None:
    (tmp_path / "a.json").write_text("{}")
    with pytest.raises(NoTracesError, match="no usable trace"):
        analyze_path(tmp_path)
    with pytest.raises(NoTracesError, match="does not exist"):
        analyze_path(tmp_path / "missing")
    (tmp_path / "a.json").unlink()
    with pytest.raises(NoTracesError, match="holds no"):
        analyze_path(tmp_path)


def test_traces_of_another_run_are_ignored(tmp_path: Path) -> None:
    device_trace(0, 2).write(tmp_path / "rank0.pt.trace.json")
    device_trace(1, 2, extra_gemm=5).write(tmp_path / "rank1.pt.trace.json")
    # Left over from an earlier 4-rank run, and a same-size run from an hour before.
    device_trace(2, 4).write(tmp_path / "old_rank2.pt.trace.json")
    hour = 3600 * 10**9
    old = device_trace(1, 2)
    old.base_ns -= hour
    old.write(tmp_path / "old" / "rank1.pt.trace.json")
    report = analyze_path(tmp_path)
    assert [r.rank for r in report.ranks] == [0, 1]
    assert all("old" not in Path(r.path).parent.name for r in report.ranks)
    text = "\n".join(report.problems)
    assert (
        "ignored old_rank2.pt.trace.json (rank 2): another run (world size 4 differs from 2)"
        in text
    )
    assert "recorded 3,600 s apart" in text


def test_two_traces_for_one_rank_keep_the_newest(tmp_path: Path) -> None:
    a = device_trace(0, 1)
    a.write(tmp_path / "a.json")
    b = device_trace(0, 1, extra_gemm=10)
    b.base_ns += 10**9
    b.write(tmp_path / "b.json")
    report = analyze_path(tmp_path)
    assert len(report.ranks) == 1 and Path(report.ranks[0].path).name == "b.json"
    assert any("two traces claim rank 0" in p for p in report.problems)


def test_events_without_times_are_counted_not_fatal(tmp_path: Path) -> None:
    b = device_trace()
    b.events.append({"ph": "X", "cat": "kernel", "name": "broken", "args": {"stream": 7}})
    b.write(tmp_path / "r.json")
    report = analyze_path(tmp_path)
    assert any("skipped 1 complete events" in p for p in report.problems)
    assert report.ranks[0].whole.span_us == pytest.approx(250.0)
