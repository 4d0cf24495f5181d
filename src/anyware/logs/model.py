"""The records the log analyser passes around: categories, signature rules and findings.

A *signature* (one file each under ``signatures/``) recognises one family of failure lines. Each
signature lists cheap literal *needles*: the scanner first finds candidate lines with one Rust
regex over whole blocks (polars), and only those few lines reach the Python rules here. A match
becomes a :class:`Finding`, which carries a *role*: an ``origin`` can start a failure, a
``victim`` line is what other ranks print because of it (watchdog timeouts, "remote process
exited"), and a ``report`` is a launcher's summary, which names whoever it noticed first.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class Category(StrEnum):
    COLLECTIVE_TIMEOUT = "collective_timeout"
    CCL_ERROR = "ccl_error"
    DEVICE_OOM = "device_oom"
    XID = "xid"
    ECC = "ecc"
    SEGFAULT = "segfault"
    NONFINITE = "nonfinite"
    PYTHON_EXCEPTION = "python_exception"
    LAUNCHER = "launcher"
    NETWORK = "network"
    FILESYSTEM = "filesystem"
    KILLED = "killed"
    HANG = "hang"
    UNKNOWN = "unknown"


class Role(StrEnum):
    ORIGIN = "origin"
    VICTIM = "victim"
    REPORT = "report"


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "warning"


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    """One regular expression of a signature and what a match means."""

    pattern: str
    """Python regex searched in the line; named groups become the finding's attrs."""
    role: Role = Role.ORIGIN
    """Whether a match can start a failure or is the consequence of one."""
    severity: Severity = Severity.ERROR
    """Warnings are counted but never chosen as the root cause."""
    specificity: int = 2
    """Tie-break between findings of one rank at one moment: 3 names the hardware/numeric cause,
    1 is generic (a bare exception, a kill), 0 a launcher's second-hand account."""
    category: Category | None = None
    """Overrides the signature's category for this rule (e.g. a signal number in a summary)."""
    regex: re.Pattern[str] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        try:
            object.__setattr__(self, "regex", re.compile(self.pattern))
        except re.error as e:
            raise ValueError(f"signature rule {self.pattern!r} is not a valid regex: {e}") from None
        if not 0 <= self.specificity <= 3:
            raise ValueError(f"rule specificity must be 0..3, got {self.specificity}")


Extra = Callable[[str, Sequence[str], Sequence[str]], dict[str, Any]]
"""(line, lines before it, lines after it) -> attrs; ``_category``/``_role`` keys override."""


@dataclass(frozen=True, slots=True, kw_only=True)
class Signature:
    """A family of failure lines with a stable code (``LOG001``...)."""

    code: str
    name: str
    category: Category
    needles: tuple[str, ...]
    """Literal substrings; a line containing none of them is never looked at (the fast path)."""
    rules: tuple[Rule, ...]
    doc: str
    context_before: int = 0
    """How many preceding lines ``extra`` receives (a launcher summary's rank/time fields)."""
    context_after: int = 0
    """How many following lines ``extra`` receives (a traceback's frames)."""
    extra: Extra | None = None
    """Adds attrs from the line and the lines after it."""

    def __post_init__(self) -> None:
        if not re.fullmatch(r"LOG\d{3}", self.code):
            raise ValueError(f"signature code must look like LOG001, got {self.code!r}")
        if not self.needles and self.rules:
            raise ValueError(f"signature {self.code} has rules but no needles to find them")

    def match(self, line: str) -> tuple[Rule, re.Match[str]] | None:
        if not any(n in line for n in self.needles):
            return None
        for rule in self.rules:
            m = rule.regex.search(line)
            if m is not None:
                return rule, m
        return None


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    """One recognised line: who, when, what, and whether it starts or suffers a failure."""

    code: str
    category: Category
    role: Role
    severity: Severity
    specificity: int
    rank: int | None
    host: str | None
    time: float | None
    file: str
    line: int
    message: str
    attrs: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return {
            "code": self.code,
            "category": str(self.category),
            "role": str(self.role),
            "severity": str(self.severity),
            "rank": self.rank,
            "host": self.host,
            "time": self.time,
            "file": self.file,
            "line": self.line,
            "message": self.message,
            "attrs": self.attrs,
        }
