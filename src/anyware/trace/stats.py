"""Per-tensor statistics computed on the tensor's own device, gathered to the host once a step.

For a tensor ``x`` of ``n`` elements the tracer keeps min, max, mean, the L2 norm, NaN and Inf
counts, a checksum of the raw bits and a sketch ``R·x`` with ``R`` a fixed ``(K, n)`` matrix of
random ±1 entries (seeded by ``n``, identical in every run). The sketch is linear (see ``tensor_stats``), so for two
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
import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from anyware.trace.schema import COLUMNS, SKETCH, STAT_COLUMNS

if TYPE_CHECKING:
    import torch

_RAW_VIEW = {1: "uint8", 2: "int16", 4: "int32", 8: "int64"}


@dataclass(kw_only=True)
class _SignCache:
    """One ±1 vector per block length and device, from a private generator (the user's RNG
    stream must not move)."""

    vecs: dict[tuple[int, str], Any] = field(default_factory=dict)

    def get(self, n: int, device: torch.device) -> Any:
        import torch

        key = (n, str(device))
        v = self.vecs.get(key)
        if v is None:
            g = torch.Generator().manual_seed(0x5EED + n)
            v = (torch.randint(0, 2, (n,), generator=g, dtype=torch.int8).float() * 2 - 1).to(
                device
            )
            self.vecs[key] = v
        return v


_signs = _SignCache()


def _checksum(x: torch.Tensor) -> torch.Tensor:
    import torch

    raw = _RAW_VIEW.get(x.element_size())
    if x.dtype == torch.bool:
        return x.sum(dtype=torch.int64)
    if raw is None or x.is_complex():
        return torch.zeros((), dtype=torch.int64, device=x.device)
    # int32 wrap-around sum of the raw bits: 4× faster than an int64 sum, still a checksum.
    return x.view(getattr(torch, raw)).sum(dtype=torch.int32).to(torch.int64)


def tensor_stats(t: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Device tensors ``(floats, checksum)``: ``[min, max, sum, sumsq, nonfinite,
    sketch...]`` as float32 and the raw-bit checksum as int64. Call with autograd off and the tensor detached.

    The sketch splits the (finite-cleaned) tensor into ``K`` equal blocks and projects each on
    one shared ±1 vector: ``s_k = <x_k, r>``. It is linear and ``E‖s(a) − s(b)‖² = ‖a − b‖²``,
    and it costs one pass over ``x`` (a dense ``K × n`` projection would read 9× more memory
    than the tensor itself: that was measured at 3× the cost of everything else here). The
    ≤ K−1 trailing elements stay out of the sketch; norm, extremes and checksum cover them.
    """
    import torch

    x = t.reshape(-1)
    if not x.is_contiguous():  # reshape of a strided view may be a view; bits need a copy
        x = x.contiguous()
    n = x.numel()
    xr = x if x.dtype == torch.float32 else x.to(torch.float32)
    mn, mx = torch.aminmax(xr)
    # Mean, spread and sketch over the finite values: an attention mask's -inf must not turn
    # every statistic of the tensor into inf/NaN (the counts keep the non-finite ones).
    xf = torch.nan_to_num(xr, nan=0.0, posinf=0.0, neginf=0.0)
    block = n // SKETCH
    if block:
        proj = torch.mv(xf[: block * SKETCH].view(SKETCH, block), _signs.get(block, xf.device))
    else:
        proj = xf.new_zeros(SKETCH)
    # Non-finite count from float arithmetic: x·0 is NaN exactly where x is NaN or ±Inf.
    # Measured 6× cheaper on cpu than isnan().sum() + isinf().sum() (bool reductions take a
    # slow path). Whether they are NaN or Inf is read from min/max on the host (a tensor with
    # both is counted as NaN: it is NaN-tainted either way). Exact below 2^24 elements.
    nonfinite = torch.nan_to_num(xr * 0.0, nan=1.0).sum()
    floats = torch.cat([torch.stack([mn, mx, xf.sum(), torch.dot(xf, xf), nonfinite]), proj])
    return floats, _checksum(x)


def host_stats(t: torch.Tensor) -> tuple[list[float], int]:
    """The same statistics as :func:`tensor_stats` for a CPU tensor, returned as host values.

    On the CPU there is no device queue to stall: a scalar read costs about a microsecond, so
    the extremes are read first and the cleaning of ``tensor_stats`` (two temporaries and
    four extra passes over the tensor) runs only for the rare tensor holding a NaN or an Inf.
    A finite tensor takes five reads and no allocation: extremes, sketch, sum, sum of squares,
    checksum — measured ×2–×9 cheaper than ``tensor_stats`` on 4 Ki–1 Mi-element fp32 tensors
    (the large ones pay most for the temporaries).
    """
    import torch

    x = t.reshape(-1)
    if not x.is_contiguous():
        x = x.contiguous()
    xr = x if x.dtype == torch.float32 else x.to(torch.float32)
    mn, mx = torch.aminmax(xr)
    lo, hi = mn.item(), mx.item()
    if not (math.isfinite(lo) and math.isfinite(hi)):
        floats, bits = tensor_stats(t)
        return floats.tolist(), int(bits)
    n = xr.numel()
    block = n // SKETCH
    if block:
        proj = torch.mv(xr[: block * SKETCH].view(SKETCH, block), _signs.get(block, xr.device))
        sketch = proj.tolist()
    else:
        sketch = [0.0] * SKETCH
    total = xr.sum().item()
    sq = torch.dot(xr, xr).item()
    if x.element_size() == 4 and not x.is_complex():  # fp32 is the rule: no int64 cast
        ck = int(x.view(torch.int32).sum(dtype=torch.int32).item())
    else:
        ck = int(_checksum(x))
    return [lo, hi, total, sq, 0.0, *sketch], ck


_ZERO = ([0.0] * (5 + SKETCH), 0)

#: Index of each per-row field in a :class:`Pending` row tuple (see ``Recorder.observe``): the
#: Parquet columns in order, less the rank (one per file) and what the statistics fill in.
ROW_FIELDS = tuple(c for c in COLUMNS if c not in ("rank", "sketch", *STAT_COLUMNS))


@dataclass(kw_only=True)
class Pending:
    """Rows waiting for their statistics; ``flush`` gathers device ones in two copies.

    A row is a tuple in :data:`ROW_FIELDS` order (cheaper to build than a dict: the op level
    makes hundreds a step). Its statistics are host values for CPU tensors (measured at
    once) or an index into the device lists (gathered at ``flush``); a row observing the very
    tensor of an earlier row shares that row's entry.
    """

    rows: list[tuple[Any, ...]] = field(default_factory=list)
    stats: list[Any] = field(default_factory=list)
    floats: list[Any] = field(default_factory=list)
    ints: list[Any] = field(default_factory=list)

    def add(self, row: tuple[Any, ...], t: torch.Tensor) -> int:
        if t.numel() == 0:
            entry: Any = _ZERO
        elif t.device.type == "cpu":
            with _no_autocast(t):
                entry = host_stats(t)
        else:
            with _no_autocast(t):
                floats, ints = tensor_stats(t)
            entry = len(self.floats)
            self.floats.append(floats)
            self.ints.append(ints)
        self.rows.append(row)
        self.stats.append(entry)
        return len(self.rows) - 1

    def add_copy(self, row: tuple[Any, ...], src: int) -> None:
        """A row whose tensor is the very one (same version) as pending row ``src``."""
        self.rows.append(row)
        self.stats.append(self.stats[src])

    def flush(self) -> dict[str, list[Any]]:
        """Columns of every pending row (fields and statistics), in record order."""
        import torch

        if not self.rows:
            return {}
        rows, stats, floats, ints = self.rows, self.stats, self.floats, self.ints
        self.rows, self.stats, self.floats, self.ints = [], [], [], []
        dev: list[Any] = []
        by_dev: dict[str, list[int]] = {}
        for i, f in enumerate(floats):
            by_dev.setdefault(str(f.device), []).append(i)
        dev = [None] * len(floats)
        for idx in by_dev.values():
            # One stack and one device→host copy per device and per kind, once a step.
            fs = torch.stack([floats[i] for i in idx]).to("cpu", torch.float64).tolist()
            is_ = torch.stack([ints[i] for i in idx]).cpu().tolist()
            for j, i in enumerate(idx):
                dev[i] = (fs[j], is_[j])
        cols: dict[str, list[Any]] = dict(
            zip(ROW_FIELDS, map(list, zip(*rows, strict=True)), strict=True)
        )
        mins, maxs, means, l2s, nans, infs, cks, sketches = [], [], [], [], [], [], [], []
        for n, e in zip(cols["numel"], stats, strict=True):
            f, ck = dev[e] if isinstance(e, int) else e
            bad = int(f[4])
            has_nan = math.isnan(f[0]) or math.isnan(f[1])
            mins.append(f[0] if n else 0.0)
            maxs.append(f[1] if n else 0.0)
            means.append(f[2] / n if n else 0.0)
            l2s.append(max(f[3], 0.0) ** 0.5)
            nans.append(bad if has_nan else 0)
            infs.append(0 if has_nan else bad)
            cks.append(int(ck))
            sketches.append(f[5:])
        cols.update(
            min=mins,
            max=maxs,
            mean=means,
            l2=l2s,
            nan=nans,
            inf=infs,
            checksum=cks,
            sketch=sketches,
        )
        return cols


def _no_autocast(t: torch.Tensor) -> contextlib.AbstractContextManager[Any]:
    """Statistics in float32 even inside the user's autocast region (a bf16 sketch would be
    noise, and autocast caching must not see our casts)."""
    import torch

    dev = t.device.type
    if torch.is_autocast_enabled(dev):
        return torch.autocast(dev, enabled=False)
    return contextlib.nullcontext()
