"""What one trace record is: the levels, phases, Parquet columns and the stable key.

A trace directory holds ``meta.json`` (format version, level, world size, ranks written) and
``rank<N>.parquet`` per rank. One row observes one tensor at one point of execution:

* ``seq``: execution order within the rank (the autograd engine, hooks and the optimizer all
  draw from one counter, so a backward op sorts after the forward op that caused it).
* ``call``: which call the tensor belongs to (an op call, a module call, an optimizer step
  for one parameter); ``role`` says whether it is an input or an output of that call and
  ``inputs`` lists the ``seq`` of the rows that produced each tensor argument (lineage), so
  the diff can ask "did this call's inputs agree?" without storing every input twice.
* the stable key ``step/phase/module/op#call_index/slot`` names the same observation in two
  runs of the same program, whatever the object ids or memory addresses.

Statistics are computed on the device (see :mod:`anyware.trace.stats`): min, max, mean, L2
norm, NaN/Inf counts, a bit checksum and a small random-projection sketch that lets the diff
estimate the relative L2 error and the cosine between two runs' tensors without full dumps.
"""

from __future__ import annotations

from enum import StrEnum

FORMAT_VERSION = 1

#: Random projections kept per tensor. 8 gives a relative-L2 estimate within about ±35% (a
#: chi distribution with 8 degrees of freedom), far finer than the ×3+ margins the diff uses.
SKETCH = 8


class Level(StrEnum):
    """How finely to record."""

    MODULE = "module"
    """Inputs/outputs of every ``nn.Module`` call and the gradients of its outputs and inputs."""
    OP = "op"
    """Every aten op (forward, backward, optimizer), through a dispatch mode."""
    MIX = "mix"
    """Both: module boundaries and every op."""


class Phase(StrEnum):
    FORWARD = "forward"
    BACKWARD = "backward"
    OPTIMIZER = "optimizer"


PHASE_ORDER = {Phase.FORWARD: 0, Phase.BACKWARD: 1, Phase.OPTIMIZER: 2}


class TraceError(ValueError):
    """A trace directory or file that cannot be read; the message names it and what to do."""


#: Parquet columns in order (stats columns are float64 on disk; counts and checksum int64).
STAT_COLUMNS = ("min", "max", "mean", "l2", "nan", "inf", "checksum")
COLUMNS = (
    "seq",
    "step",
    "rank",
    "phase",
    "module",
    "op",
    "call_index",
    "slot",
    "role",
    "call",
    "key",
    "dtype",
    "shape",
    "numel",
    *STAT_COLUMNS,
    "sketch",
    "inputs",
    "location",
    "level",
)


def make_key(step: int, phase: str, module: str, op: str, call_index: int, slot: str) -> str:
    """The stable key of one observation; identical in two runs of the same program."""
    return f"{step}/{phase}/{module}/{op}#{call_index}/{slot}"


def module_label(module: str) -> str:
    """How a module path is shown to people (the root module has the empty path)."""
    return module or "(root)"
