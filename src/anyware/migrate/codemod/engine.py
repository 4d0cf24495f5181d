"""Apply the codemod rules to files: parse with libcst, rewrite, verify, write atomically.

A file is never corrupted: one that is not UTF-8 or does not parse is reported and left alone;
a rewrite is compiled before it is written; the write is a temp file + rename; a read-only
file is reported, not forced. libcst keeps comments and formatting, a file without CUDA code
comes out byte-identical (it is not rewritten at all), and the rewritten spellings contain no
CUDA names, so a second ``fix`` finds nothing to change.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import libcst as cst
from libcst.codemod import CodemodContext
from libcst.codemod.visitors import AddImportsVisitor
from libcst.metadata import MetadataWrapper, PositionProvider

from anyware.migrate.codemod.rules import RULES, Context, Finding

SKIP_DIRS = frozenset({"__pycache__", "node_modules", "site-packages", "venv", "build", "dist"})


class _Transformer(cst.CSTTransformer):
    METADATA_DEPENDENCIES = (PositionProvider,)

    def __init__(self, ctx: Context) -> None:
        super().__init__()
        self.ctx = ctx
        self.changed = False

    def _line(self, node: cst.CSTNode) -> int:
        pos = self.get_metadata(PositionProvider, node, None)
        return pos.start.line if pos is not None else self.ctx.line

    def on_visit(self, node: cst.CSTNode) -> bool:
        self.ctx.line = self._line(node)
        for rule in RULES:
            rule.on_node(node, self.ctx)
        return super().on_visit(node)

    # A planned rewrite may return another node type than it replaces (an Attribute for a
    # Name, a removal for a statement), so this is wider than libcst's same-type signature.
    def on_leave(  # type: ignore[override]
        self, original_node: cst.CSTNode, updated_node: cst.CSTNode
    ) -> cst.CSTNode | cst.RemovalSentinel | cst.FlattenSentinel[cst.CSTNode]:
        planned = self.ctx.planned.pop(id(original_node), None)
        if planned is not None:
            self._applied(planned.code, planned.kind, planned.message, self._line(original_node))
            new = planned.apply(updated_node)
            if not isinstance(new, cst.CSTNode):
                return new
            updated_node = new
        return super().on_leave(original_node, updated_node)

    def _applied(self, code: str, kind: str, message: str, line: int) -> None:
        """Record a rewrite made at ``line``."""
        self.ctx.findings.append(
            Finding(code=code, line=line, kind=kind, message=message, fixed=True)
        )
        self.changed = True

    def leave_Assign(self, original_node: cst.Assign, updated_node: cst.Assign) -> cst.Assign:
        self.ctx.line = self._line(original_node)
        node = updated_node
        for rule in RULES:
            new = rule.on_assign(node, self.ctx)
            if new is not None:
                self._applied(rule.code, rule.kind, rule.title, self.ctx.line)
                node = new
        return node

    def leave_Call(self, original_node: cst.Call, updated_node: cst.Call) -> cst.BaseExpression:
        self.ctx.line = self._line(original_node)
        node: cst.BaseExpression = updated_node
        for rule in RULES:
            if not isinstance(node, cst.Call):
                break
            new = rule.on_call(node, self.ctx)
            if new is None:
                continue
            self._applied(rule.code, rule.kind, rule.title, self.ctx.line)
            node = new
        return node


@dataclass(kw_only=True)
class FileResult:
    path: str
    findings: list[Finding] = field(default_factory=list)
    error: str | None = None
    new_source: bytes | None = None
    diff: str = ""

    def to_json(self) -> dict[str, Any]:
        fixed = sum(1 for f in self.findings if f.fixed)
        return {
            "path": self.path,
            "converted": fixed,
            "unconverted": len(self.findings) - fixed,
            "findings": [
                f.to_json() for f in sorted(self.findings, key=lambda f: (f.line, f.code))
            ],
        }


def transform_source(source: bytes) -> tuple[bytes, list[Finding]]:
    """The rewritten source (same bytes when nothing changed) and the findings."""
    module = cst.parse_module(source)
    ctx = Context()
    wrapper = MetadataWrapper(module, unsafe_skip_copy=True)
    for rule in RULES:
        rule.analyse(wrapper, ctx)
    transformer = _Transformer(ctx)
    new = wrapper.visit(transformer)
    if not transformer.changed:
        return source, ctx.findings
    context = CodemodContext()
    AddImportsVisitor.add_needed_import(context, "torch")
    new = AddImportsVisitor(context).transform_module(new)
    return new.bytes, ctx.findings


def process_file(path: Path, *, write: bool, want_diff: bool = False) -> FileResult:
    res = FileResult(path=str(path))
    try:
        source = path.read_bytes()
    except OSError as e:
        res.error = f"cannot read: {e.strerror or e}"
        return res
    try:
        text = source.decode("utf-8")
    except UnicodeDecodeError as e:
        res.error = f"not UTF-8 (byte {e.start}); convert it to UTF-8 first"
        return res
    try:
        new, findings = transform_source(source)
    except cst.ParserSyntaxError as e:
        res.error = f"does not parse (line {e.raw_line}): {e.message}"
        return res
    res.findings = findings
    if new == source:
        return res
    new_text = new.decode("utf-8")
    try:
        compile(new_text, str(path), "exec", dont_inherit=True)
    except SyntaxError as e:  # a rule bug must not reach the user's file
        res.error = f"internal error: the rewrite does not compile ({e.msg}); file left unchanged"
        return res
    res.new_source = new
    if want_diff:
        res.diff = "".join(
            difflib.unified_diff(
                text.splitlines(keepends=True),
                new_text.splitlines(keepends=True),
                fromfile=f"a/{path}",
                tofile=f"b/{path}",
            )
        )
    if write:
        # Mode bits too: root may write anything, but a file marked read-only was meant to stay.
        if not os.access(path, os.W_OK) or not path.stat().st_mode & 0o222:
            res.error = "read-only; make it writable to fix it"
            res.new_source = None
            return res
        from anyware._io import atomic_write_bytes

        try:
            atomic_write_bytes(path, new)
        except OSError as e:
            res.error = f"cannot write: {e.strerror or e}"
    return res


def discover(paths: Iterable[Path]) -> list[Path]:
    out: list[Path] = []
    for p in paths:
        if p.is_dir():
            for f in sorted(p.rglob("*.py")):
                rel = f.relative_to(p).parts[:-1]
                if any(part.startswith(".") or part in SKIP_DIRS for part in rel):
                    continue
                out.append(f)
        else:
            out.append(p)
    seen: set[Path] = set()
    return [f for f in out if not (f.resolve() in seen or seen.add(f.resolve()))]  # type: ignore[func-returns-value]


def run_codemod(paths: Iterable[Path], *, write: bool, diff: bool = False) -> dict[str, Any]:
    """Check (``write=False``) or fix the files under ``paths``; the contract's JSON report
    plus ``errors`` (files left unchanged, with why) and, with ``diff``, ``diffs``."""
    files = discover(paths)
    results = [process_file(f, write=write, want_diff=diff) for f in _progress(files)]
    entries = [r.to_json() for r in results if r.error is None]
    report: dict[str, Any] = {
        "files": entries,
        "totals": {
            "files": len(entries),
            "converted": sum(e["converted"] for e in entries),
            "unconverted": sum(e["unconverted"] for e in entries),
        },
        "errors": [{"path": r.path, "error": r.error} for r in results if r.error is not None],
    }
    if diff:
        report["diffs"] = [r.diff for r in results if r.diff]
    return report


def _progress(files: list[Path]) -> Iterable[Path]:
    if len(files) < 50:
        return files
    from rich.progress import track

    from anyware.cli._common import err_console

    return track(files, description="migrate", console=err_console, transient=True)
