"""LOG002 CCL error: the collective library itself reported an error.

Detects: ``NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled system error``, ``ncclInternalError``,
``HCCL error`` / ``EI0006``, ``CNCL error``, ``unhandled cuda error``, collective mismatches. Lines
saying the *peer* went away (``remote process exited``, ``communicator was aborted``) are victims.
Why it matters: a system/internal error on one rank is usually a NIC, driver or topology problem
on that host. Fix: rerun with ``NCCL_DEBUG=INFO`` (or the vendor's equivalent) and check that
host's fabric; a mismatch is a program bug (ranks calling different collectives).
"""

from __future__ import annotations

from anyware.logs.model import Category, Role, Rule, Signature

SIGNATURE = Signature(
    code="LOG002",
    name="CCL error",
    category=Category.CCL_ERROR,
    needles=(
        "NCCL error",
        "HCCL error",
        "CNCL error",
        "XCCL error",
        "ncclSystemError",
        "ncclInternalError",
        "ncclUnhandledCudaError",
        "unhandled system error",
        "unhandled cuda error",
        "communicator was aborted",
        "remote process exited",
        "mismatch between collectives",
    ),
    rules=(
        Rule(pattern=r"remote process exited|communicator was aborted", role=Role.VICTIM),
        Rule(
            pattern=r"(?P<ccl>[NHCX]CCL) error.*?(?P<detail>unhandled system error|internal "
            r"error|unhandled cuda error|invalid usage|remote process exited[^,]*)"
        ),
        Rule(
            pattern=r"ncclSystemError|ncclInternalError|ncclUnhandledCudaError|unhandled system "
            r"error|unhandled cuda error"
        ),
        Rule(pattern=r"mismatch between collectives", specificity=3),
        Rule(pattern=r"(?P<ccl>[NHCX]CCL) error"),
    ),
    doc=__doc__ or "",
)
