"""Root cause vs victims on generated multi-rank corpora: every failure class, both layouts."""

from __future__ import annotations

import json
from pathlib import Path
from types import ModuleType

import pytest

from anyware.logs.analyze import analyze
from anyware.logs.model import Category

FAILURES = (
    "collective_timeout",
    "ccl_error",
    "device_oom",
    "xid",
    "ecc",
    "segfault",
    "nonfinite",
    "python_exception",
    "launcher",
    "network",
    "filesystem",
    "killed",
    "hang",
)


def test_generator_covers_every_category_but_unknown(corpus: ModuleType) -> None:
    assert set(corpus.FAILURES) == set(FAILURES)
    assert set(FAILURES) == {c.value for c in Category} - {"unknown"}


@pytest.mark.parametrize("failure", FAILURES)
def test_root_cause_per_failure_class(corpus: ModuleType, tmp_path: Path, failure: str) -> None:
    truth = corpus.generate(tmp_path, failure=failure, ranks=24, seed=11, gzip_some=True)
    a = analyze([tmp_path])
    rc = a.root_cause
    assert (rc.rank, str(rc.category)) == (truth.rank, failure), rc.to_dict()
    assert rc.host == truth.host
    assert rc.confidence > 0.25
    assert truth.rank not in rc.victims
    # The launcher's summary names a victim as "first observed failure"; we must not follow it.
    roles = {r["rank"]: r["role"] for r in a.ranks}
    assert roles[truth.rank] == "root_cause"
    assert sum(1 for v in roles.values() if v == "victim") >= 20
    assert a.errors == []


@pytest.mark.parametrize("failure", ["device_oom", "hang", "killed", "nonfinite"])
def test_root_cause_in_one_mixed_stream(corpus: ModuleType, tmp_path: Path, failure: str) -> None:
    truth = corpus.generate(tmp_path, failure=failure, ranks=12, seed=5, layout="mixed")
    rc = analyze([tmp_path / "*.log"]).root_cause
    assert (rc.rank, str(rc.category)) == (truth.rank, failure), rc.to_dict()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_culprit_varies_with_seed(corpus: ModuleType, tmp_path: Path, seed: int) -> None:
    truth = corpus.generate(tmp_path, failure="ccl_error", ranks=32, seed=seed)
    rc = analyze([tmp_path], workers=1).root_cause
    assert (rc.rank, str(rc.category)) == (truth.rank, "ccl_error")


def test_json_contract(corpus: ModuleType, tmp_path: Path) -> None:
    truth = corpus.generate(tmp_path / "logs", failure="device_oom", ranks=8, seed=2)
    d = analyze([tmp_path / "logs"]).to_dict()
    json.dumps(d, allow_nan=False)
    for key in ("root_cause", "categories", "clusters", "ranks", "bytes", "lines", "seconds"):
        assert key in d
    for key in ("rank", "host", "category", "time", "file", "line", "message", "confidence"):
        assert key in d["root_cause"]
    assert d["bytes"] == truth.bytes
    assert d["lines"] > 8 * 150
    assert d["categories"]["collective_timeout"] >= 7
    # Warnings that every rank prints score below the failure's own lines.
    top = d["clusters"][0]
    assert top["new_after_failure"] or top["count"] == 1
    assert all(e["kind"] in ("alert", "instant") for e in d["timeline"])


def test_routine_overflow_is_not_a_root_cause(tmp_path: Path) -> None:
    (tmp_path / "rank0.log").write_text(
        "2026-01-01 00:00:00,000 INFO [deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted "
        "loss scale: 65536, reducing to 32768\n2026-01-01 00:00:01,000 INFO step 1 | loss 2.1\n"
    )
    rc = analyze([tmp_path]).root_cause
    assert rc.category is Category.UNKNOWN and rc.rank is None


def test_no_failure_gives_unknown(tmp_path: Path) -> None:
    (tmp_path / "rank0.log").write_text("2026-01-01 00:00:00,000 INFO step 1 | loss 2.1\n" * 50)
    a = analyze([tmp_path])
    assert a.root_cause.category is Category.UNKNOWN
    assert a.root_cause.confidence == 0.0
    assert a.lines == 50


def test_blocks_scanned_in_parallel_merge_like_one_pass(corpus: ModuleType, tmp_path: Path) -> None:
    from anyware.logs.analyze import merge
    from anyware.logs.ingest import discover
    from anyware.logs.scan import scan_source

    truth = corpus.generate(tmp_path, failure="hang", ranks=8, seed=9, layout="mixed")
    src = discover([tmp_path / "job.log"])[0]
    whole = scan_source(src)
    parts = scan_source(src, block_bytes=16 << 10)
    assert parts.lines == whole.lines and parts.bytes == whole.bytes == src.size
    assert [(f.line, f.code, f.rank) for f in parts.findings] == [
        (f.line, f.code, f.rank) for f in whole.findings
    ]
    assert parts.progress == whole.progress and parts.last_t == whole.last_t
    rc = merge([parts]).root_cause
    assert (rc.rank, str(rc.category)) == (truth.rank, "hang")


def test_without_timestamps_the_most_specific_error_wins(tmp_path: Path) -> None:
    (tmp_path / "rank0.log").write_text(
        "step 10 loss 2.0\nConnectionResetError: [Errno 104] Connection reset by peer\n"
    )
    (tmp_path / "rank5.log").write_text(
        "step 10 loss 2.0\n[rank5]: torch.OutOfMemoryError: CUDA out of memory. Tried to "
        "allocate 2.00 GiB\n"
    )
    rc = analyze([tmp_path]).root_cause
    assert (rc.rank, str(rc.category)) == (5, "device_oom")
