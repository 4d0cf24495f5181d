"""anyware's operator library: each op a pure-PyTorch reference plus a Triton kernel.

>>> from anyware import ops
>>> y = ops.rms_norm(x, w)                  # the implementation this device prefers
>>> y = ops.rms_norm(x, w, impl="triton")   # this one, or an error that says why not
>>> with ops.use():                         # unmodified models run on the kernels
...     model(x)

Selection order, fallbacks and ``anyware ops list`` are described in
:mod:`anyware.ops._registry`.
"""

from __future__ import annotations

from anyware.ops._registry import (
    CALLS,
    Choice,
    Impl,
    ImplUnavailableError,
    OpSpec,
    choose,
    describe,
    get_op,
    op_names,
)
from anyware.ops.cross_entropy import cross_entropy, cross_entropy_reference
from anyware.ops.embedding_bag import embedding_bag, embedding_bag_reference
from anyware.ops.flash_attention import flash_attention, flash_attention_reference
from anyware.ops.fp8_matmul import fp8_matmul, fp8_matmul_reference
from anyware.ops.grouped_matmul import grouped_matmul, grouped_matmul_reference
from anyware.ops.hadamard import hadamard, hadamard_reference
from anyware.ops.matmul import matmul, matmul_reference
from anyware.ops.moe_permute import (
    moe_align,
    moe_permute,
    moe_permute_reference,
    moe_unpermute,
    moe_unpermute_reference,
)
from anyware.ops.moe_route import moe_route, moe_route_reference
from anyware.ops.mx_matmul import mx_matmul, mx_matmul_reference
from anyware.ops.override import Usage, disable, enable, enabled, use
from anyware.ops.rms_norm import rms_norm, rms_norm_reference
from anyware.ops.rope import rope, rope_reference
from anyware.ops.sparse_attention import (
    indexer_scores_reference,
    indexer_topk,
    select_topk,
    sparse_attention,
    sparse_attention_reference,
)
from anyware.ops.swiglu import swiglu, swiglu_reference

__all__ = [
    "CALLS",
    "Choice",
    "Impl",
    "ImplUnavailableError",
    "OpSpec",
    "Usage",
    "choose",
    "cross_entropy",
    "cross_entropy_reference",
    "describe",
    "disable",
    "embedding_bag",
    "embedding_bag_reference",
    "enable",
    "enabled",
    "flash_attention",
    "flash_attention_reference",
    "fp8_matmul",
    "fp8_matmul_reference",
    "get_op",
    "grouped_matmul",
    "grouped_matmul_reference",
    "hadamard",
    "hadamard_reference",
    "indexer_scores_reference",
    "indexer_topk",
    "matmul",
    "matmul_reference",
    "moe_align",
    "moe_permute",
    "moe_permute_reference",
    "moe_route",
    "moe_route_reference",
    "moe_unpermute",
    "moe_unpermute_reference",
    "mx_matmul",
    "mx_matmul_reference",
    "op_names",
    "rms_norm",
    "rms_norm_reference",
    "rope",
    "rope_reference",
    "select_topk",
    "sparse_attention",
    "sparse_attention_reference",
    "swiglu",
    "swiglu_reference",
    "use",
]
