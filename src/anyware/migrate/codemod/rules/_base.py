"""The codemod rule protocol: a stable code, a kind, and hooks the engine calls per node.

A rule converts by returning a replacement expression from ``on_call`` (the engine records a
``fixed`` finding), or only reports by calling ``ctx.flag(...)`` (not fixed: an unconverted
CUDA reference or a semantic hazard left alone on purpose). A rule whose decision needs the
whole file (where a name is bound and every place it is used) works it out in ``analyse``
before the rewrite and leaves ``Planned`` rewrites keyed by the original node.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar

import libcst as cst
from libcst.metadata import MetadataWrapper


@dataclass(frozen=True, slots=True, kw_only=True)
class Finding:
    code: str
    """Stable rule code (``MIG001``)."""
    line: int
    """1-based line of the original source."""
    kind: str
    """What was found: ``device``, ``cuda api``, ``hazard``, ..."""
    message: str
    """One sentence for the user."""
    fixed: bool
    """Whether ``fix`` rewrites it."""

    def to_json(self) -> dict[str, object]:
        return {
            "code": self.code,
            "line": self.line,
            "kind": self.kind,
            "message": self.message,
            "fixed": self.fixed,
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class Planned:
    """A rewrite decided in ``analyse``, applied when the engine leaves the original node."""

    code: str
    """The deciding rule's code."""
    kind: str
    """Finding kind, as in ``Finding``."""
    message: str
    """What was rewritten, for the report."""
    apply: Callable[[cst.CSTNode], cst.CSTNode | cst.RemovalSentinel]
    """Builds the replacement from the *updated* node (its children already rewritten)."""


@dataclass(kw_only=True)
class Context:
    """Per-file state the engine hands to rules."""

    line: int = 0
    findings: list[Finding] = field(default_factory=list)
    planned: dict[int, Planned] = field(default_factory=dict)
    """``id(original node)`` → the rewrite to apply there (filled by ``analyse``)."""
    reasons: dict[int, str] = field(default_factory=dict)
    """``id(original node)`` → why ``analyse`` left it alone (the report's message)."""
    covered: set[int] = field(default_factory=set)
    """``id(original node)`` of references a planned rewrite takes care of (not to flag)."""

    def flag(self, rule: CodemodRule, message: str, *, kind: str | None = None) -> None:
        self.findings.append(
            Finding(
                code=rule.code, line=self.line, kind=kind or rule.kind, message=message, fixed=False
            )
        )


class CodemodRule:
    """Base class: override the hooks a rule needs."""

    code: ClassVar[str]
    kind: ClassVar[str]
    title: ClassVar[str]

    def analyse(self, wrapper: MetadataWrapper, ctx: Context) -> None:
        """Whole-file pass before the rewrite: fill ``ctx.planned`` / ``ctx.reasons``."""
        return None

    def on_call(self, node: cst.Call, ctx: Context) -> cst.BaseExpression | None:
        """Return a replacement to convert ``node`` (after earlier rules ran on it)."""
        return None

    def on_assign(self, node: cst.Assign, ctx: Context) -> cst.Assign | None:
        """Return a replacement to convert an assignment statement."""
        return None

    def on_node(self, node: cst.CSTNode, ctx: Context) -> None:
        """Inspect any original node (comparisons, literals, imports) and flag hazards."""
        return None
