"""A job spanning hosts: shared memory to the ranks on this host, torch.distributed to the
rest, inside the same round. Remote messages are posted first (they take longest), the
shared-memory loop runs while they fly, then the remote receives are applied — staged rounds
in their listed order, exactly as the other transports do."""

from __future__ import annotations

from typing import TYPE_CHECKING

from anyware.comm.transports.base import Header, TransportKind, copies, deliver

if TYPE_CHECKING:
    import torch

    from anyware.comm.reduce_ops import ReduceOp
    from anyware.comm.schedule import Buf, Schedule
    from anyware.comm.transports.p2p import P2PTransport
    from anyware.comm.transports.shm import ShmTransport


class HybridTransport:
    kind = TransportKind.HYBRID

    def __init__(self, *, shm: ShmTransport, p2p: P2PTransport, remote: set[int]) -> None:
        self.shm, self.p2p, self.remote = shm, p2p, remote
        self.rank, self.world = p2p.rank, p2p.world

    def run(
        self, schedule: Schedule, buffers: dict[Buf, torch.Tensor], op: ReduceOp, header: Header
    ) -> None:
        try:
            for rnd in schedule.rounds:
                copies(buffers, rnd.pre)
                pend = self.p2p.post(rnd, buffers, header, peers=self.remote)
                staged: dict[int, torch.Tensor] = {}
                self.shm.progress(rnd, buffers, op, header, staged)
                staged.update(self.p2p.finish(pend, rnd, buffers, header))
                for i in sorted(staged):
                    deliver(buffers, rnd, i, staged[i], op)
                copies(buffers, rnd.post)
        except BaseException:
            self.shm._abort()
            raise

    def close(self) -> None:
        self.shm.close()
        self.p2p.close()
