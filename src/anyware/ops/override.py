"""Run an unmodified model on the operator library: ``anyware.ops.use()`` / ``enable()``.

A :class:`torch.overrides.TorchFunctionMode` sees every call to a ``torch.*`` or
``torch.nn.functional.*`` function and to tensor methods before dispatch. The mode maps the
calls that have an op here onto it and hands everything else back unchanged:

====================================  ==================================================
``F.linear``, ``torch.matmul``, ``@``  ``matmul`` (``+ bias`` for linear)
``torch.mm``, ``torch.bmm``
``F.scaled_dot_product_attention``      ``flash_attention`` (no mask, no dropout)
``F.rms_norm`` (so ``nn.RMSNorm``)      ``rms_norm``
``F.cross_entropy``                     ``cross_entropy`` (no class weights/smoothing)
``F.embedding_bag``, ``F.embedding``    ``embedding_bag`` (an embedding is a bag of one)
====================================  ==================================================

A call whose arguments fall outside an op's contract (a mask, dropout, label smoothing,
``max_norm``, integer matmuls, ...) runs the original function: the override never changes
what a model computes. The handlers run with the mode switched off, so the ops' own torch
calls are not intercepted again. Leaving ``use()`` (or calling ``disable()``) pops the mode:
nothing is patched, so nothing needs restoring.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch.overrides import TorchFunctionMode

from anyware.ops import _registry
from anyware.ops.cross_entropy import cross_entropy
from anyware.ops.embedding_bag import embedding_bag
from anyware.ops.flash_attention import flash_attention
from anyware.ops.matmul import matmul
from anyware.ops.rms_norm import rms_norm

_FLOATS = (torch.float32, torch.float16, torch.bfloat16)
_SKIP = NotImplemented  # a handler's "not mine: run the original"


def _linear(impl: str | None, x: Any, weight: Any, bias: Any = None) -> Any:
    if x.dim() < 2 or x.dtype not in _FLOATS or x.dtype != weight.dtype:
        return _SKIP
    y = matmul(x, weight.t(), impl=impl)
    return y if bias is None else y + bias


def _matmul(impl: str | None, a: Any, b: Any, *, out: Any = None) -> Any:
    if (
        out is not None
        or not isinstance(a, torch.Tensor)
        or not isinstance(b, torch.Tensor)
        or a.dim() < 2
        or b.dim() < 2
        or a.dtype not in _FLOATS
        or a.dtype != b.dtype
    ):
        return _SKIP
    return matmul(a, b, impl=impl)


def _sdpa(
    impl: str | None, q: Any, k: Any, v: Any, attn_mask: Any = None, dropout_p: float = 0.0,
    is_causal: bool = False, scale: float | None = None, enable_gqa: bool = False,
) -> Any:  # fmt: skip
    if attn_mask is not None or dropout_p or q.dim() != 4 or q.dtype not in _FLOATS:
        return _SKIP
    if k.shape[1] != q.shape[1] and not enable_gqa:
        return _SKIP
    return flash_attention(q, k, v, causal=is_causal, scale=scale, impl=impl)


def _rms(
    impl: str | None, x: Any, normalized_shape: Any, weight: Any = None, eps: Any = None
) -> Any:
    if weight is None or len(tuple(normalized_shape)) != 1 or x.dtype not in _FLOATS:
        return _SKIP
    return rms_norm(x, weight, torch.finfo(x.dtype).eps if eps is None else eps, impl=impl)


def _ce(
    impl: str | None, logits: Any, target: Any, weight: Any = None, size_average: Any = None,
    ignore_index: int = -100, reduce: Any = None, reduction: str = "mean", label_smoothing: float = 0.0,
) -> Any:  # fmt: skip
    if (
        weight is not None
        or size_average is not None
        or reduce is not None
        or label_smoothing
        or logits.dim() != 2
        or target.dim() != 1
        or target.dtype != torch.int64
        or logits.dtype not in _FLOATS
    ):
        return _SKIP
    return cross_entropy(logits, target, ignore_index=ignore_index, reduction=reduction, impl=impl)


def _bag(
    impl: str | None, indices: Any, weight: Any, offsets: Any = None, max_norm: Any = None,
    norm_type: float = 2.0, scale_grad_by_freq: bool = False, mode: str = "mean", sparse: bool = False,
    per_sample_weights: Any = None, include_last_offset: bool = False, padding_idx: Any = None,
) -> Any:  # fmt: skip
    if (
        max_norm is not None
        or scale_grad_by_freq
        or sparse
        or include_last_offset
        or padding_idx is not None
    ):
        return _SKIP
    if weight.dtype not in _FLOATS:
        return _SKIP
    return embedding_bag(weight, indices, offsets, mode, per_sample_weights, impl=impl)


def _embedding(
    impl: str | None, indices: Any, weight: Any, padding_idx: Any = None, max_norm: Any = None,
    norm_type: float = 2.0, scale_grad_by_freq: bool = False, sparse: bool = False,
) -> Any:  # fmt: skip
    if padding_idx is not None or max_norm is not None or scale_grad_by_freq or sparse:
        return _SKIP
    if weight.dtype not in _FLOATS or indices.dtype not in (torch.int64, torch.int32):
        return _SKIP
    out = embedding_bag(weight, indices.reshape(-1, 1), mode="sum", impl=impl)
    return out.reshape(*indices.shape, weight.shape[1])


#: torch function → (op name, handler).
HANDLERS: dict[Callable[..., Any], tuple[str, Callable[..., Any]]] = {
    F.linear: ("matmul", _linear),
    torch.matmul: ("matmul", _matmul),
    torch.Tensor.__matmul__: ("matmul", _matmul),
    torch.Tensor.matmul: ("matmul", _matmul),
    torch.mm: ("matmul", _matmul),
    torch.bmm: ("matmul", _matmul),
    F.scaled_dot_product_attention: ("flash_attention", _sdpa),
    F.rms_norm: ("rms_norm", _rms),
    F.cross_entropy: ("cross_entropy", _ce),
    F.embedding_bag: ("embedding_bag", _bag),
    F.embedding: ("embedding_bag", _embedding),
}


@dataclass
class Usage:
    """Which implementation each op took while a ``use()`` block ran: ``{op: {impl: calls}}``."""

    calls: dict[str, dict[str, int]] = field(default_factory=dict)

    def _add(self, diff: Counter[tuple[str, str]]) -> None:
        for (op, impl), n in diff.items():
            if n > 0:
                row = self.calls.setdefault(op, {})
                row[impl] = row.get(impl, 0) + n


class _OpsMode(TorchFunctionMode):
    def __init__(self, ops: frozenset[str] | None, impl: str | None) -> None:
        super().__init__()
        self.ops = ops
        self.impl = impl

    def __torch_function__(
        self,
        func: Any,
        types: Any,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
    ) -> Any:
        kwargs = kwargs or {}
        entry = HANDLERS.get(func)
        if entry is not None and (self.ops is None or entry[0] in self.ops):
            try:
                out = entry[1](self.impl, *args, **kwargs)
            except TypeError:  # a call shape the handler does not know: not ours
                out = _SKIP
            if out is not _SKIP:
                return out
        return func(*args, **kwargs)


def _validate(ops: Iterable[str] | None, impl: str | None) -> frozenset[str] | None:
    if impl is not None:
        _registry.parse_impl(impl, source="impl")
    if ops is None:
        return None
    chosen = frozenset(ops)
    known = {name for name, _ in HANDLERS.values()}
    for name in chosen:
        _registry.get_op(name)  # unknown names: KeyError with a suggestion
        if name not in known:
            raise ValueError(
                f"op {name!r} has no torch function to override; overridable: {sorted(known)}"
            )
    return chosen


@contextmanager
def use(*, ops: Iterable[str] | None = None, impl: str | None = None) -> Iterator[Usage]:
    """Within the block, matching torch calls run on the operator library (all overridable
    ops, or those named in ``ops``; ``impl`` forces an implementation). Yields a
    :class:`Usage` that is filled in when the block ends."""
    mode = _OpsMode(_validate(ops, impl), impl)
    usage = Usage()
    before = Counter(_registry.CALLS)
    with mode:
        try:
            yield usage
        finally:
            usage._add(Counter(_registry.CALLS) - before)


_enabled: list[_OpsMode] = []
_lock = threading.Lock()


def enable(*, ops: Iterable[str] | None = None, impl: str | None = None) -> None:
    """``use()`` for the rest of the program (until :func:`disable`); idempotent."""
    with _lock:
        if _enabled:
            return
        mode = _OpsMode(_validate(ops, impl), impl)
        mode.__enter__()  # type: ignore[no-untyped-call]
        _enabled.append(mode)


def disable() -> None:
    """Undo :func:`enable` (no-op when not enabled)."""
    with _lock:
        while _enabled:
            _enabled.pop().__exit__(None, None, None)  # type: ignore[no-untyped-call]


def enabled() -> bool:
    return bool(_enabled)
