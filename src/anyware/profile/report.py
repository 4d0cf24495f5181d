"""A directory of rank traces → one :class:`ProfileReport`: find the files, analyse them one
at a time (only one rank's columns are in memory at once), drop what belongs to another run,
and compare the ranks: which is slowest, and on what."""

from __future__ import annotations

import multiprocessing
import os
import statistics
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from anyware.profile.analyze import analyze_rank
from anyware.profile.collect import collect
from anyware.profile.model import ProfileReport, RankReport, Slowest
from anyware.profile.reader import TraceFormatError

#: Names this package writes next to the traces, which are not rank traces.
OWN_FILES = ("merged", "summary")
#: Ranks of one run are profiled over the same steps, so their windows overlap; a trace that
#: starts or ends this far (µs) from all the others was recorded by another run.
RUN_GAP_US = 60e6
#: Total trace size from which ranks are analysed in parallel processes.
PARALLEL_MIN_BYTES = 64 << 20
MAX_WORKERS = 8


class NoTracesError(ValueError):
    """The path holds no readable trace at all."""


def find_traces(path: Path) -> list[Path]:
    """The trace files under ``path`` (a file, or a directory searched one level deep)."""
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise NoTracesError(f"{path} does not exist; pass the directory given to --profile/--out")
    found = sorted(
        p
        for pattern in ("*.json", "*.json.gz", "*/*.json", "*/*.json.gz")
        for p in path.glob(pattern)
        if p.is_file()
        and not p.name.startswith(".")
        and not any(p.name.startswith(o) for o in OWN_FILES)
    )
    if not found:
        raise NoTracesError(
            f"{path} holds no *.json trace files; record one with 'anyware profile record --out {path} -- ...'"
        )
    return found


def _analyze_file(f: Path, order: int) -> RankReport | list[str]:
    """One rank: its report, or the problems that made it unusable."""
    try:
        rt = collect(f, order=order)
    except TraceFormatError as e:
        return [f"skipped {f.name}: {e}"]
    if not len(rt.host) and not len(rt.device):
        return [
            f"skipped {f.name}: no profiler events (is it a torch.profiler trace?)",
            *rt.problems,
        ]
    return analyze_rank(rt)


def _workers(files: list[Path], workers: int | None) -> int:
    if workers is not None:
        return max(1, workers)
    total = sum(f.stat().st_size for f in files)
    # A worker process costs ~0.5 s to start (interpreter + numpy); below this size one
    # process is faster.
    if len(files) < 2 or total < PARALLEL_MIN_BYTES:
        return 1
    return max(1, min(len(files), os.cpu_count() or 1, MAX_WORKERS))


def analyze_path(
    path: Path, *, progress: Callable[[Path], None] | None = None, workers: int | None = None
) -> ProfileReport:
    """Analyse every trace under ``path``; bad files are reported and skipped.

    Ranks are analysed in parallel worker processes when there are several large files; each
    worker holds one rank's columns at a time, so memory stays bounded by
    ``workers x largest rank``.
    """
    problems: list[str] = []
    reports: list[RankReport] = []
    files = find_traces(path)
    n = _workers(files, workers)
    results: list[RankReport | list[str]] = []
    if n == 1:
        for order, f in enumerate(files):
            if progress:
                progress(f)
            results.append(_analyze_file(f, order))
    else:
        ctx = multiprocessing.get_context("spawn")  # no fork: the caller may run threads
        with ProcessPoolExecutor(max_workers=n, mp_context=ctx) as pool:
            futures = [pool.submit(_analyze_file, f, order) for order, f in enumerate(files)]
            for f, fut in zip(files, futures, strict=True):
                results.append(fut.result())
                if progress:
                    progress(f)
    for res in results:
        if isinstance(res, list):
            problems.extend(res)
        else:
            reports.append(res)
    if not reports:
        raise NoTracesError(f"no usable trace under {path}: " + "; ".join(problems))
    reports = _one_run(reports, problems)
    reports.sort(key=lambda r: r.rank)
    for r in reports:
        problems.extend(r.problems)
        if r.mode == "host":
            problems.append(
                f"rank {r.rank}: no device events; the breakdown is of host operators (CPU-only trace)"
            )
    slowest = _slowest(reports)
    return ProfileReport(
        source=str(path),
        ranks=reports,
        slowest=slowest,
        biggest_cost=_biggest_cost(reports),
        problems=problems,
    )


def _one_run(reports: list[RankReport], problems: list[str]) -> list[RankReport]:
    """Keep the traces of one run: same run id, same world size, overlapping windows, one
    trace per rank; the newest run wins."""
    newest = max(reports, key=lambda r: r.window_us[1] if r.window_us else 0.0)
    keep: list[RankReport] = []
    for r in reports:
        why = None
        if newest.run_id and r.run_id and r.run_id != newest.run_id:
            why = f"run id {r.run_id} differs from {newest.run_id}"
        elif newest.world_size and r.world_size and r.world_size != newest.world_size:
            why = f"world size {r.world_size} differs from {newest.world_size}"
        elif (
            r.window_us
            and newest.window_us
            and (
                r.window_us[1] < newest.window_us[0] - RUN_GAP_US
                or r.window_us[0] > newest.window_us[1] + RUN_GAP_US
            )
        ):
            gap = (newest.window_us[0] - r.window_us[1]) / 1e6
            why = f"recorded {gap:,.0f} s apart from the newest trace"
        if why:
            problems.append(
                f"ignored {Path(r.path).name} (rank {r.rank}): another run ({why}); analysing the newest run"
            )
        else:
            keep.append(r)
    by_rank: dict[int, RankReport] = {}
    for r in keep:
        old = by_rank.get(r.rank)
        if old is None:
            by_rank[r.rank] = r
            continue
        a, b = sorted((old, r), key=lambda x: x.window_us[1] if x.window_us else 0.0)
        problems.append(
            f"two traces claim rank {r.rank}: kept {Path(b.path).name}, ignored {Path(a.path).name}"
        )
        by_rank[r.rank] = b
    return list(by_rank.values())


def _slowest(reports: list[RankReport]) -> Slowest | None:
    """The rank with the most busy time per step. In a synchronous job every rank's step lasts
    as long as the slowest one's (the others wait inside the collectives), so step time does
    not tell them apart; busy time (compute + memory + other) does."""
    if len(reports) < 2:
        return None
    busy = {r.rank: r.per_step(r.busy_us) for r in reports}
    worst = max(reports, key=lambda r: busy[r.rank])
    others = [r for r in reports if r.rank != worst.rank]
    extra = {}
    for key in ("compute", "comm", "memory", "other", "idle"):
        mine = worst.per_step(worst.whole.parts()[key])
        extra[key] = mine - statistics.median(o.per_step(o.whole.parts()[key]) for o in others)
    from anyware.profile.classify import Bucket, device_bucket, host_bucket

    bucket_of = device_bucket if worst.mode == "device" else host_bucket
    deltas: dict[str, float] = {}
    for name, total in worst.totals.items():
        if bucket_of(name) is Bucket.COMM:  # waiting in a collective is not extra work
            continue
        base = statistics.median(o.per_step(o.totals.get(name, 0.0)) for o in others)
        deltas[name] = worst.per_step(total) - base
    ranked = sorted(deltas.items(), key=lambda kv: -kv[1])
    top = [(n, v) for n, v in ranked[:5] if v > 0]
    return Slowest(
        rank=worst.rank,
        busy_per_step_us=busy[worst.rank],
        median_busy_per_step_us=statistics.median(busy[o.rank] for o in others),
        extra_per_step_us=extra,
        top_extra=top,
    )


def _biggest_cost(reports: list[RankReport]) -> str:
    """One sentence: the largest share of the run's time, and the op or kernel behind it."""
    span = sum(r.whole.span_us for r in reports) or 1.0
    totals = {
        k: sum(r.whole.parts()[k] for r in reports)
        for k in ("compute", "comm", "memory", "other", "idle")
    }
    key, value = max(totals.items(), key=lambda kv: kv[1])
    labels = {
        "compute": "compute",
        "comm": "communication",
        "memory": "memory copies",
        "other": "device sync",
        "idle": "idle time",
    }
    where = "device" if reports[0].mode == "device" else "host"
    text = f"{labels[key]}: {100 * value / span:.1f}% of {where} time"
    if key == "idle":
        starved = [r for r in reports if r.launch and r.launch.host_bound]
        if starved:
            text += f" (host-bound: rank {starved[0].rank} waits on kernel launches {starved[0].launch.starved_pct:.0f}% of the time)"  # type: ignore[union-attr]
        elif where == "host":
            text += " (Python and framework overhead between operators)"
        return text
    bucket = {
        "compute": "compute",
        "comm": "communication",
        "memory": "memory copy",
        "other": "other (sync)",
    }[key]
    summed: dict[str, float] = {}
    for r in reports:
        for op in r.top_kernels or r.top_ops:
            if op.bucket == bucket:
                summed[op.name] = summed.get(op.name, 0.0) + op.total_us
    best = max(summed.items(), key=lambda kv: kv[1]) if summed else None
    if best is not None:
        from anyware.profile.classify import short_name

        text += f"; top: {short_name(best[0])} ({100 * best[1] / max(value, 1e-9):.0f}% of it)"
    return text
