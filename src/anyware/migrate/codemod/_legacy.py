"""Analysis behind MIG008 (legacy CUDA tensor types): what a legacy constructor's argument is
(a size or data), what a ``cuda-type if test else cpu-type`` choice means as a device, and
whether that choice can be repeated where an alias of it is used. Pure reading of the tree
(scope and parent metadata); the rule in ``rules/mig008_legacy_types.py`` plans the rewrites.
"""

from __future__ import annotations

from collections.abc import Mapping

import libcst as cst
from libcst.metadata import (
    FunctionScope,
    MetadataWrapper,
    ParentNodeProvider,
    PositionProvider,
    Scope,
    ScopeProvider,
)

from anyware.migrate.codemod._expr import ACC, dotted, expr
from anyware.migrate.codemod.rules._base import Context

DTYPES = {
    "Float": "float32",
    "Double": "float64",
    "Half": "float16",
    "BFloat16": "bfloat16",
    "Byte": "uint8",
    "Char": "int8",
    "Short": "int16",
    "Int": "int32",
    "Long": "int64",
    "Bool": "bool",
}
TYPES = frozenset(f"torch.cuda.{t}Tensor" for t in DTYPES)
CPU = 'torch.device("cpu")'
#: numpy functions that always return an array (a scalar would mean "size" to the constructor).
NP_ARRAYS = frozenset(
    (
        *("array", "asarray", "zeros", "ones", "full", "empty", "zeros_like", "ones_like"),
        *("full_like", "arange", "linspace", "eye", "identity", "concatenate", "stack"),
        *("vstack", "hstack", "column_stack", "tile", "repeat"),
    )
)
#: numpy.random samplers → positional arguments from which the ``size`` argument is present.
NP_RANDOM_SIZE = {"rand": 1, "randn": 1, "random": 1, "random_sample": 1, "sample": 1}
NP_RANDOM_SIZE |= dict.fromkeys(
    ("normal", "uniform", "randint", "binomial", "beta", "gamma", "laplace"), 3
)
NP_RANDOM_SIZE |= dict.fromkeys(("poisson", "exponential", "choice", "permutation"), 2)

_MEANING = {"int": "size", "shape": "size", "array": "data", "seq": "data"}
Parents = Mapping[cst.CSTNode, cst.CSTNode]
Scopes = Mapping[cst.CSTNode, Scope | None]


def code(node: cst.CSTNode) -> str:
    return cst.Module(body=[]).code_for_node(node)


def legacy(node: cst.CSTNode) -> tuple[str, bool] | None:
    """(torch dtype name, is the CUDA type) for ``torch[.cuda].<X>Tensor`` or ``torch.Tensor``."""
    name = dotted(node) or ""
    if name == "torch.Tensor":
        return "float32", False  # the default dtype, as the scripts that write this assume
    for prefix, cuda in (("torch.cuda.", True), ("torch.", False)):
        kind = name.removeprefix(prefix).removesuffix("Tensor")
        if name.startswith(prefix) and name.endswith("Tensor") and kind in DTYPES:
            return DTYPES[kind], cuda
    return None


EQ = cst.AssignEqual(
    whitespace_before=cst.SimpleWhitespace(""), whitespace_after=cst.SimpleWhitespace("")
)


def kwarg(name: str, value: str) -> cst.Arg:
    return cst.Arg(keyword=cst.Name(name), value=expr(value), equal=EQ)


class Analysis:
    """One file: which legacy-type references can be rewritten, and how."""

    def __init__(self, wrapper: MetadataWrapper, ctx: Context) -> None:
        self.ctx = ctx
        self.scopes: Scopes = wrapper.resolve(ScopeProvider)
        self.parents: Parents = wrapper.resolve(ParentNodeProvider)
        self.positions = wrapper.resolve(PositionProvider)

    def line(self, node: cst.CSTNode) -> int:
        pos = self.positions.get(node)
        return pos.start.line if pos is not None else 0

    # -- what a constructor argument is ------------------------------------------------------
    # A legacy constructor reads ints and a torch.Size as sizes, anything else (a list, a tuple,
    # an ndarray) as data. Values are classified finer first: ``int``, ``shape`` (a torch.Size),
    # ``array`` (an ndarray), ``seq`` (a list or tuple), ``float``; ``.shape`` alone is unknown
    # (a torch.Size on a tensor, a tuple, so data, on an ndarray).

    def kind_of(self, node: cst.BaseExpression) -> str | None:
        """``size``, ``data`` or ``None`` (unknown) for a constructor's single argument."""
        return _MEANING.get(self._kind(node, 0) or "")

    def _kind(self, node: cst.BaseExpression, depth: int) -> str | None:
        if isinstance(node, cst.Integer):
            return "int"
        if isinstance(node, cst.Float):
            return "float"
        if isinstance(node, cst.List | cst.Tuple | cst.ListComp):
            return "seq"
        if isinstance(node, cst.Subscript):
            return self._subscript_kind(node)
        if isinstance(node, cst.UnaryOperation) and isinstance(node.operator, cst.Minus | cst.Plus):
            return self._kind(node.expression, depth)
        if isinstance(node, cst.BinaryOperation):
            kinds = {self._kind(node.left, depth), self._kind(node.right, depth)}
            if "array" in kinds and kinds <= {"array", "int", "float"}:
                return "array"  # numpy broadcasting: array ∘ number is an array
            if kinds == {"int"} and not isinstance(node.operator, cst.Divide | cst.Power):
                return "int"
            return None
        if isinstance(node, cst.Call):
            return self._call_kind(node)
        if isinstance(node, cst.Name) and depth < 3:
            values = self._bound_values(node)
            kinds = {self._kind(v, depth + 1) for v in values}
            return kinds.pop() if len(kinds) == 1 else None
        return None

    def _subscript_kind(self, node: cst.Subscript) -> str | None:
        """``x.shape[i]`` / ``x.size()[i]`` are ints; ``x.size()[1:]`` is a torch.Size."""
        inner = node.value
        func = inner.func if isinstance(inner, cst.Call) else inner
        if not isinstance(func, cst.Attribute) or func.attr.value not in ("shape", "size"):
            return None
        if isinstance(inner, cst.Attribute) and func.attr.value == "size":
            return None  # ndarray.size is an int: not subscriptable; unknown object
        if isinstance(inner, cst.Call) and (func.attr.value != "size" or inner.args):
            return None
        if len(node.slice) != 1:
            return None
        if isinstance(node.slice[0].slice, cst.Index):
            return "int"
        return "shape" if isinstance(inner, cst.Call) else None

    def _call_kind(self, node: cst.Call) -> str | None:
        name = dotted(node.func) or ""
        if name in ("len", "int"):
            return "int"
        if isinstance(node.func, cst.Attribute):
            attr = node.func.attr.value
            if attr == "size":  # ndarray.size is not callable: this is a tensor
                return "shape" if not node.args else "int" if len(node.args) == 1 else None
            if attr == "numpy" and not node.args:
                return "array"
            if attr == "tolist" and not node.args:
                return "seq"
        head, _, rest = name.partition(".")
        if head not in ("np", "numpy"):
            return None
        if rest in NP_ARRAYS:
            return "array"
        sampler = rest.removeprefix("random.")
        if rest.startswith("random.") and sampler in NP_RANDOM_SIZE:
            positional = sum(1 for a in node.args if a.keyword is None)
            has_size = any(a.keyword is not None and a.keyword.value == "size" for a in node.args)
            if has_size or positional >= NP_RANDOM_SIZE[sampler]:
                return "array"
        return None

    def _bound_values(self, node: cst.Name) -> list[cst.BaseExpression]:
        """The values assigned to ``node``'s name where it is read; empty when any binding is
        not a plain ``name = value`` (a loop variable, a parameter, an import)."""
        scope = self.scopes.get(node)
        if scope is None:
            return []
        function = scope.node if isinstance(scope, FunctionScope) else None
        straight = function is not None and not self._in_loop(node, function)
        values = []
        for assignment in scope[node.value]:
            target = getattr(assignment, "node", None)
            at = self.parents.get(target) if isinstance(target, cst.Name) else None
            assign = self.parents.get(at) if isinstance(at, cst.AssignTarget) else None
            if not isinstance(assign, cst.Assign) or len(assign.targets) != 1:
                return []
            if straight and function and self._binds_later(assign, node, function):
                continue
            values.append(assign.value)
        return values

    def _in_loop(self, node: cst.CSTNode, stop: cst.CSTNode) -> bool:
        parent = self.parents.get(node)
        while parent is not None and parent is not stop:
            if isinstance(parent, cst.For | cst.While | cst.CompFor):
                return True
            parent = self.parents.get(parent)
        return False

    def _binds_later(self, assign: cst.Assign, use: cst.CSTNode, function: cst.CSTNode) -> bool:
        """Whether ``assign`` binds only after ``use`` is read, in straight-line code of
        ``function`` (``x = f(x)`` reads before it binds; a later line binds later). Bindings
        from a nested function (``nonlocal``) may run at any time: never ``later``."""
        parent = self.parents.get(assign)
        while parent is not None and not isinstance(parent, cst.FunctionDef):
            parent = self.parents.get(parent)
        if parent is not function:
            return False
        inside = self.parents.get(use)
        while inside is not None and inside is not assign:
            inside = self.parents.get(inside)
        if inside is assign:
            return True
        a, u = self.positions.get(assign), self.positions.get(use)
        return (
            a is not None
            and u is not None
            and (a.start.line, a.start.column)
            > (
                u.start.line,
                u.start.column,
            )
        )

    # -- what a type expression means ----------------------------------------------------------

    def type_expr(self, node: cst.BaseExpression) -> tuple[str, cst.IfExp | None] | None:
        """(dtype, the ``if`` choosing CUDA or not, ``None`` when always CUDA) for a legacy type
        expression that names a CUDA type; ``None`` otherwise (raises ValueError when the
        branches differ in dtype)."""
        direct = legacy(node)
        if direct is not None:
            return (direct[0], None) if direct[1] else None
        if not isinstance(node, cst.IfExp):
            return None
        body, orelse = legacy(node.body), legacy(node.orelse)
        if body is None or orelse is None or not (body[1] or orelse[1]):
            return None
        if body[0] != orelse[0]:
            raise ValueError("its branches differ in dtype")
        return body[0], (None if body[1] and orelse[1] else node)

    def is_cuda_available(self, node: cst.BaseExpression, depth: int = 0) -> bool:
        """``torch.cuda.is_available()``, ``True if torch.cuda.is_available() else False`` or a
        name bound only to one of those."""
        if isinstance(node, cst.Call):
            return dotted(node.func) == "torch.cuda.is_available" and not node.args
        if isinstance(node, cst.IfExp):
            return (
                self.is_cuda_available(node.test, depth)
                and isinstance(node.body, cst.Name)
                and node.body.value == "True"
                and isinstance(node.orelse, cst.Name)
                and node.orelse.value == "False"
            )
        if isinstance(node, cst.Name) and depth < 2:
            values = self._bound_values(node)
            return bool(values) and all(self.is_cuda_available(v, depth + 1) for v in values)
        return False

    def device_at(self, choice: cst.IfExp | None, use: cst.CSTNode | None) -> str:
        """The device expression for an alias's CUDA-or-not ``choice``, repeated at ``use``.
        Raises ValueError when the alias's test cannot be repeated there."""
        if choice is None:
            return ACC
        mode, cuda_first = self.mode(choice)
        if mode == "generic":
            root: cst.BaseExpression = choice.test
            while isinstance(root, cst.Attribute):
                root = root.value
            if not isinstance(root, cst.Name):
                raise ValueError(f"its test `{code(choice.test)}` cannot be repeated at its uses")
            here, there = self.scopes.get(use) if use else None, self.scopes.get(root)
            bound = set(there[root.value]) if there is not None else set()
            if here is None or len(bound) > 1 or set(here[root.value]) != bound:
                raise ValueError(f"`{root.value}` may differ where the alias is used")
        return device_text(mode, cuda_first, choice.test)

    def mode(self, choice: cst.IfExp) -> tuple[str, bool]:
        """How a ``cuda-type if test else cpu-type`` choice becomes a device: ``acc`` (the test
        is CUDA's availability), ``is_cuda`` (``x.is_cuda``: ``x.device``) or ``generic``."""
        cuda_first = bool((legacy(choice.body) or ("", False))[1])
        if cuda_first and self.is_cuda_available(choice.test):
            return "acc", True
        test = choice.test
        if cuda_first and isinstance(test, cst.Attribute) and test.attr.value == "is_cuda":
            return "is_cuda", True
        return "generic", cuda_first


def device_text(mode: str, cuda_first: bool, test: cst.BaseExpression) -> str:
    if mode == "acc":
        return ACC
    if mode == "is_cuda" and isinstance(test, cst.Attribute):
        return f"{code(test.value)}.device"
    on, off = (ACC, CPU) if cuda_first else (CPU, ACC)
    return f"({on} if {code(test)} else {off})"


def attributes(node: cst.CSTNode) -> list[cst.Attribute]:
    """The ``torch.cuda.<X>Tensor`` references in ``node`` (itself included)."""
    found: list[cst.Attribute] = []

    class _Find(cst.CSTVisitor):
        def visit_Attribute(self, n: cst.Attribute) -> bool:
            if dotted(n) in TYPES:
                found.append(n)
                return False
            return True

    node.visit(_Find())
    return found


def type_arg(call: cst.Call) -> int | None:
    """Index of the type argument of ``x.type(T, ...)`` (``dst_type=`` too), else ``None``."""
    if not isinstance(call.func, cst.Attribute) or call.func.attr.value != "type":
        return None
    for i, a in enumerate(call.args):
        if (i == 0 and a.keyword is None and not a.star) or (
            a.keyword is not None and a.keyword.value in ("dst_type", "dtype")
        ):
            return i
    return None
