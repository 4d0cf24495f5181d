"""Extract a repository at a commit from a local git mirror, skipping blobs the mirror lacks
(large data files and model weights are often absent from snapshots)."""

from __future__ import annotations

import subprocess
from pathlib import Path


def extract(git_dir: Path, commit: str, dest: Path, prefixes: tuple[str, ...] = ("",)) -> list[str]:
    """Write the tree of ``commit`` under ``dest``; returns the paths that were missing."""
    names = subprocess.run(
        ["git", "--git-dir", str(git_dir), "ls-tree", "-r", "--format=%(objectname) %(path)", commit],
        check=True, capture_output=True, text=True,
    ).stdout.splitlines()  # fmt: skip
    missing = []
    for line in names:
        sha, path = line.split(" ", 1)
        if not path.startswith(prefixes):
            continue
        blob = subprocess.run(
            ["git", "--git-dir", str(git_dir), "cat-file", "blob", sha], capture_output=True
        )
        if blob.returncode != 0:
            missing.append(path)
            continue
        out = dest / path
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_bytes(blob.stdout)
    return missing
