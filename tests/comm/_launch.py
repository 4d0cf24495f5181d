"""Start ``world`` ranks of ``tests/comm/_worker.py`` on a free port with a hard timeout, and
collect each rank's JSON result. Every test launches few processes (torch import ≈ 2 s each)
and runs many checks inside them."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

WORKER = Path(__file__).with_name("_worker.py")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def launch(
    scenario: str,
    world: int,
    tmp: Path,
    *,
    timeout: float = 60.0,
    env: dict[str, str] | None = None,
) -> list[dict[str, Any]]:
    """Run ``scenario`` on ``world`` ranks; return each rank's result (``{"error": ...}`` when
    the rank raised, ``{"exit": code}`` when it died without writing one)."""
    port = free_port()
    procs = []
    for r in range(world):
        e = dict(os.environ, OMP_NUM_THREADS="1", COMM_TEST_TMP=str(tmp), **(env or {}))
        for k in [k for k in e if k.startswith("ANYWARE_") and k not in (env or {})]:
            del e[k]  # the parent's settings must not leak into a test's ranks
        procs.append(
            subprocess.Popen(
                [sys.executable, str(WORKER), scenario, str(r), str(world), str(port), str(tmp)],
                env=e,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        )
    deadline = time.monotonic() + timeout
    logs = []
    try:
        for p in procs:
            left = max(0.1, deadline - time.monotonic())
            out, _ = p.communicate(timeout=left)
            logs.append(out.decode(errors="replace"))
    except subprocess.TimeoutExpired:
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
        for p in procs:
            p.wait()
        raise AssertionError(
            f"{scenario} on {world} ranks did not finish in {timeout:g} s"
        ) from None
    results = []
    for r, p in enumerate(procs):
        f = tmp / f"result{r}.json"
        if f.exists():
            results.append(json.loads(f.read_text()))
        else:
            results.append({"exit": p.returncode, "log": logs[r][-3000:]})
    return results
