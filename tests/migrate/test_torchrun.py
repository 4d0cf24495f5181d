"""The launcher wrapper's account of failed ranks: order, wording and exit status."""

from __future__ import annotations

from dataclasses import dataclass

from anyware.migrate._torchrun import describe, exit_status


@dataclass
class _Failure:  # the fields of torch's ProcessFailure that the wrapper reads
    pid: int
    exitcode: int
    timestamp: int


def test_exit_status_follows_the_shell() -> None:
    assert exit_status(3) == 3
    assert exit_status(-9) == 137  # SIGKILL, as a shell reports it
    assert exit_status(0) == 1  # a failure with no status still fails


def test_earliest_failure_first_and_its_status_wins() -> None:
    failures = {
        0: _Failure(pid=100, exitcode=1, timestamp=20),  # a victim timing out later
        3: _Failure(pid=103, exitcode=-11, timestamp=10),  # the segfault that started it
    }
    lines, status = describe(failures)
    assert lines == [
        "anyware run: rank 3 (pid 103) killed by signal 11 (first to fail)",
        "anyware run: rank 0 (pid 100) exit status 1",
    ]
    assert status == 139


def test_single_failure_is_not_called_first() -> None:
    lines, status = describe({1: _Failure(pid=7, exitcode=2, timestamp=5)})
    assert lines == ["anyware run: rank 1 (pid 7) exit status 2"] and status == 2
