"""The streaming reader: same events as json.load, any window size, truncation, non-traces."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest
from profile_traces import device_trace

from anyware.profile.reader import TraceFormatError, TraceReader


@pytest.fixture
def trace_file(tmp_path: Path) -> Path:
    p = tmp_path / "t.json"
    device_trace().write(p)
    return p


@pytest.mark.parametrize("chunk", [1, 7, 64, 1 << 20])
def test_same_events_and_metadata_as_json_load(trace_file: Path, chunk: int) -> None:
    ref = json.loads(trace_file.read_text())
    reader = TraceReader(trace_file, chunk_size=chunk)
    assert list(reader) == ref["traceEvents"]
    assert reader.metadata == {k: v for k, v in ref.items() if k != "traceEvents"}
    assert reader.problem is None and reader.events_read == len(ref["traceEvents"])


def test_numbers_cut_by_the_window_are_read_whole(tmp_path: Path) -> None:
    p = tmp_path / "n.json"
    p.write_text('{"baseTimeNanoseconds": 1234567890123, "traceEvents": [], "x": 98765}')
    for chunk in range(1, 12):
        r = TraceReader(p, chunk_size=chunk)
        assert list(r) == []
        assert r.metadata == {"baseTimeNanoseconds": 1234567890123, "x": 98765}


def test_gzip_and_bare_array(tmp_path: Path, trace_file: Path) -> None:
    ref = json.loads(trace_file.read_text())["traceEvents"]
    gz = tmp_path / "t.json.gz"
    gz.write_bytes(gzip.compress(trace_file.read_bytes()))
    assert list(TraceReader(gz, chunk_size=50)) == ref
    bare = tmp_path / "bare.json"
    bare.write_text(json.dumps(ref))
    assert list(TraceReader(bare, chunk_size=50)) == ref


def test_truncated_file_yields_the_events_before_the_cut(trace_file: Path) -> None:
    text = trace_file.read_text()
    cut = trace_file.with_name("cut.json")
    cut.write_text(text[: len(text) * 2 // 3])
    reader = TraceReader(cut, chunk_size=100)
    events = list(reader)
    full = json.loads(text)["traceEvents"]
    assert 0 < len(events) < len(full)
    assert events == full[: len(events)]
    assert reader.problem is not None and "truncated" in reader.problem


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"foo": 1, "bar": [1, 2]}', "no 'traceEvents' array"),
        ("hello, world", "not a Chrome-trace JSON file"),
        ("", "not a Chrome-trace JSON file"),
        ('{"foo": ', "not valid JSON"),
    ],
)
def test_not_a_trace(tmp_path: Path, content: str, message: str) -> None:
    p = tmp_path / "x.json"
    p.write_text(content)
    with pytest.raises(TraceFormatError, match=message):
        list(TraceReader(p))


def test_bulk_windows_survive_event_boundaries_inside_strings_and_args(tmp_path: Path) -> None:
    # Names and args that contain the "}, {" boundary the bulk decoder cuts at.
    events = [
        {
            "ph": "X",
            "cat": "cpu_op",
            "name": f"op}}, {{{i}",
            "ts": i,
            "dur": 1,
            "args": {"list": [{"a": i}, {"b": "}, {"}]},
        }
        for i in range(5000)
    ]
    p = tmp_path / "tricky.json"
    p.write_text(json.dumps({"traceEvents": events, "tail": {"x": [{"y": 1}, {"z": 2}]}}, indent=1))
    for chunk in (20_000, 50_000, 1 << 20):
        reader = TraceReader(p, chunk_size=chunk)
        assert list(reader) == events
        assert reader.metadata == {"tail": {"x": [{"y": 1}, {"z": 2}]}} and reader.problem is None
