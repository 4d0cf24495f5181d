from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from anyware.events import Event, EventError, EventWriter, Kind, rank_file, read_dir, read_events


def _ev(**kw: object) -> Event:
    base: dict[str, object] = {
        "t": 100.0,
        "rank": 0,
        "kind": Kind.SCALAR,
        "name": "loss",
        "value": 1.5,
    }
    base.update(kw)
    return Event(**base)  # type: ignore[arg-type]


def test_round_trip_matches_the_schema(tmp_path: Path) -> None:
    events = [
        _ev(step=1),
        _ev(kind=Kind.SPAN, name="forward", value=None, dur=0.01, step=1),
        _ev(
            kind=Kind.ALERT,
            name="HM003",
            attrs={"check": "straggler", "severity": "warning", "culprit_rank": 1},
        ),
        _ev(kind=Kind.INSTANT, name="checkpoint", value=None, rank=3),
    ]
    path = rank_file(tmp_path, 0)
    assert path.name == "rank0.jsonl"
    with EventWriter(path) as w:
        w.write_many(events)
    line = json.loads(path.read_text().splitlines()[1])
    assert set(line) == {"t", "rank", "step", "kind", "name", "value", "dur", "attrs"}
    assert list(read_events(path)) == events


def test_non_finite_values_survive_json(tmp_path: Path) -> None:
    path = tmp_path / "rank0.jsonl"
    with EventWriter(path) as w:
        w.write(_ev(value=float("nan")))
        w.write(_ev(value=float("-inf")))
    back = list(read_events(path))
    assert math.isnan(back[0].value or 0.0) and back[1].value == float("-inf")
    json.loads(path.read_text().splitlines()[0])  # still strict JSON


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"rank": -1}, "rank"),
        ({"t": float("nan")}, "'t'"),
        ({"name": ""}, "name"),
        ({"kind": Kind.SPAN, "dur": None}, "needs 'dur'"),
        ({"kind": Kind.ALERT}, "attrs.check"),
        ({"dur": -1.0}, "dur"),
        ({"step": 1.5}, "step"),
    ],
)
def test_invalid_events_name_the_field(kw: dict[str, object], match: str) -> None:
    with pytest.raises(EventError, match=match):
        _ev(**kw)


def test_from_dict_rejects_wrong_kind_and_missing_fields() -> None:
    with pytest.raises(EventError, match="missing"):
        Event.from_dict({"t": 1.0})
    with pytest.raises(EventError, match="kind"):
        Event.from_dict({"t": 1.0, "rank": 0, "kind": "metric", "name": "x"})


def test_torn_last_line_is_skipped_or_reported(tmp_path: Path) -> None:
    path = tmp_path / "rank1.jsonl"
    path.write_text(_ev(rank=1).to_json() + "\n" + '{"t": 2.0, "rank": 1, "ki')
    assert len(list(read_events(path))) == 1
    with pytest.raises(EventError, match=r"rank1.jsonl:2"):
        list(read_events(path, strict=True))


def test_read_dir_merges_ranks_in_time_order(tmp_path: Path) -> None:
    for rank, t in ((0, 3.0), (1, 1.0), (0, 2.0)):
        with EventWriter(rank_file(tmp_path, rank)) as w:
            w.write(_ev(rank=rank, t=t))
    assert [(e.t, e.rank) for e in read_dir(tmp_path)] == [(1.0, 1), (2.0, 0), (3.0, 0)]
    with pytest.raises(EventError, match="not a directory"):
        read_dir(tmp_path / "missing")
