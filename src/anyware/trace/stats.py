"""Per-tensor statistics computed on the tensor's own device, gathered to the host once a step.

For a tensor ``x`` of ``n`` elements the tracer keeps min, max, mean, the L2 norm, NaN and Inf
counts, a checksum of the raw bits and a sketch ``R·x`` with ``R`` a fixed ``(K, n)`` matrix of
random ±1 entries (seeded by ``n``, identical in every run). The sketch is linear, so for two
runs ``R·a − R·b = R·(a − b)`` and by Johnson–Lindenstrauss ``‖R·(a−b)‖ / √K ≈ ‖a − b‖``: the
diff estimates the relative L2 error and the cosine between runs from ``K`` floats per tensor,
where msprobe's statistics mode only compares min/max/mean/norm (a wrong softmax dimension
can keep all four).

Everything is launched as device work with no host synchronisation: results are small tensors
appended to a :class:`Pending` list and copied to the host in two transfers per step
(``flush``). Nothing here writes to the observed tensor, touches the global RNG, or records
autograd history, so recording cannot change the program's numerics.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from anyware.trace.schema import SKETCH

if TYPE_CHECKING:
    import torch

#: Longest sketch row materialised; longer tensors are folded into chunks of this size that
#: share the row (still linear in x). 65536 float32 × 9 rows = 2.3 MB per distinct size.
_CHUNK = 1 << 16

_RAW_VIEW = {1: "uint8", 2: "int16", 4: "int32", 8: "int64"}


@dataclass(kw_only=True)
class _SketchCache:
    mats: dict[tuple[int, str], Any] = field(default_factory=dict)

    def get(self, n: int, device: torch.device) -> Any:
        import torch

        key = (n, str(device))
        m = self.mats.get(key)
        if m is None:
            # A private generator: the user's RNG stream must not move.
            g = torch.Generator().manual_seed(0x5EED + n)
            signs = torch.randint(0, 2, (SKETCH, n), generator=g, dtype=torch.int8)
            m = torch.cat([torch.ones(1, n), signs.float() * 2 - 1]).to(device)
            self.mats[key] = m
        return m


_cache = _SketchCache()


def _checksum(x: torch.Tensor) -> torch.Tensor:
    import torch

    raw = _RAW_VIEW.get(x.element_size())
    if x.dtype == torch.bool:
        return x.sum(dtype=torch.int64)
    if raw is None or x.is_complex():
        return torch.zeros((), dtype=torch.int64, device=x.device)
    return x.view(getattr(torch, raw)).sum(dtype=torch.int64)


def tensor_stats(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Device tensors ``(floats, ints)``: ``[min, max, sum, sumsq, sketch...]`` as float32 and
    ``[nan, inf, checksum]`` as int64. Call with autograd off and the tensor detached."""
    import torch

    x = t.reshape(-1)
    if not x.is_contiguous():  # reshape of a strided view may be a view; bits need a copy
        x = x.contiguous()
    n = x.numel()
    xr = x if x.dtype == torch.float32 else x.to(torch.float32)
    mn, mx = torch.aminmax(xr)
    # Sketch, sum and norm over the finite values: an attention mask's -inf must not turn
    # every statistic of the tensor into inf/NaN (the counts keep the non-finite ones).
    xf = torch.nan_to_num(xr, nan=0.0, posinf=0.0, neginf=0.0)
    if n <= _CHUNK:
        proj = torch.mv(_cache.get(n, xf.device), xf)
    else:
        whole = n - n % _CHUNK
        mat = _cache.get(_CHUNK, xf.device)
        proj = (xf[:whole].view(-1, _CHUNK) @ mat.T).sum(0)
        if whole < n:
            proj = proj + torch.mv(mat[:, : n - whole], xf[whole:])
    floats = torch.cat([torch.stack([mn, mx, proj[0], torch.dot(xf, xf)]), proj[1:]])
    ints = torch.stack([torch.isnan(xr).sum(), torch.isinf(xr).sum(), _checksum(x)])
    return floats, ints


def is_float(t: torch.Tensor) -> bool:
    return t.is_floating_point()


@dataclass(kw_only=True)
class Pending:
    """Rows waiting for their device statistics; ``flush`` gathers them in two copies."""

    rows: list[dict[str, Any]] = field(default_factory=list)
    floats: list[Any] = field(default_factory=list)
    ints: list[Any] = field(default_factory=list)

    def add(self, row: dict[str, Any], t: torch.Tensor) -> None:
        import torch

        n = t.numel()
        row["numel"] = n
        if n == 0:
            floats = torch.zeros(4 + SKETCH, device=t.device)
            ints = torch.zeros(3, dtype=torch.int64, device=t.device)
        else:
            with _no_autocast(t):
                floats, ints = tensor_stats(t)
        self.rows.append(row)
        self.floats.append(floats)
        self.ints.append(ints)

    def flush(self) -> list[dict[str, Any]]:
        """Host copies of every pending row's statistics, in record order."""
        import torch

        if not self.rows:
            return []
        rows, floats, ints = self.rows, self.floats, self.ints
        self.rows, self.floats, self.ints = [], [], []
        by_dev: dict[str, list[int]] = {}
        for i, f in enumerate(floats):
            by_dev.setdefault(str(f.device), []).append(i)
        host_f: list[Any] = [None] * len(rows)
        host_i: list[Any] = [None] * len(rows)
        for idx in by_dev.values():
            # One stack and one device→host copy per device and per kind, once a step.
            fs = torch.stack([floats[i] for i in idx]).to("cpu", torch.float64).tolist()
            is_ = torch.stack([ints[i] for i in idx]).cpu().tolist()
            for j, i in enumerate(idx):
                host_f[i], host_i[i] = fs[j], is_[j]
        out = []
        for row, f, i in zip(rows, host_f, host_i, strict=True):
            n = row["numel"]
            row.update(
                min=f[0] if n else 0.0,
                max=f[1] if n else 0.0,
                mean=f[2] / n if n else 0.0,
                l2=max(f[3], 0.0) ** 0.5,
                sketch=f[4:],
                nan=i[0],
                inf=i[1],
                checksum=i[2],
            )
            out.append(row)
        return out


def _no_autocast(t: torch.Tensor) -> contextlib.AbstractContextManager[Any]:
    """Statistics in float32 even inside the user's autocast region (a bf16 sketch would be
    noise, and autocast caching must not see our casts)."""
    import torch

    dev = t.device.type
    if torch.is_autocast_enabled(dev):
        return torch.autocast(dev, enabled=False)
    return contextlib.nullcontext()
