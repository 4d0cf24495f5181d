"""Throughput of ``anyware logs analyze`` and ``parse`` on ~1 GB of generated training logs,
beside Drain3 (the PyPI package) on a 100 MB sample of the same logs, in the same run.

    python benchmarks/logs/bench_throughput.py [--gb 1.0] [--drain-mb 100] [--ranks 256]

The corpus (a device OOM on one of 256 ranks, with its cascade) is written under a temporary
directory and deleted at the end. ``analyze`` and ``parse`` each run in a fresh subprocess so
their peak RSS can be reported (target: <= 2 GB). Targets on the 2-core reference machine:
analyze 1 GB <= 5 s, parse 1 GB <= 15 s. Ratios are MB/s against Drain3's MB/s; Drain3 uses one
core, anyware both, so the per-core ratio is half the printed one.
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import corpus


def _child(code: str) -> tuple[dict[str, object], float]:
    """Run ``code`` in a fresh interpreter; its last stdout line is JSON. Returns it and the
    child's own peak RSS in MB (measured inside it, so earlier children do not count)."""
    # VmHWM is the peak of this process image only (ru_maxrss would include the parent's
    # memory inherited across fork/exec).
    code += (
        ";import sys as _s;_s.stderr.write([l for l in open('/proc/self/status')"
        " if l.startswith('VmHWM')][0].split()[1])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1]), int(out.stderr.split()[-1]) / 1024


def _cpu_line(what: str, res: dict[str, object]) -> None:
    # CPU seconds of the measured call (process_time: all threads) do not grow when other jobs
    # load the machine the way wall time does; idle 2-core wall time lies in cpu/2 .. cpu.
    cpu = float(res["cpu"])  # type: ignore[arg-type]
    per_gb = cpu / (int(res["bytes"]) / 1e9)  # type: ignore[call-overload]
    print(
        f"  {what}: {cpu:.1f} CPU s = {per_gb:.1f} CPU s/GB -> idle 2-core wall "
        f"{per_gb / 2:.1f}..{per_gb:.1f} s/GB"
    )


def drain3_mb_s(path: Path, limit: int) -> tuple[float, int, int]:
    from drain3 import TemplateMiner
    from drain3.template_miner_config import TemplateMinerConfig

    cfg = TemplateMinerConfig()
    cfg.profiling_enabled = False
    miner = TemplateMiner(config=cfg)
    n = 0
    size = 0
    t0 = time.perf_counter()
    with open(path, encoding="utf-8", errors="replace") as f:
        for line in f:
            miner.add_log_message(line.rstrip("\n"))
            n += 1
            size += len(line)
            if size >= limit:
                break
    dt = time.perf_counter() - t0
    return size / dt / 1e6, n, len(miner.drain.clusters)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gb", type=float, default=1.0)
    ap.add_argument("--drain-mb", type=float, default=100.0)
    ap.add_argument("--ranks", type=int, default=256)
    a = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="anyware-logs-bench-"))
    try:
        t0 = time.perf_counter()
        truth = corpus.generate(
            tmp / "job", failure="device_oom", ranks=a.ranks, seed=7, target_bytes=int(a.gb * 1e9)
        )
        print(
            f"generated {truth.bytes / 1e9:.2f} GB in {len(truth.files)} files "
            f"({a.ranks} ranks) in {time.perf_counter() - t0:.1f} s"
        )
        one = tmp / "all.log"  # parse takes one file: the rank files back to back
        with open(one, "wb") as out:
            for name in truth.files:
                with open(tmp / "job" / name, "rb") as f:
                    shutil.copyfileobj(f, out, 16 << 20)
        for p in [*sorted((tmp / "job").iterdir()), one]:  # warm the page cache for both
            with open(p, "rb") as f:
                while f.read(64 << 20):
                    pass

        try:
            d_mbs, d_lines, d_clusters = drain3_mb_s(one, int(a.drain_mb * 1e6))
            print(
                f"drain3 (1 core): {d_lines:,} lines, {d_clusters} clusters, {d_mbs:.1f} MB/s "
                f"({d_lines / (a.drain_mb * 1e6 / d_mbs / 1e6) / 1e3:.0f}k lines/s)"
            )
        except ImportError:
            d_mbs = float("nan")
            print("drain3 is not installed (pip install drain3): ratios show as nan")

        res, rss = _child(
            "import json,time,polars;from anyware.logs.analyze import analyze;"
            "c=time.process_time();t=time.perf_counter();"
            f"r=analyze([{str(tmp / 'job')!r}]).to_dict();"
            "print(json.dumps({'s':time.perf_counter()-t,'cpu':time.process_time()-c,'bytes':r['bytes'],"
            "'rank':r['root_cause']['rank'],'cat':r['root_cause']['category']}))"
        )
        s = float(res["s"])  # type: ignore[arg-type]
        mbs = int(res["bytes"]) / s / 1e6  # type: ignore[call-overload]
        ok = res["rank"] == truth.rank and res["cat"] == truth.category
        print(
            f"anyware logs analyze: {int(res['bytes']) / 1e9:.2f} GB in {s:.2f} s = "  # type: ignore[call-overload]
            f"{mbs:.0f} MB/s, {mbs / d_mbs:.0f}x drain3 ({mbs / d_mbs / 2:.0f}x per core), "
            f"peak RSS {rss:.0f} MB, root cause {'right' if ok else 'WRONG'} "
            f"(rank {res['rank']} {res['cat']}); target <= 5 s/GB"
        )
        _cpu_line("analyze", res)

        res, rss = _child(
            "import json,time,polars;from anyware.logs.parse import parse_file;"
            "c=time.process_time();t=time.perf_counter();"
            f"r=parse_file({str(one)!r}, out={str(tmp / 'out' / 'all_structured.csv')!r},"
            "log_format='auto');print(json.dumps({'s':time.perf_counter()-t,"
            "'cpu':time.process_time()-c,'bytes':r['bytes'],"
            "'lines':r['lines'],'templates':r['templates']}))"
        )
        s = float(res["s"])  # type: ignore[arg-type]
        mbs = int(res["bytes"]) / s / 1e6  # type: ignore[call-overload]
        print(
            f"anyware logs parse: {int(res['bytes']) / 1e9:.2f} GB, {res['lines']:,} lines, "  # type: ignore[call-overload]
            f"{res['templates']} templates in {s:.2f} s = {mbs:.0f} MB/s, "
            f"{mbs / d_mbs:.0f}x drain3 ({mbs / d_mbs / 2:.0f}x per core), "
            f"peak RSS {rss:.0f} MB; target <= 15 s/GB"
        )
        _cpu_line("parse", res)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
