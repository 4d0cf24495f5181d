"""MIG008 legacy CUDA tensor types: ``torch.cuda.FloatTensor``, ``LongTensor``, ...

Detects the types and their aliases (``Tensor = torch.cuda.FloatTensor if cuda else
torch.FloatTensor``). Why: the types exist only with CUDA, so every use fails elsewhere.
Example: ``valid = Tensor(imgs.size(0), 1).fill_(1.0)``. Fix, where the meaning is certain:

- sizes, ``T(n, 1)`` / ``T(x.size())`` / ``T()`` → ``torch.empty(n, 1, dtype=..., device=...)``
  (the legacy constructor leaves memory uninitialised too);
- data, ``T(np.random.normal(0, 1, (n, d)))`` / ``T([1, 2])`` → ``torch.as_tensor(data,
  dtype=..., device=...)`` (like the legacy constructor, it shares a cpu numpy array's memory);
- ``x.type(T)`` → ``x.to(device=..., dtype=...)``; an annotation ``torch.cuda.FloatTensor``
  → ``torch.Tensor``;
- an alias whose every use in its scope is one of the above: the uses are rewritten with the
  alias's own device choice (``<accelerator> if cuda else cpu``; just the accelerator when
  ``cuda`` is ``torch.cuda.is_available()``; ``x.device`` for ``if x.is_cuda``) and the alias
  line is removed (kept when a comment sits on it).

Left alone and reported (no rewrite can know what was meant): a constructor whose single
argument may be a size or data (``T(n)`` with ``n`` of unknown type, ``T(*shape)``), a type
used as a value (``isinstance(x, T)``, passed to a function), an alias bound more than once or
whose branches differ in dtype, an alias never used in its file (other modules may import it).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

import libcst as cst
from libcst.metadata import MetadataWrapper

from anyware.migrate.codemod._expr import ACC, dotted, expr
from anyware.migrate.codemod._legacy import (
    EQ,
    TYPES,
    Analysis,
    attributes,
    code,
    device_text,
    kwarg,
    legacy,
    type_arg,
)
from anyware.migrate.codemod.rules._base import CodemodRule, Context, Planned

__all__ = ["TYPES", "LegacyTypes"]


class _Plans(Analysis):
    def __init__(self, rule: LegacyTypes, wrapper: MetadataWrapper, ctx: Context) -> None:
        super().__init__(wrapper, ctx)
        self.rule = rule

    # -- plans --------------------------------------------------------------------------------

    def plan(self, original: cst.CSTNode, message: str, apply: Callable[..., object]) -> None:
        self.ctx.planned[id(original)] = Planned(
            code=self.rule.code,
            kind=self.rule.kind,
            message=message,
            apply=apply,  # type: ignore[arg-type]
        )

    def cover(self, node: cst.CSTNode) -> None:
        """Mark the CUDA type references under ``node`` as handled by a plan."""
        for sub in attributes(node):
            self.ctx.covered.add(id(sub))

    def constructor(self, call: cst.Call, dtype: str, device: str) -> str | None:
        """Plan ``T(args)`` → ``torch.empty``/``torch.as_tensor``; the reason when it cannot."""
        if any(a.keyword is not None for a in call.args):
            return "a legacy constructor with keyword arguments"
        positional = list(call.args)
        kind = "size" if len(positional) != 1 else None
        if len(positional) == 1:
            if positional[0].star:
                return f"`{code(call)}`: *args may be sizes or data"
            kind = self.kind_of(positional[0].value)
            if kind is None:
                return (
                    f"`{code(call)}`: the argument may be a size or data; write "
                    f"torch.empty(n, dtype=torch.{dtype}, device=...) or torch.as_tensor(data, ...)"
                )
        func = "torch.as_tensor" if kind == "data" else "torch.empty"

        def apply(upd: cst.Call) -> cst.Call:
            args = [a.with_changes(comma=cst.MaybeSentinel.DEFAULT) for a in upd.args]
            args = args or [cst.Arg(cst.Integer("0"))]
            extra = [kwarg("dtype", f"torch.{dtype}"), kwarg("device", device)]
            return upd.with_changes(func=expr(func), args=[*args, *extra])

        self.plan(call, f"legacy tensor constructor → {func}(..., dtype=torch.{dtype})", apply)
        return None

    def type_call(self, call: cst.Call, index: int, dtype: str, device: str | None) -> str | None:
        """Plan ``x.type(T[, non_blocking])`` → ``x.to(device=..., dtype=...)``. ``device=None``:
        the type is an in-place ``cuda-type if test else cpu-type``, whose test is taken from the
        rewritten argument (other rules may have rewritten inside it)."""
        rest = [a for i, a in enumerate(call.args) if i != index]
        if len(rest) > 1 or any(a.star for a in rest):
            return f"`{code(call)}`: unexpected arguments to .type()"
        choice = call.args[index].value
        mode = self.mode(choice) if isinstance(choice, cst.IfExp) else ("acc", True)

        def apply(upd: cst.Call) -> cst.Call:
            assert isinstance(upd.func, cst.Attribute)
            new = upd.args[index].value
            where = device or device_text(*mode, new.test if isinstance(new, cst.IfExp) else new)
            args = [kwarg("device", where), kwarg("dtype", f"torch.{dtype}")]
            for i, a in enumerate(upd.args):
                if i == index:
                    continue
                if a.keyword is None:  # .type(T, True): the second positional is non_blocking
                    a = a.with_changes(keyword=cst.Name("non_blocking"), equal=EQ)
                args.append(a.with_changes(comma=cst.MaybeSentinel.DEFAULT))
            return upd.with_changes(func=upd.func.with_changes(attr=cst.Name("to")), args=args)

        self.plan(call, f".type(legacy CUDA type) → .to(device, dtype=torch.{dtype})", apply)
        return None


class _Collect(cst.CSTVisitor):
    def __init__(self) -> None:
        super().__init__()
        self.assigns: list[cst.Assign] = []
        self.calls: list[cst.Call] = []
        self.types: list[cst.Attribute] = []

    def visit_Assign(self, node: cst.Assign) -> None:
        self.assigns.append(node)

    def visit_Call(self, node: cst.Call) -> None:
        self.calls.append(node)

    def visit_Attribute(self, node: cst.Attribute) -> bool:
        if dotted(node) in TYPES:
            self.types.append(node)
            return False
        return True


class _Run(_Plans):
    def run(self, module: cst.Module) -> None:
        found = _Collect()
        module.visit(found)
        for assign in found.assigns:
            self.alias(assign)
        for call in found.calls:
            if id(call) in self.ctx.planned:
                continue
            ctor = legacy(call.func)
            index = type_arg(call)
            if ctor is not None and ctor[1]:
                self.settle(call.func, self.constructor(call, ctor[0], ACC))
            elif index is not None:
                value = call.args[index].value
                try:
                    typ = self.type_expr(value)
                except ValueError as e:
                    self.settle(value, f"`{code(value)}`: {e}")
                    continue
                if typ is not None:
                    device = ACC if typ[1] is None else None
                    self.settle(value, self.type_call(call, index, typ[0], device))
        for attr in found.types:
            if id(attr) not in self.ctx.covered and self.in_annotation(attr):
                self.plan(attr, "legacy CUDA type annotation → torch.Tensor", _tensor_type)
                self.cover(attr)

    def settle(self, node: cst.CSTNode, reason: str | None) -> None:
        if reason is None:
            self.cover(node)
        else:
            for attr in attributes(node):
                self.ctx.reasons.setdefault(id(attr), reason)

    def in_annotation(self, node: cst.CSTNode) -> bool:
        parent = self.parents.get(node)
        while parent is not None:
            if isinstance(parent, cst.Annotation):
                return True
            if isinstance(parent, cst.BaseSmallStatement | cst.BaseCompoundStatement | cst.Call):
                return False
            parent = self.parents.get(parent)
        return False

    def alias(self, assign: cst.Assign) -> None:
        """``T = torch.cuda.FloatTensor [if c else torch.FloatTensor]``: rewrite every use of
        ``T`` and drop the line, or none of them (with the reason)."""
        target = assign.targets[0].target if len(assign.targets) == 1 else None
        if not isinstance(target, cst.Name):
            return
        name = target.value
        try:
            typ = self.type_expr(assign.value)
        except ValueError as e:
            self.settle(assign.value, f"alias `{name}`: {e}; not rewritten")
            return
        scope = self.scopes.get(assign)
        if typ is None or scope is None:
            return
        bindings = list(scope.assignments[name])
        if len(bindings) != 1:
            self.settle(assign.value, f"alias `{name}` is bound more than once; not rewritten")
            return
        uses = [a.node for a in bindings[0].references]
        if not uses:
            reason = f"alias `{name}` is not used in this file (other modules may import it)"
            self.settle(assign.value, reason)
            return
        before = set(self.ctx.planned)
        failure: str | None = None
        for use in uses:
            failure = self.alias_use(name, typ, use)
            if failure is not None:
                break
        if failure is not None:  # all or nothing: undo the uses already planned
            for key in set(self.ctx.planned) - before:
                del self.ctx.planned[key]
            self.settle(assign.value, f"alias `{name}`: {failure}; not rewritten")
            return
        line = self.parents.get(assign)
        if (
            isinstance(line, cst.SimpleStatementLine)
            and len(line.body) == 1
            and not any(e.comment for e in line.leading_lines)
            and line.trailing_whitespace.comment is None
        ):
            self.plan(line, f"alias `{name}` removed: every use rewritten", _remove)
            self.cover(assign.value)
        else:
            reason = f"alias `{name}` kept (its line has a comment or other code); uses rewritten"
            self.settle(assign.value, reason)

    def alias_use(
        self, name: str, typ: tuple[str, cst.IfExp | None], use: cst.CSTNode
    ) -> str | None:
        parent = self.parents.get(use)
        grand = self.parents.get(parent) if parent is not None else None
        try:
            device = self.device_at(typ[1], use)
        except ValueError as e:
            return str(e)
        if isinstance(parent, cst.Call) and parent.func is use:
            return self.constructor(parent, typ[0], device)
        if isinstance(parent, cst.Arg) and isinstance(grand, cst.Call):
            index = type_arg(grand)
            if index is not None and grand.args[index] is parent:
                return self.type_call(grand, index, typ[0], device)
        return f"`{name}` is used as a value on line {self.line(use)}"


def _tensor_type(_: cst.CSTNode) -> cst.CSTNode:
    return expr("torch.Tensor")


def _remove(_: cst.CSTNode) -> cst.RemovalSentinel:
    return cst.RemoveFromParent()


class LegacyTypes(CodemodRule):
    code: ClassVar[str] = "MIG008"
    kind: ClassVar[str] = "legacy type"
    title: ClassVar[str] = "torch.cuda.<X>Tensor → torch.empty / torch.as_tensor / .to(...)"

    def analyse(self, wrapper: MetadataWrapper, ctx: Context) -> None:
        _Run(self, wrapper, ctx).run(wrapper.module)

    def on_node(self, node: cst.CSTNode, ctx: Context) -> None:
        if (
            isinstance(node, cst.Attribute)
            and id(node) not in ctx.covered
            and dotted(node) in TYPES
        ):
            ctx.flag(
                self,
                ctx.reasons.get(id(node))
                or f"{dotted(node)} is used as a value (it exists only with CUDA): test or build "
                "tensors with a dtype and device= by hand",
            )
