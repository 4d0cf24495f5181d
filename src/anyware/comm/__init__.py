"""``anyware.comm``: collective communication written once as plain-data schedules
(:mod:`~anyware.comm.schedule`, :mod:`~anyware.comm.algorithms`), run by pluggable transports
(torch.distributed point-to-point, same-host shared memory, or both), chosen per message size
by an α-β cost model, and simulated at scales no one can test locally
(:mod:`~anyware.comm.simulate`).

Inside an initialised ``torch.distributed`` process group::

    from anyware import comm
    comm.all_reduce(t)                       # in place, algorithm chosen by the cost model
    comm.all_reduce(t, op="max", algo="ring")
    comm.all_to_all(out, inp, output_split_sizes, input_split_sizes)
    work = comm.all_reduce(t, async_op=True); ...; work.wait()

Importing this package does not import torch; the functions do on first use.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "CommError",
    "CommMismatchError",
    "CommTimeoutError",
    "Work",
    "all_gather",
    "all_reduce",
    "all_to_all",
    "barrier",
    "broadcast",
    "communicator",
    "destroy",
    "moe_combine",
    "moe_dispatch",
    "reduce",
    "reduce_scatter",
]

_API = {
    "Work",
    "all_gather",
    "all_reduce",
    "all_to_all",
    "barrier",
    "broadcast",
    "communicator",
    "destroy",
    "reduce",
    "reduce_scatter",
}


def __getattr__(name: str) -> Any:
    if name in _API:
        from anyware.comm import api

        value = getattr(api, name)
    elif name in ("moe_dispatch", "moe_combine"):
        from anyware.comm import moe

        value = getattr(moe, name.removeprefix("moe_"))
    elif name in ("CommError", "CommMismatchError", "CommTimeoutError"):
        from anyware.comm import errors

        value = getattr(errors, name)
    else:
        raise AttributeError(f"module 'anyware.comm' has no attribute {name!r}")
    globals()[name] = value  # resolved once: `comm.all_reduce` is on the latency path
    return value
