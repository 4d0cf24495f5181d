"""Failure-corpus generator, command line: ``python benchmarks/logs/corpus.py OUT --failure X``.

The generator itself is :mod:`anyware.logs.corpus` (shipped, so ``anyware demo`` and users can
make a corpus too); this script is its entry point beside the benchmarks that use it.
"""

from __future__ import annotations

from anyware.logs.corpus import FAILURES, Truth, generate, main

__all__ = ["FAILURES", "Truth", "generate", "main"]

if __name__ == "__main__":
    main()
