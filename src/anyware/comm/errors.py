"""The errors a collective raises: each names the rank involved and what to do."""

from __future__ import annotations


class CommError(RuntimeError):
    """A collective could not complete (bad input, a peer failed, or the job was torn down)."""


class CommTimeoutError(CommError):
    """A peer did not arrive within the timeout; ``rank`` is the one we were waiting for."""

    def __init__(self, message: str, *, rank: int) -> None:
        super().__init__(message)
        self.rank = rank


class CommMismatchError(CommError, ValueError):
    """Ranks called the same collective with different shapes, dtypes or ops."""

    def __init__(self, message: str, *, rank: int) -> None:
        super().__init__(message)
        self.rank = rank
