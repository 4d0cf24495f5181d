"""The failure-signature registry: one module per signature, each exporting ``SIGNATURE``.

Codes are stable (users grep for them and suppress them by code); a new signature takes the next
free number. ``LOG013`` (hang) has no line rules: it is inferred from the other ranks' timeouts in
:mod:`anyware.logs.rootcause`.
"""

from __future__ import annotations

import difflib
import importlib
import threading

from anyware.logs.model import Signature

_MODULES = (
    "log001_collective_timeout",
    "log002_ccl_error",
    "log003_device_oom",
    "log004_xid",
    "log005_ecc",
    "log006_segfault",
    "log007_nonfinite",
    "log008_python_exception",
    "log009_launcher",
    "log010_network",
    "log011_filesystem",
    "log012_killed",
    "log013_hang",
)

_REGISTRY: dict[str, Signature] = {}
_load_lock = threading.Lock()
_loaded = threading.Event()


def register(sig: Signature) -> Signature:
    if sig.code in _REGISTRY and _REGISTRY[sig.code] is not sig:
        raise ValueError(f"signature code {sig.code} is registered twice")
    _REGISTRY[sig.code] = sig
    return sig


def all_signatures() -> tuple[Signature, ...]:
    if not _loaded.is_set():
        # Under a lock: ``analyze`` scans files on two threads, and a thread that saw the registry
        # half filled by the other used to scan its file without the later signatures (a fresh
        # process sometimes lost a rank's LOG008 traceback).
        with _load_lock:
            if not _loaded.is_set():
                for name in _MODULES:
                    register(importlib.import_module(f"{__name__}.{name}").SIGNATURE)
                _loaded.set()
    return tuple(_REGISTRY[c] for c in sorted(_REGISTRY))


def get(code: str) -> Signature:
    sigs = {s.code: s for s in all_signatures()}
    key = code.strip().upper()
    if key in sigs:
        return sigs[key]
    close = difflib.get_close_matches(key, list(sigs), n=1)
    hint = f"; did you mean {close[0]}?" if close else ""
    raise KeyError(f"unknown log signature {code!r} (known: {', '.join(sigs)}){hint}")


def needles() -> tuple[str, ...]:
    """Every literal any signature looks for, for the one-pass block prefilter."""
    return tuple(sorted({n for s in all_signatures() for n in s.needles}))
