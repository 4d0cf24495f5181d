"""Bad input: empty, binary, huge lines, truncated archives, missing paths, CRLF, bad UTF-8."""

from __future__ import annotations

import gzip
from pathlib import Path

import pytest
import zstandard

from anyware.logs.analyze import analyze
from anyware.logs.ingest import IngestError, discover, iter_blocks
from anyware.logs.lineinfo import line_rank, line_time, name_rank_host

OOM = b"2026-01-01 00:00:05,000 ERROR torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 1.00 GiB\n"


def test_nothing_found_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(IngestError, match="no log files found"):
        analyze([tmp_path / "nope" / "*.log"])


def test_empty_and_binary_files_do_not_crash(tmp_path: Path) -> None:
    (tmp_path / "rank0.log").write_bytes(b"")
    (tmp_path / "rank1.log").write_bytes(bytes(range(256)) * 400 + b"\x00\x1f\xff\n" + OOM)
    a = analyze([tmp_path])
    assert (a.root_cause.rank, str(a.root_cause.category)) == (1, "device_oom")


def test_huge_single_line_is_cut_not_loaded_whole(tmp_path: Path) -> None:
    p = tmp_path / "rank2.log"
    with open(p, "wb") as f:
        f.write(b"x" * (20 << 20))  # 20 MB without a newline
        f.write(b"\n" + OOM)
    blocks = list(iter_blocks(discover([p])[0], block_bytes=4 << 20))
    assert max(len(b) for b in blocks) <= (8 << 20) + (4 << 20) + 1
    assert analyze([p]).root_cause.rank == 2


def test_truncated_gzip_is_reported_and_rest_analysed(tmp_path: Path) -> None:
    data = gzip.compress(b"2026-01-01 00:00:00,000 INFO step 1\n" * 20000 + OOM)
    (tmp_path / "rank3.log.gz").write_bytes(data[: len(data) // 2])
    (tmp_path / "rank4.log.zst").write_bytes(zstandard.ZstdCompressor().compress(OOM))
    a = analyze([tmp_path, tmp_path / "missing.log"])
    assert a.root_cause.rank == 4
    assert any("rank3.log.gz" in e and "truncated" in e for e in a.errors), a.errors
    assert any("missing.log" in e for e in a.errors)


def test_crlf_and_invalid_utf8(tmp_path: Path) -> None:
    (tmp_path / "rank5.log").write_bytes(b"caf\xe9 \xff\xfe\r\n" + OOM.replace(b"\n", b"\r\n"))
    a = analyze([tmp_path])
    assert a.root_cause.rank == 5
    assert not a.root_cause.message.endswith("\r")


def test_rank_and_host_from_names_and_prefixes() -> None:
    assert name_rank_host("node03-rank17.log") == (17, "node03")
    assert name_rank_host("train_worker5") == (5, None)
    assert name_rank_host("slurm-1234.out") == (None, None)
    assert line_rank("[rank12]:Traceback (most recent call last):") == 12
    assert line_rank("[default3]:hello") == 3
    assert line_rank("7: srun label") == 7
    assert line_rank("[Rank 4] Watchdog caught collective operation timeout") == 4
    assert line_time("2026-01-01T00:00:01.5+01:00 x") == pytest.approx(1767225601.5 - 3600)
    assert line_time("no time here") is None


def test_blocks_are_whole_lines_and_keep_a_final_partial_line(tmp_path: Path) -> None:
    data = b"".join(b"line %d\n" % i for i in range(5000)) + b"last without newline"
    p = tmp_path / "rank0.log"
    p.write_bytes(data)
    blocks = list(iter_blocks(discover([p])[0], block_bytes=4096))
    assert b"".join(blocks) == data
    assert all(b.endswith(b"\n") for b in blocks[:-1])
    assert blocks[-1].endswith(b"last without newline") and len(blocks[-1]) > 100


def test_unreadable_file_is_reported_and_skipped(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from anyware.logs import ingest

    (tmp_path / "rank0.log").write_bytes(OOM)
    (tmp_path / "rank1.log").write_bytes(OOM)
    real_open = ingest._open

    def deny(src: ingest.Source):  # type: ignore[no-untyped-def]
        if src.path.name == "rank0.log":
            raise PermissionError(13, "Permission denied")
        return real_open(src)

    monkeypatch.setattr(ingest, "_open", deny)
    a = analyze([tmp_path])
    assert a.root_cause.rank == 1
    assert any("rank0.log" in e and "Permission denied" in e for e in a.errors), a.errors
