"""What ``anyware run --monitor`` calls: start the aggregator as its own process for one run.

A separate process keeps the aggregator's work (JSON parsing, checks, the dashboard) off the
launcher's GIL, and lets it die without touching the training: ranks keep their JSONL and spool.

>>> h = start_for_run(Path("runs/2026-11-29T02-30-00"))
>>> h.addr, h.url        # ('127.0.0.1:41231', 'http://127.0.0.1:41231/')
>>> h.stop()
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

#: Importing fastapi + uvicorn + starting takes ~1 s here; a loaded CI box can take much longer.
START_TIMEOUT_S = 30.0


@dataclass(kw_only=True)
class MonitorHandle:
    """A running aggregator process."""

    addr: str
    """``host:port`` for ``ANYWARE_MONITOR_ADDR``."""
    url: str
    """The dashboard."""
    process: subprocess.Popen[bytes]
    events_dir: Path

    def stop(self, timeout: float = 5.0) -> None:
        """Terminate the aggregator (idempotent); it has written its alerts as it went."""
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout)


def start_for_run(
    events_dir: Path,
    *,
    port: int = 0,
    checks: Path | None = None,
    extra_env: dict[str, str] | None = None,
) -> MonitorHandle:
    """Start ``anyware monitor serve --events events_dir`` on a free loopback port and wait until
    it listens. Its output goes to ``events_dir/monitor-server.log``."""
    events_dir = Path(events_dir)
    events_dir.mkdir(parents=True, exist_ok=True)
    ready = events_dir / ".monitor-ready.json"
    ready.unlink(missing_ok=True)
    cmd = [
        sys.executable,
        "-m",
        "anyware.monitor.serve",
        "--events",
        str(events_dir),
        "--port",
        str(port),
        "--ready-file",
        str(ready),
    ]
    if checks is not None:
        cmd += ["--checks", str(checks)]
    env = {**os.environ, **(extra_env or {})}
    for var in (
        "ANYWARE_MONITOR_ADDR",
        "ANYWARE_MONITOR_EVENTS",
        "ANYWARE_TRACE_DIR",
        "ANYWARE_PROFILE_DIR",
    ):
        env.pop(var, None)  # the aggregator itself is not a rank
    with open(events_dir / "monitor-server.log", "ab") as log:
        proc = subprocess.Popen(
            cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env
        )
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if ready.exists():
            info = json.loads(ready.read_text(encoding="utf-8"))
            return MonitorHandle(
                addr=info["addr"], url=info["url"], process=proc, events_dir=events_dir
            )
        if proc.poll() is not None:
            log_text = (events_dir / "monitor-server.log").read_text(errors="replace")[-2000:]
            raise RuntimeError(
                f"the monitor's aggregator exited with status {proc.returncode}: {log_text}"
            )
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"the monitor's aggregator did not start within {START_TIMEOUT_S:.0f} s")
