"""Transports run any :class:`~anyware.comm.schedule.Schedule`: ``p2p`` over
torch.distributed send/recv, ``shm`` over same-host shared memory, ``hybrid`` routing each peer
to one or the other by host."""

from __future__ import annotations

from anyware.comm.transports.base import Header, Transport, TransportKind

__all__ = ["Header", "Transport", "TransportKind"]
