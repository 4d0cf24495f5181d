"""The static codemod: find CUDA-specific code and rewrite it into device-agnostic PyTorch
(``torch.accelerator``, torch >= 2.6) that runs without anyware. Rules live in ``rules/``, one
per file with a stable code (MIG001...); the engine is in ``engine.py``."""

from __future__ import annotations

from anyware.migrate.codemod.engine import process_file, run_codemod, transform_source

__all__ = ["process_file", "run_codemod", "transform_source"]
