"""Formats tests run Triton kernels in its CPU interpreter (set before triton is imported)."""

from __future__ import annotations

import os

os.environ.setdefault("TRITON_INTERPRET", "1")
