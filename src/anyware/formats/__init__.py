"""Low-precision formats: bit-exact FP8 / MX / INT4 casts, FP8 training, post-training quantisation.

Public API (stable; the operator library builds on it):

* ``quantize(x, fmt, ...)`` → ``QuantizedTensor`` (codes + scales); ``quantize(model, preset)``
  applies a PTQ preset to a model (``ptq.quantize_model``).
* ``dequantize(q)`` → tensor; ``fake_quantize(x, fmt, ...)`` → the round-tripped tensor.
* ``convert_to_fp8_training(model, recipe=...)`` swaps ``nn.Linear`` for FP8 linears.
* ``hadamard_transform(x)`` → the orthonormal Walsh–Hadamard transform along the last dim.
* ``info()`` → one row per format (``anyware formats info``).
* ``torch.ops.anyware_formats.cast_to_codes(x, scale, fmt, saturate)``: the Triton cast op.
"""

from __future__ import annotations

from typing import Any

# registers torch.ops.anyware_formats.cast_to_codes (Triton is imported only when it runs)
from anyware.formats import triton_cast as triton_cast
from anyware.formats.api import (
    QuantizedTensor,
    dequantize,
    fake_quantize,
    quantize,
    quantize_tensor,
)
from anyware.formats.spec import Format, Granularity, ScaleRounding, info

__all__ = [
    "Format",
    "Granularity",
    "QuantizedTensor",
    "ScaleRounding",
    "convert_to_fp8_training",
    "dequantize",
    "fake_quantize",
    "hadamard_transform",
    "info",
    "quantize",
    "quantize_tensor",
]


def __getattr__(name: str) -> Any:
    # training/PTQ/Hadamard pull in torch.nn and are imported on first use
    if name == "convert_to_fp8_training":
        from anyware.formats.training import convert_to_fp8_training

        return convert_to_fp8_training
    if name == "hadamard_transform":
        from anyware.formats.hadamard import hadamard_transform

        return hadamard_transform
    raise AttributeError(f"module 'anyware.formats' has no attribute {name!r}")
