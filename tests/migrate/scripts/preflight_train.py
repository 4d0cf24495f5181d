"""A training script with an ``anyware_preflight`` hook, for the launcher's pre-flight tests.

The hook writes ``preflight-<pid>.json`` (its argv, world size and module name) into
``--markers`` and then checks the shapes; every rank that starts writes ``rank<R>-<pid>.txt``
there, so a test can prove that a rejected configuration started no rank.
"""

import argparse
import json
import os
import sys
from pathlib import Path

from preflight_shapes import check


def parse(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser()
    p.add_argument("--experts", type=int, default=8)
    p.add_argument("--top-k", type=int, default=2)
    p.add_argument("--markers", type=Path, required=True)
    p.add_argument("--break-hook", action="store_true", help="the hook itself fails")
    return p.parse_args(argv)


def anyware_preflight(argv: list[str], world_size: int) -> None:
    args = parse(argv)
    args.markers.mkdir(parents=True, exist_ok=True)
    record = {"argv": argv, "world_size": world_size, "module": __name__, "pid": os.getpid()}
    (args.markers / f"preflight-{os.getpid()}.json").write_text(json.dumps(record))
    if args.break_hook:
        {}["no such key"]  # a bug in the hook, not a rejected configuration
    check(args.experts, args.top_k, world_size)


def main() -> None:
    args = parse(sys.argv[1:])
    world = int(os.environ.get("WORLD_SIZE", "1"))
    check(args.experts, args.top_k, world)  # runs without the launcher still check
    args.markers.mkdir(parents=True, exist_ok=True)
    rank = os.environ.get("RANK", "0")
    (args.markers / f"rank{rank}-{os.getpid()}.txt").write_text(" ".join(sys.argv[1:]))


if __name__ == "__main__":
    main()
