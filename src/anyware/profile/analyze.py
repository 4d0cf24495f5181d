"""Where one rank's time went: breakdown, overlap, top ops and kernels, launches, memory.

With device events (kernels on streams) the breakdown is of the device's time, HTA's way:
the span runs from the first kernel's start to the last kernel's end; compute, communication,
memory copy and other are the exclusive lengths of the unions of their kernels (priority in
that order, see :mod:`anyware.profile.intervals`); idle is the rest. A CPU-only trace has no
device lanes, so the host threads play the device: each operator's self intervals (see
:mod:`anyware.profile.hostwalk`) are the "kernels", and the span is the profiled steps.

Per step, device events belong to the step whose window contains their *launch* (the runtime
call with the same correlation id), as in HTA, because the device runs behind the host.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from anyware.profile import intervals as iv
from anyware.profile.classify import Bucket, host_bucket, is_wait
from anyware.profile.collect import RankTrace
from anyware.profile.hostwalk import walk
from anyware.profile.model import (
    Breakdown,
    CommStat,
    LaunchStats,
    OpStat,
    RankReport,
    StepBreakdown,
)

Arr = np.ndarray[Any, Any]

#: Share of the device span spent waiting for the host (gaps that end with a kernel launched
#: only after the device went idle) above which a rank is called host-bound. A quarter is
#: where launch overhead is clearly the first thing to fix (CUDA graphs, fusion, bigger
#: batches) rather than a secondary effect.
HOST_BOUND_FRACTION = 0.25
TOP = 15


def _breakdown(s: Arr, e: Arr, b: Arr, span: float) -> Breakdown:
    parts, cov = iv.layered(s, e, b, len(Bucket))
    return Breakdown(
        span_us=span,
        compute_us=parts[0],
        comm_us=parts[1],
        memory_us=parts[2],
        other_us=parts[3],
        idle_us=max(span - cov, 0.0),
    )


def _overlap_pct(s: Arr, e: Arr, b: Arr) -> float | None:
    comm = b == Bucket.COMM
    if not comm.any():
        return None
    comp = b == Bucket.COMPUTE
    total = iv.covered(s[comm], e[comm])
    if total <= 0:
        return None
    return 100.0 * iv.overlap(s[comm], e[comm], s[comp], e[comp]) / total


def _inherit(rt: RankTrace, op_b: Arr, seg_s: Arr, seg_tid: Arr, seg_b: Arr) -> Arr:
    """Self intervals inside a communication span (a collective, or a wait for one) on the
    same thread are communication: the copies a collective makes (``aten::copy_`` under
    ``anyware.comm:alltoall``) are the collective's time, not memory copies or compute."""
    out = seg_b.copy()
    sel = op_b == Bucket.COMM
    if not sel.any():
        return out
    ts = rt.host.np("ts")
    te = ts + np.maximum(rt.host.np("dur"), 0.0)
    tid = rt.host.np("tid")
    for t in np.unique(tid[sel]).tolist():
        mine = sel & (tid == t)
        us, ue = iv.union(ts[mine], te[mine])
        on = np.flatnonzero(seg_tid == t)
        k = np.searchsorted(us, seg_s[on], side="right") - 1
        inside = (k >= 0) & (seg_s[on] < ue[np.clip(k, 0, None)])
        out[on[inside]] = Bucket.COMM
    return out


def _comm_ops(
    names: list[str], name_ids: Arr, s: Arr, e: Arr, comm: Arr, comp_s: Arr, comp_e: Arr
) -> list[CommStat]:
    """Per communication name: calls, summed duration, and the share of its time that some
    compute interval (on any thread or stream) overlapped."""
    out = []
    ids = name_ids[comm]
    cs, ce = s[comm], e[comm]
    for nid in np.unique(ids).tolist():
        sel = ids == nid
        total = iv.covered(cs[sel], ce[sel])
        over = iv.overlap(cs[sel], ce[sel], comp_s, comp_e) if total > 0 else 0.0
        out.append(
            CommStat(
                name=names[nid],
                count=int(sel.sum()),
                total_us=float((ce[sel] - cs[sel]).sum()),
                overlap_pct=100.0 * over / total if total > 0 else None,
            )
        )
    return sorted(out, key=lambda c: -c.total_us)


def _step_index(points: Arr, steps: list[tuple[int, float, float]]) -> Arr:
    """Index into ``steps`` of the step window containing each point, or -1."""
    if not steps or points.size == 0:
        return np.full(points.size, -1, dtype=np.int64)
    starts = np.array([s[1] for s in steps])
    ends = starts + np.array([s[2] for s in steps])
    k = np.searchsorted(starts, points, side="right") - 1
    ok = (k >= 0) & (points <= ends[np.clip(k, 0, None)])
    return np.where(ok, k, -1)


def _launch_times(rt: RankTrace) -> tuple[Arr, Arr]:
    """Per device event: the launching runtime call's start (or NaN) and its row (or -1)."""
    dev_corr = rt.device.np("key")
    r_corr = rt.runtime.np("key")
    launch = np.full(dev_corr.size, np.nan)
    row = np.full(dev_corr.size, -1, dtype=np.int64)
    if r_corr.size and dev_corr.size:
        order = np.argsort(r_corr, kind="stable")
        sorted_corr = r_corr[order]
        pos = np.clip(np.searchsorted(sorted_corr, dev_corr), 0, sorted_corr.size - 1)
        hit = (sorted_corr[pos] == dev_corr) & (dev_corr >= 0)
        row[hit] = order[pos[hit]]
        launch[hit] = rt.runtime.np("ts")[row[hit]]
    return launch, row


def _top(
    names: list[str], name_ids: Arr, weight: Arr, kind: str, bucket_of: Any, extra: Any, n: int
) -> tuple[list[OpStat], dict[str, float]]:
    if name_ids.size == 0:
        return [], {}
    totals = np.bincount(name_ids, weights=weight, minlength=len(names))
    counts = np.bincount(name_ids, minlength=len(names))
    # The representative instance of each name (its longest), for module/source/launcher.
    order = np.argsort(-weight, kind="stable")
    uniq, first = np.unique(name_ids[order], return_index=True)
    rep = dict(zip(uniq.tolist(), order[first].tolist(), strict=True))
    present = np.flatnonzero(counts)
    by_total = present[np.argsort(-totals[present], kind="stable")]
    stats = []
    for nid in by_total[:n].tolist():
        module, source, launcher = extra(rep[nid])
        stats.append(
            OpStat(
                name=names[nid],
                kind=kind,
                bucket=bucket_of(nid),
                count=int(counts[nid]),
                total_us=float(totals[nid]),
                module=module,
                source=source,
                launched_by=launcher,
            )
        )
    all_totals = {names[i]: float(totals[i]) for i in present.tolist()}
    return stats, all_totals


def analyze_rank(rt: RankTrace, *, top: int = TOP) -> RankReport:
    """Everything the summary and the Profile page show about one rank."""
    hw = walk(rt)
    names = rt.names
    steps = sorted(rt.steps, key=lambda s: s[1])
    host_name = rt.host.np("name")

    def label(nid: int) -> str | None:
        return (
            names[nid][len("nn.Module: ") :]
            if nid >= 0 and names[nid].startswith("nn.Module: ")
            else (names[nid] if nid >= 0 else None)
        )

    def op_extra(i: int) -> tuple[str | None, str | None, str | None]:
        return label(int(hw.module[i])), label(int(hw.source[i])), None

    op_bucket: dict[int, str] = {}

    def host_bucket_of(nid: int) -> str:
        b = op_bucket.get(nid)
        if b is None:
            b = op_bucket[nid] = host_bucket(names[nid]).label
        return b

    top_ops, op_totals = _top(names, host_name, hw.self_us, "op", host_bucket_of, op_extra, top)
    problems = list(rt.problems)
    if rt.skipped:
        problems.append(f"{rt.path.name}: skipped {rt.skipped} complete events without ts/dur/name")

    if len(rt.device):
        mode = "device"
        s = rt.device.np("ts")
        e = s + np.maximum(rt.device.np("dur"), 0.0)
        b = (
            np.frombuffer(rt.device_bucket, dtype=np.int8)
            if len(rt.device_bucket)
            else np.zeros(0, np.int8)
        )
        whole = _breakdown(s, e, b, float(e.max() - s.min()))
        overlap = _overlap_pct(s, e, b)
        comp = b == Bucket.COMPUTE
        comm_ops = _comm_ops(names, rt.device.np("name"), s, e, b == Bucket.COMM, s[comp], e[comp])
        launch_ts, _ = _launch_times(rt)
        anchor = np.where(np.isnan(launch_ts), s, launch_ts)
        step_of = _step_index(anchor, steps)
        step_reports = []
        for k, (num, _, sdur) in enumerate(steps):
            sel = step_of == k
            if not sel.any():
                step_reports.append(
                    StepBreakdown(step=num, duration_us=sdur, breakdown=None, overlap_pct=None)
                )
                continue
            ss, se, sb = s[sel], e[sel], b[sel]
            step_reports.append(
                StepBreakdown(
                    step=num,
                    duration_us=sdur,
                    breakdown=_breakdown(ss, se, sb, float(se.max() - ss.min())),
                    overlap_pct=_overlap_pct(ss, se, sb),
                )
            )
        launch = _launch_stats(rt, s, e, launch_ts, steps)
        host_keys = rt.host.np("key")
        key_order = np.argsort(host_keys, kind="stable")
        sorted_keys = host_keys[key_order]
        dev_ext = rt.device.np("ext")

        def kernel_extra(i: int) -> tuple[str | None, str | None, str | None]:
            ext = int(dev_ext[i])
            pos = int(np.searchsorted(sorted_keys, ext))
            if ext < 0 or pos >= sorted_keys.size or sorted_keys[pos] != ext:
                return None, None, None
            j = int(key_order[pos])
            return label(int(hw.module[j])), label(int(hw.source[j])), names[int(host_name[j])]

        dev_names = rt.device.np("name")
        uniq, first = np.unique(dev_names, return_index=True)
        bucket_of_dev = {
            int(nid): Bucket(int(b[i])).label for nid, i in zip(uniq, first, strict=True)
        }
        top_kernels, kernel_totals = _top(
            names, dev_names, e - s, "kernel", bucket_of_dev.__getitem__, kernel_extra, top
        )
    else:
        mode = "host"
        name_bucket = np.array([int(host_bucket(nm)) for nm in names] or [0], dtype=np.int8)
        seg_b = name_bucket[host_name[hw.seg_op]] if hw.seg_op.size else np.zeros(0, np.int8)
        s, e = hw.seg_start, hw.seg_end
        if hw.seg_op.size:
            seg_b = _inherit(rt, name_bucket[host_name], s, rt.host.np("tid")[hw.seg_op], seg_b)
        whole, step_reports = _host_breakdowns(s, e, seg_b, steps)
        overlap = _overlap_pct(s, e, seg_b)
        op_b = name_bucket[host_name] if host_name.size else np.zeros(0, np.int8)
        waits = np.array([is_wait(nm) for nm in names] or [False], dtype=bool)
        hs = rt.host.np("ts")
        comp = seg_b == Bucket.COMPUTE
        comm_ops = _comm_ops(  # the collectives; the waits for them are not one
            names,
            host_name,
            hs,
            hs + np.maximum(rt.host.np("dur"), 0.0),
            (op_b == Bucket.COMM) & ~waits[host_name],
            s[comp],
            e[comp],
        )
        launch = None
        top_kernels, kernel_totals = [], {}
        if not len(rt.host):
            problems.append(
                f"{rt.path.name}: no operators and no device events; nothing to break down"
            )

    step_durs = [d for _, _, d in steps]
    return RankReport(
        rank=rt.rank,
        path=str(rt.path),
        mode=mode,
        events=rt.events,
        whole=whole,
        overlap_pct=overlap,
        steps=step_reports,
        mean_step_us=float(np.mean(step_durs)) if step_durs else None,
        top_ops=top_ops,
        top_kernels=top_kernels,
        launch=launch,
        memory=[
            {
                "device": p.device,
                "peak_allocated": p.peak_allocated,
                "peak_reserved": p.peak_reserved,
            }
            for p in rt.memory.values()
        ],
        problems=problems,
        totals=kernel_totals if mode == "device" else op_totals,
        world_size=rt.world_size,
        run_id=rt.run_id,
        window_us=_window(rt),
        comm_ops=comm_ops,
    )


def _window(rt: RankTrace) -> tuple[float, float] | None:
    """The trace's wall-clock extent in µs since the epoch (for telling runs apart)."""
    if not rt.base_us:
        return None
    starts = [c.np("ts") for c in (rt.host, rt.device) if len(c)]
    if not starts:
        return None
    lo = min(float(a.min()) for a in starts)
    hi = max(float((c.np("ts") + c.np("dur")).max()) for c in (rt.host, rt.device) if len(c))
    return rt.base_us + lo, rt.base_us + hi


def _host_breakdowns(
    s: Arr, e: Arr, b: Arr, steps: list[tuple[int, float, float]]
) -> tuple[Breakdown, list[StepBreakdown]]:
    if not steps:
        span = float(e.max() - s.min()) if s.size else 0.0
        return _breakdown(s, e, b, span), []
    reports = []
    parts = np.zeros(len(Bucket) + 1)
    for num, st, dur in steps:
        lo, hi = st, st + dur
        cs, ce = iv.clip(s, e, lo, hi)
        keep = np.minimum(e, hi) > np.maximum(s, lo)
        bd = _breakdown(cs, ce, b[keep], dur)
        reports.append(
            StepBreakdown(
                step=num, duration_us=dur, breakdown=bd, overlap_pct=_overlap_pct(cs, ce, b[keep])
            )
        )
        parts += [bd.compute_us, bd.comm_us, bd.memory_us, bd.other_us, bd.idle_us]
    whole = Breakdown(
        span_us=float(sum(d for _, _, d in steps)),
        compute_us=float(parts[0]),
        comm_us=float(parts[1]),
        memory_us=float(parts[2]),
        other_us=float(parts[3]),
        idle_us=float(parts[4]),
    )
    return whole, reports


def _launch_stats(
    rt: RankTrace, s: Arr, e: Arr, launch_ts: Arr, steps: list[tuple[int, float, float]]
) -> LaunchStats:
    is_launch = rt.runtime.np("ext") == 1
    n = int(is_launch.sum())
    if steps:
        host_span = float(sum(d for _, _, d in steps))
    else:
        r_ts = rt.runtime.np("ts")
        host_span = float((r_ts + rt.runtime.np("dur")).max() - r_ts.min()) if r_ts.size else 0.0
    launch_dur = rt.runtime.np("dur")[is_launch]
    delay = s - launch_ts
    delay = delay[~np.isnan(delay)]
    # Gaps in device activity that end with an event launched only after the gap began:
    # the device had nothing queued and waited for the host.
    order = np.argsort(s, kind="stable")
    ss, ee, ll = s[order], np.maximum.accumulate(e[order]), launch_ts[order]
    starved = 0.0
    if ss.size > 1:
        gap = ss[1:] - ee[:-1]
        waiting = (gap > 0) & (ll[1:] > ee[:-1])
        starved = float(gap[waiting].sum())
    span = float(e.max() - s.min()) if s.size else 0.0
    frac = starved / span if span > 0 else 0.0
    return LaunchStats(
        launches=n,
        launches_per_s=n / (host_span / 1e6) if host_span > 0 else 0.0,
        mean_launch_us=float(launch_dur.mean()) if launch_dur.size else None,
        median_queue_us=float(np.median(delay)) if delay.size else None,
        starved_us=starved,
        starved_pct=100.0 * frac,
        host_bound=frac >= HOST_BOUND_FRACTION,
    )


__all__ = ["HOST_BOUND_FRACTION", "analyze_rank"]
