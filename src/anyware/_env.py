"""Every ``ANYWARE_*`` environment variable, typed, in one place.

Components read their settings through the accessors here instead of ``os.environ`` so that
``anyware env`` can list what is in effect and a typo in a value fails with one clear message
that names the variable.
"""

from __future__ import annotations

import os
from dataclasses import dataclass


@dataclass(frozen=True, slots=True, kw_only=True)
class EnvVar:
    """One documented environment variable."""

    name: str
    """The variable's name, always ``ANYWARE_*``."""
    doc: str
    """One line: what it selects and its format."""
    default: str | None = None
    """The value used when it is unset (``None``: feature off / auto)."""

    def get(self) -> str | None:
        value = os.environ.get(self.name)
        if value is None or value.strip() == "":
            return self.default
        return value.strip()


VARIABLES: dict[str, EnvVar] = {}


def _declare(name: str, doc: str, default: str | None = None) -> EnvVar:
    var = EnvVar(name=name, doc=doc, default=default)
    VARIABLES[name] = var
    return var


# --- runtime -------------------------------------------------------------------------------
DEVICE = _declare("ANYWARE_DEVICE", "backend to select (cuda, rocm, xpu, npu, mlu, mps, cpu, fake)")
VISIBLE_DEVICES = _declare(
    "ANYWARE_VISIBLE_DEVICES",
    "comma-separated device indices, translated into the backend's own variable for children",
)
FAKE_DEVICES = _declare(
    "ANYWARE_FAKE_DEVICES",
    "the fake backend's table: a device count ('4') or JSON with count/name/arch/memory_total/dtypes/triton",
)
# --- migrate -------------------------------------------------------------------------------
MIGRATE = _declare("ANYWARE_MIGRATE", "set to 1 by `anyware run`: the child installs the shim")
MIGRATE_REPORT = _declare("ANYWARE_MIGRATE_REPORT", "where the shim writes its JSON report")
MIGRATE_STRICT = _declare("ANYWARE_MIGRATE_STRICT", "1: what the shim cannot honour is an error")
MIGRATE_PARTS = _declare(
    "ANYWARE_MIGRATE_PARTS",
    "set by `anyware run`: directory where each process writes its report part",
)
MIGRATE_PKG = _declare(
    "ANYWARE_MIGRATE_PKG",
    "set by `anyware run`: directory holding the anyware package, for children",
)
# --- ops -----------------------------------------------------------------------------------
OPS_IMPL = _declare("ANYWARE_OPS_IMPL", "operator implementation: reference or triton")
# --- comm ----------------------------------------------------------------------------------
COMM_ALGO = _declare(
    "ANYWARE_COMM_ALGO", "algorithm overrides, e.g. 'allreduce:tree@<=1M,ring@>1M'"
)
COMM_TRANSPORT = _declare(
    "ANYWARE_COMM_TRANSPORT", "comm transport: auto, shm, p2p or hybrid", "auto"
)
COMM_TIMEOUT = _declare(
    "ANYWARE_COMM_TIMEOUT", "seconds a collective waits for a peer before naming it", "300"
)
COMM_COST_FILE = _declare(
    "ANYWARE_COMM_COST_FILE", "JSON α-β cost model to load instead of calibrating by ping-pong"
)
# --- trace / monitor / profile (set by `anyware run`, read in each rank) ---------------------
TRACE_DIR = _declare("ANYWARE_TRACE_DIR", "record a precision trace into this directory")
TRACE_LEVEL = _declare("ANYWARE_TRACE_LEVEL", "trace level: module, op or mix", "module")
TRACE_TENSORS = _declare(
    "ANYWARE_TRACE_TENSORS", "glob over module paths whose tensors the trace also saves whole"
)
MONITOR_ADDR = _declare("ANYWARE_MONITOR_ADDR", "host:port of the monitor's aggregator")
MONITOR_EVENTS = _declare("ANYWARE_MONITOR_EVENTS", "directory for per-rank monitor JSONL")
MONITOR_TOKEN = _declare(
    "ANYWARE_MONITOR_TOKEN", "bearer token of an aggregator bound to a non-loopback address"
)
PROFILE_DIR = _declare("ANYWARE_PROFILE_DIR", "write torch.profiler traces into this directory")
PROFILE_STEPS = _declare("ANYWARE_PROFILE_STEPS", "steps to profile, 'A:B'")
PROFILE_RECORD = _declare(
    "ANYWARE_PROFILE_RECORD",
    "profiler extras, comma-separated: shapes, stack, memory, threads "
    "(unset: threads in a distributed job, memory otherwise)",
)


def in_effect() -> dict[str, str]:
    """Every ``ANYWARE_*`` variable that is set, declared or not (typos show up too)."""
    return {k: v for k, v in sorted(os.environ.items()) if k.startswith("ANYWARE_")}


def flag(var: EnvVar) -> bool:
    """A boolean variable: 1/true/yes/on are true, anything else false."""
    value = var.get()
    return value is not None and value.lower() in {"1", "true", "yes", "on"}
