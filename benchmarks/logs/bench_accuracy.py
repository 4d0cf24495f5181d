"""Grouping accuracy (GA) and F1 grouping accuracy (FGA) on the Loghub-2k samples: anyware's
miner (through ``parse_file``, with each system's published log_format and masks) beside Drain3
(the PyPI package, with the same masks and the tuned similarity threshold / depth published for
Drain). Data and licence: ../shared/data/loghub2k (README.md), read in place.

    python benchmarks/logs/bench_accuracy.py

Anchors: Drain ≈ 0.865 and Brain ≈ 0.983 GA averaged over the Loghub samples.
"""

from __future__ import annotations

import csv
import sys
import tempfile
import time
from pathlib import Path

from anyware.logs.formats import KNOWN_FORMATS, LOGHUB_MASKS
from anyware.logs.metrics import grouping_scores
from anyware.logs.parse import parse_file

DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data" / "loghub2k"
#: Drain's tuned (similarity threshold, depth) per system, from the data README.
DRAIN_PARAMS = {
    "HDFS": (0.5, 4),
    "Hadoop": (0.5, 4),
    "Spark": (0.5, 4),
    "Zookeeper": (0.5, 4),
    "Windows": (0.7, 5),
    "Android": (0.2, 6),
    "HealthApp": (0.2, 4),
    "Apache": (0.5, 4),
    "OpenSSH": (0.6, 5),
    "OpenStack": (0.5, 5),
}


def _rows(path: Path) -> list[dict[str, str]]:
    with open(path, encoding="utf-8", newline="") as f:
        return list(csv.DictReader(f))


def drain3_labels(system: str, contents: list[str]) -> list[int]:
    from drain3 import TemplateMiner
    from drain3.masking import MaskingInstruction
    from drain3.template_miner_config import TemplateMinerConfig

    st, depth = DRAIN_PARAMS[system]
    cfg = TemplateMinerConfig()
    cfg.drain_sim_th = st
    cfg.drain_depth = depth
    cfg.profiling_enabled = False
    cfg.masking_instructions = [MaskingInstruction(m, "*") for m in LOGHUB_MASKS[system]]
    miner = TemplateMiner(config=cfg)
    return [miner.add_log_message(c.strip())["cluster_id"] for c in contents]


def main() -> None:
    if not (DATA / "README.md").is_file():
        sys.exit(f"Loghub-2k data not found at {DATA}")
    try:
        import drain3  # noqa: F401

        have_drain = True
    except ImportError:
        have_drain = False
        print("drain3 is not installed: showing anyware only (pip install drain3)")
    ours_ga, drain_ga = [], []
    print(
        f"{'system':10s} {'GA':>6s} {'FGA':>6s} {'drain3 GA':>10s} {'drain3 FGA':>10s} {'ms':>6s}"
    )
    with tempfile.TemporaryDirectory() as tmp:
        for system in DRAIN_PARAMS:
            truth = _rows(DATA / system / f"{system}_2k.log_structured.csv")
            t0 = time.perf_counter()
            out = Path(tmp) / f"{system}_structured.csv"
            parse_file(
                DATA / system / f"{system}_2k.log",
                out=out,
                log_format=KNOWN_FORMATS[system],
                masks=LOGHUB_MASKS[system],
            )
            ms = (time.perf_counter() - t0) * 1e3
            labels = [t["EventId"] for t in truth]
            ga, fga = grouping_scores(labels, [r["EventId"] for r in _rows(out)])
            ours_ga.append(ga)
            dga = dfga = float("nan")
            if have_drain:
                dga, dfga = grouping_scores(
                    labels, drain3_labels(system, [t["Content"] for t in truth])
                )
                drain_ga.append(dga)
            print(f"{system:10s} {ga:6.3f} {fga:6.3f} {dga:10.3f} {dfga:10.3f} {ms:6.0f}")
    avg = sum(ours_ga) / len(ours_ga)
    line = f"average GA: anyware {avg:.3f} (target >= 0.98, Brain 0.983, Drain 0.865)"
    if drain_ga:
        d = sum(drain_ga) / len(drain_ga)
        line += f", drain3 {d:.3f} on the same files; ratio {avg / d:.2f}x"
    print(line)


if __name__ == "__main__":
    main()
