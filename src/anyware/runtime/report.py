"""The environment report behind ``anyware env``: backends, devices, versions, variables.

It is the view a user pastes into a bug report, so it must never fail: a backend whose probe
raises is reported as unavailable with the exception as its reason.
"""

from __future__ import annotations

import os
import platform
import sys
from importlib import metadata
from typing import Any

from anyware import __version__, _env
from anyware.runtime import registry
from anyware.runtime.protocol import Backend

VISIBLE_DEVICE_VARS = (
    "CUDA_VISIBLE_DEVICES",
    "HIP_VISIBLE_DEVICES",
    "ROCR_VISIBLE_DEVICES",
    "ASCEND_RT_VISIBLE_DEVICES",
    "MLU_VISIBLE_DEVICES",
    "ZE_AFFINITY_MASK",
    "TRITON_INTERPRET",
)


def _dist_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _device_entry(backend: Backend, index: int) -> dict[str, Any]:
    cap = backend.capability(index)
    mem = backend.memory_stats(index)
    return {
        "index": index,
        "name": cap.name,
        "memory_total": mem.total,
        "memory": mem.to_json(),
        "capability": cap.to_json(),
    }


def _backend_entry(backend: Backend) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "name": backend.name,
        "available": False,
        "reason": "",
        "device_type": backend.device_type,
        "dist_backend": backend.dist_backend,
        "visible_devices_var": backend.visible_devices_var,
        "devices": [],
    }
    try:
        status = backend.probe()
        entry["available"], entry["reason"] = status.available, status.reason
        if status.available:
            entry["devices"] = [_device_entry(backend, i) for i in range(backend.device_count())]
    except Exception as e:  # a vendor stack that crashes on probe is a finding, not a crash
        entry["available"], entry["reason"] = False, f"probe failed: {type(e).__name__}: {e}"
    return entry


def collect(device: str | None = None) -> dict[str, Any]:
    """The ``anyware env --json`` document (the contract in the foundation issue)."""
    import torch

    from anyware.runtime.visible import child_env

    selected = registry.select(device)
    visible = child_env(selected)  # validates ANYWARE_VISIBLE_DEVICES (ValueError if malformed)
    backends = [_backend_entry(b) for b in registry.all_backends()]
    for name, why in registry.plugin_errors().items():
        if not any(b["name"] == name for b in backends):
            backends.append({"name": name, "available": False, "reason": why, "devices": []})
    env = _env.in_effect()
    env.update({k: os.environ[k] for k in VISIBLE_DEVICE_VARS if k in os.environ})
    return {
        "selected": selected.name,
        "backends": backends,
        "versions": {
            "python": platform.python_version(),
            "torch": str(torch.__version__),
            "triton": _dist_version("triton"),
            "anyware": __version__,
        },
        "platform": {
            "system": platform.system(),
            "machine": platform.machine(),
            "executable": sys.executable,
        },
        "env": dict(sorted(env.items())),
        "child_env": visible,
    }
