"""Spellings the codemod writes: device-agnostic PyTorch that runs with no anyware installed.

The accelerator comes from ``torch.accelerator`` (torch >= 2.6) and falls back to the cpu, so a
rewritten script runs on a CUDA machine, on any other accelerator torch knows, and on a laptop.
Calls that raise without an accelerator (``synchronize``, ``set_device_index``) are guarded.
"""

from __future__ import annotations

import libcst as cst

ACC = '(torch.accelerator.current_accelerator(check_available=True) or torch.device("cpu"))'
ACC_TYPE = f"{ACC}.type"
AVAILABLE = "torch.accelerator.is_available()"
DEVICE_NAMES = frozenset({"cuda", "cpu", "mps", "xpu", "npu", "mlu", "hip", "musa", "xla", "meta"})


def expr(text: str) -> cst.BaseExpression:
    return cst.parse_expression(text)


def guarded(call: str, default: str) -> cst.BaseExpression:
    """``call`` when an accelerator is present, else ``default`` (the cpu's answer)."""
    return expr(f"({call} if {AVAILABLE} else {default})")


def string_value(node: cst.CSTNode) -> str | None:
    if isinstance(node, cst.SimpleString):
        v = node.evaluated_value
        return v if isinstance(v, str) else None
    return None


def indexed(index: cst.BaseExpression) -> cst.BaseExpression:
    """Accelerator ``index``, or the cpu: never ``cpu:N``, which ``torch.load`` cannot map."""
    code = cst.Module(body=[]).code_for_node(index)
    return expr(
        f"(torch.device(torch.accelerator.current_accelerator().type, {code}) "
        f'if {AVAILABLE} else torch.device("cpu"))'
    )


def rewrite_device(
    node: cst.BaseExpression, *, type_only: bool = False
) -> cst.BaseExpression | None:
    """A CUDA device spelling → the accelerator expression; ``None`` when nothing to do.

    Handles ``"cuda"``, ``"cuda:N"``, ``f"cuda:{i}"``, ``"cuda:{}".format(i)``, integers (for
    ``.to(0)``) and both branches of ``a if c else b``. ``type_only`` gives a device *type* name
    (autocast's ``device_type``).
    """
    s = string_value(node)
    if s is not None:
        if s == "cuda":
            return expr(ACC_TYPE if type_only else ACC)
        if s.startswith("cuda:") and s[5:].isdigit():
            return expr(ACC_TYPE) if type_only else indexed(cst.Integer(s[5:]))
        return None
    if isinstance(node, cst.FormattedString):
        parts = node.parts
        if (
            len(parts) == 2
            and isinstance(parts[0], cst.FormattedStringText)
            and parts[0].value == "cuda:"
            and isinstance(parts[1], cst.FormattedStringExpression)
        ):
            return expr(ACC_TYPE) if type_only else indexed(parts[1].expression)
        return None
    if isinstance(node, cst.Call) and isinstance(node.func, cst.Attribute):
        if (
            node.func.attr.value == "format"
            and string_value(node.func.value) == "cuda:{}"
            and len(node.args) == 1
        ):
            return expr(ACC_TYPE) if type_only else indexed(node.args[0].value)
        return None
    if isinstance(node, cst.Integer) and not type_only:
        return indexed(node)
    if isinstance(node, cst.IfExp):
        body = rewrite_device(node.body, type_only=type_only)
        orelse = rewrite_device(node.orelse, type_only=type_only)
        if body is None and orelse is None:
            return None
        return node.with_changes(body=body or node.body, orelse=orelse or node.orelse)
    return None


def dotted(node: cst.CSTNode) -> str | None:
    """``torch.cuda.amp.autocast`` for an Attribute/Name chain, else ``None``."""
    if isinstance(node, cst.Name):
        return node.value
    if isinstance(node, cst.Attribute):
        base = dotted(node.value)
        return None if base is None else f"{base}.{node.attr.value}"
    return None
