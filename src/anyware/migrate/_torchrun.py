"""torch.distributed's own launcher, with the failure told the way ``anyware run`` tells it.

``anyware run --nproc N`` runs ``python -m anyware.migrate._torchrun ARGS``: the same argument
parser and elastic agent as ``torchrun``, but when a rank fails the user sees one line per
failed rank and gets that rank's exit status, instead of the agent's ``ChildFailedError``
traceback (the launcher's frames, which say nothing about the user's program) and a status of 1.
The rank that failed first is named first; it is often a victim of another rank (a timeout
waiting for a peer), which is why every failed rank is listed, not only the first.
"""

from __future__ import annotations

import sys
from typing import Any


def exit_status(code: int) -> int:
    """A process's status as a shell reports it: a signal N becomes 128 + N."""
    if code < 0:
        return 128 - code
    return code if code > 0 else 1


def describe(failures: dict[int, Any]) -> tuple[list[str], int]:
    """Lines for each failed rank, earliest first, and the status to exit with (the earliest
    failure's)."""
    ordered = sorted(failures.items(), key=lambda kv: (kv[1].timestamp, kv[0]))
    lines = []
    for i, (rank, f) in enumerate(ordered):
        how = f"killed by signal {-f.exitcode}" if f.exitcode < 0 else f"exit status {f.exitcode}"
        first = " (first to fail)" if i == 0 and len(ordered) > 1 else ""
        lines.append(f"anyware run: rank {rank} (pid {f.pid}) {how}{first}")
    return lines, exit_status(ordered[0][1].exitcode)


def _plain_launcher_log() -> None:
    """Print the launcher's own notices (the OMP_NUM_THREADS banner) bare, as ``torchrun``
    does: there its logger is ``__main__``, outside torch's prefixed log format; imported,
    it is ``torch.distributed.run`` and would inherit that format."""
    import logging

    log = logging.getLogger("torch.distributed.run")
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("%(message)s"))
    log.addHandler(handler)
    log.propagate = False


def main(argv: list[str] | None = None) -> int:
    from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
    from torch.distributed.run import parse_args, run

    _plain_launcher_log()

    # torch leaves these two untyped.
    args = parse_args(sys.argv[1:] if argv is None else argv)  # type: ignore[no-untyped-call]
    try:
        run(args)  # type: ignore[no-untyped-call]
    except ChildFailedError as e:
        lines, status = describe(e.failures)
        print("\n".join(lines), file=sys.stderr, flush=True)
        return status
    return 0


if __name__ == "__main__":
    sys.exit(main())
