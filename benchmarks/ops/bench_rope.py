"""Benchmark ``anyware.ops.rope`` against torch/aten on the present device.

Prints GB/s for aten, the pure-PyTorch reference and the Triton kernel (on a cpu
the kernel only runs in Triton's interpreter, which is not timed), each with its ratio to aten.
Run: ``python benchmarks/ops/bench_rope.py [--large] [--json FILE]``.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

from _common import main

if __name__ == "__main__":
    main("rope")
