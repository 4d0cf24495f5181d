"""Corpus control run: a script on plain cpu torch, with anyware nowhere in the process.

    python _control.py SCRIPT [ARGS...]

Used by ``corpus.py run --mode control`` to tell an upstream bug from a migration failure: if
the script fails the same way here, with no device and no anyware, the device is not the cause.
On top of running the script it turns on autograd anomaly detection (the error then shows the
forward call whose saved tensor was modified), reports which optimizer steps modify parameters
in place (and where they are called from), and at the end prints the torch version, whether
CUDA was visible, and which anyware modules were loaded (none, as the evidence requires).
This file imports only the standard library and torch.
"""

from __future__ import annotations

import os
import runpy
import sys
import traceback
from typing import Any

import torch
from torch.optim.optimizer import (
    register_optimizer_step_post_hook,
    register_optimizer_step_pre_hook,
)

SCRIPT = os.path.abspath(sys.argv[1])
_versions: dict[int, int] = {}
_reported = [0]


def _call_site() -> str:
    for frame in reversed(traceback.extract_stack()):
        if os.path.abspath(frame.filename) == SCRIPT:
            return f"{os.path.basename(SCRIPT)}:{frame.lineno}"
    return "?"


def _params(opt: torch.optim.Optimizer) -> list[torch.Tensor]:
    return [p for group in opt.param_groups for p in group["params"]]


def _pre(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    _versions.clear()
    _versions.update({id(p): p._version for p in _params(opt)})


def _post(opt: torch.optim.Optimizer, args: Any, kwargs: Any) -> None:
    if _reported[0] >= 3:  # the first steps are the evidence; later ones repeat it
        return
    _reported[0] += 1
    changed = [
        f"{list(p.shape)} v{_versions[id(p)]}→v{p._version}"
        for p in _params(opt)
        if p._version != _versions.get(id(p))
    ]
    print(
        f"[control] {type(opt).__name__}.step() at {_call_site()} modified "
        f"{len(changed)} parameter(s) in place: {', '.join(changed)}",
        file=sys.stderr,
        flush=True,
    )


def main() -> None:
    torch.autograd.set_detect_anomaly(True)
    register_optimizer_step_pre_hook(_pre)
    register_optimizer_step_post_hook(_post)
    sys.argv = sys.argv[1:]
    sys.path.insert(0, os.path.dirname(SCRIPT))
    try:
        runpy.run_path(SCRIPT, run_name="__main__")
    finally:
        loaded = sorted(m for m in sys.modules if m == "anyware" or m.startswith("anyware."))
        print(
            f"[control] torch {torch.__version__}; cuda visible: {torch.cuda.is_available()}; "
            f"anyware modules loaded: {', '.join(loaded) or 'none'}",
            file=sys.stderr,
            flush=True,
        )


if __name__ == "__main__":
    main()
