"""``ANYWARE_VISIBLE_DEVICES``: one spelling for every backend's device mask.

The user writes ``ANYWARE_VISIBLE_DEVICES=0,2``; the processes anyware starts get the selected
backend's own variable (``CUDA_VISIBLE_DEVICES``, ``HIP_VISIBLE_DEVICES``,
``ASCEND_RT_VISIBLE_DEVICES``, ``MLU_VISIBLE_DEVICES``, ``ZE_AFFINITY_MASK``).
"""

from __future__ import annotations

from collections.abc import Mapping

from anyware import _env
from anyware.runtime.protocol import Backend


def parse_visible(spec: str, *, source: str = "ANYWARE_VISIBLE_DEVICES") -> list[int]:
    """``"0,2"`` → ``[0, 2]``; anything else is a ``ValueError`` naming the bad value."""
    parts = [p.strip() for p in spec.split(",")]
    if not spec.strip() or any(not p.isdigit() for p in parts):
        raise ValueError(
            f"{source}={spec!r} is malformed: give comma-separated device indices, e.g. 0,2"
        )
    indices = [int(p) for p in parts]
    if len(set(indices)) != len(indices):
        raise ValueError(f"{source}={spec!r} names a device twice")
    return indices


def child_env(
    backend: Backend, spec: str | None = None, base: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Environment additions for a child process: the backend's own mask from ``spec``
    (default ``ANYWARE_VISIBLE_DEVICES``). Indices must exist on this host."""
    source = "ANYWARE_VISIBLE_DEVICES" if spec is None else "visible devices"
    spec = _env.VISIBLE_DEVICES.get() if spec is None else spec
    if spec is None:
        return {}
    indices = parse_visible(spec, source=source)
    count = backend.device_count()
    bad = [i for i in indices if i >= count]
    if bad:
        raise ValueError(
            f"{source}={spec!r} names device(s) {bad}, but backend {backend.name!r} has "
            f"{count} device(s) (indices 0..{count - 1})"
        )
    if backend.visible_devices_var is None:
        return {}  # one device (cpu, mps): nothing to hide
    return {backend.visible_devices_var: ",".join(map(str, indices))}
