"""Prometheus text exposition (format 0.0.4) of the aggregator's state, written by hand: the
format is a few lines per metric and a client library would be one more dependency."""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from anyware.monitor.aggregator import Aggregator

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def _fmt(v: float) -> str:
    if math.isnan(v):
        return "NaN"
    if math.isinf(v):
        return "+Inf" if v > 0 else "-Inf"
    return repr(float(v))


def _label(v: object) -> str:
    return str(v).replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def render(agg: Aggregator) -> str:
    lines: list[str] = []

    def metric(
        name: str, kind: str, help_: str, samples: Sequence[tuple[Mapping[str, object], float]]
    ) -> None:
        lines.append(f"# HELP anyware_monitor_{name} {help_}")
        lines.append(f"# TYPE anyware_monitor_{name} {kind}")
        for labels, value in samples:
            lab = ",".join(f'{k}="{_label(v)}"' for k, v in labels.items())
            lines.append(
                f"anyware_monitor_{name}{{{lab}}} {_fmt(value)}"
                if lab
                else f"anyware_monitor_{name} {_fmt(value)}"
            )

    st = agg.state
    now = time.time()
    with st.lock:
        ranks = sorted(st.ranks.values(), key=lambda i: i.rank)
        last: dict[int, dict[str, float | None]] = {}
        for row in reversed(st.rows[-200:]):
            last.setdefault(row["rank"], row)
        metric("ranks", "gauge", "Ranks that reported to the aggregator.", [({}, len(ranks))])
        metric(
            "step",
            "gauge",
            "Steps completed per rank.",
            [({"rank": i.rank}, i.step) for i in ranks],
        )
        metric(
            "seconds_since_heartbeat",
            "gauge",
            "Seconds since the rank was last heard from.",
            [({"rank": i.rank}, now - i.last_seen) for i in ranks],
        )
        metric(
            "collective_seq",
            "gauge",
            "Last collective sequence number entered per rank.",
            [({"rank": i.rank}, i.last_seq) for i in ranks],
        )
        for name, help_ in (
            ("dur", "Wall time of the last step in seconds."),
            (
                "compute",
                "Compute time (step minus data and blocking collectives) of the last step, seconds.",
            ),
            ("data", "Data-loading time of the last step in seconds."),
            ("comm", "Blocking collective time of the last step in seconds."),
            ("loss", "Loss of the last step."),
            ("grad_norm", "Gradient norm of the last step."),
            ("samples_per_s", "Samples per second of the last step."),
            ("mfu", "Model FLOPs utilisation of the last step."),
        ):
            samples = []
            for rank, row in sorted(last.items()):
                v = row.get(name)
                if isinstance(v, str):
                    v = float(v)
                if isinstance(v, int | float):
                    samples.append(({"rank": rank}, float(v)))
            metric(f"step_{name}" if name == "dur" else name, "gauge", help_, samples)
        metric(
            "memory_bytes",
            "gauge",
            "Device memory allocated per rank (cpu: resident set).",
            [({"rank": r}, s[-1][2]) for r, s in sorted(st.memory.items()) if s],
        )
        metric(
            "ingest_records_total",
            "counter",
            "Records accepted by the ingest endpoint.",
            [({}, st.accepted)],
        )
        reasons = {"malformed", "oversized", "schema", "unknown_rank", "unauthorized"} | set(
            st.rejected
        )
        metric(
            "ingest_rejected_total",
            "counter",
            "Records or requests rejected, by reason.",
            [({"reason": r}, st.rejected.get(r, 0)) for r in sorted(reasons)],
        )
    firing: dict[str, int] = {c.name: 0 for c in agg.checks}
    for a in agg.alerts.firing():
        firing[a.check] = firing.get(a.check, 0) + 1
    metric(
        "alerts_firing",
        "gauge",
        "Firing alerts per check.",
        [({"check": k}, v) for k, v in sorted(firing.items())],
    )
    return "\n".join(lines) + "\n"
