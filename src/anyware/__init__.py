"""anyware: run, port, check and tune PyTorch workloads on any accelerator.

Importing this package is cheap and never touches a device: it does not import torch. The
components live in subpackages (``anyware.runtime``, ``anyware.migrate``, ...) and are imported
when used.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__"]
