"""Running the aggregator: in a thread (tests, the demo) or as its own process
(``anyware monitor serve``, ``anyware run --monitor`` via :mod:`.launch`).

``python -m anyware.monitor.serve --events DIR --port 0 --ready-file F`` binds, writes
``{"addr", "url", "pid"}`` to ``F`` atomically, and serves until SIGTERM/SIGINT.
"""

from __future__ import annotations

import argparse
import ipaddress
import secrets
import socket
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from anyware.monitor.aggregator import Aggregator
from anyware.monitor.config import CheckConfig

DEFAULT_PORT = 8765


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        raise ValueError(
            f"cannot listen on {host}:{port} ({e.strerror or e}); pick another --port"
        ) from None
    sock.listen(128)
    sock.set_inheritable(True)
    return sock


@dataclass(kw_only=True)
class ServerHandle:
    aggregator: Aggregator
    host: str
    port: int
    token: str | None
    server: Any
    thread: threading.Thread | None = None

    @property
    def addr(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def url(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}/" + (f"?token={self.token}" if self.token else "")

    def stop(self) -> None:
        self.server.should_exit = True
        if self.thread is not None:
            self.thread.join(5.0)
        self.aggregator.stop()


def _server(agg: Aggregator, token: str | None) -> Any:
    import uvicorn

    from anyware.monitor.app import create_app

    config = uvicorn.Config(
        create_app(agg, token=token),
        log_level="warning",
        access_log=False,
        lifespan="off",
        timeout_graceful_shutdown=1,  # an open dashboard stream must not hold up a stop
    )
    return uvicorn.Server(config)


def serve_in_thread(
    agg: Aggregator, *, host: str = "127.0.0.1", port: int = 0, token: str | None = None
) -> ServerHandle:
    """Start the web app in a daemon thread and return once it accepts connections."""
    if not is_loopback(host) and token is None:
        raise ValueError(f"serving on {host} (not loopback) needs a token")
    sock = bind(host, port)
    server = _server(agg, token)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="anyware-monitor-http", daemon=True
    )
    agg.start()
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started and thread.is_alive() and time.monotonic() < deadline:
        time.sleep(0.02)
    if not server.started:
        raise RuntimeError("the monitor's web server did not start")
    return ServerHandle(
        aggregator=agg,
        host=host,
        port=sock.getsockname()[1],
        token=token,
        server=server,
        thread=thread,
    )


def serve_forever(
    agg: Aggregator,
    *,
    host: str,
    port: int,
    token: str | None,
    ready_file: Path | None = None,
    announce: Any = None,
) -> None:
    """Serve in this thread until SIGINT/SIGTERM (uvicorn handles both)."""
    if not is_loopback(host) and token is None:
        raise ValueError(f"serving on {host} (not loopback) needs a token")
    sock = bind(host, port)
    server = _server(agg, token)
    handle = ServerHandle(
        aggregator=agg, host=host, port=sock.getsockname()[1], token=token, server=server
    )
    agg.start()
    if ready_file is not None:
        import os

        from anyware._io import atomic_write_json

        atomic_write_json(ready_file, {"addr": handle.addr, "url": handle.url, "pid": os.getpid()})
    if announce is not None:
        announce(handle)
    try:
        server.run(sockets=[sock])
    finally:
        agg.stop()


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m anyware.monitor.serve")
    p.add_argument("--events", type=Path)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=DEFAULT_PORT)
    p.add_argument("--token")
    p.add_argument("--checks", type=Path, help="JSON file of CheckConfig thresholds")
    p.add_argument("--runs", type=Path, help="directory of saved runs to compare against")
    p.add_argument("--ready-file", type=Path)
    a = p.parse_args(argv)
    try:
        cfg = CheckConfig.from_file(a.checks) if a.checks else CheckConfig()
        token = a.token or (None if is_loopback(a.host) else secrets.token_urlsafe(16))
        agg = Aggregator(events_dir=a.events, checks=cfg, runs_dir=a.runs)
        serve_forever(
            agg,
            host=a.host,
            port=a.port,
            token=token,
            ready_file=a.ready_file,
            announce=lambda h: print(f"anyware monitor: {h.url}", flush=True),
        )
    except ValueError as e:
        print(f"anyware monitor: error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
