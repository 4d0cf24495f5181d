"""The torch.distributed transport: messages are ``isend``/``irecv`` of byte packets on the
process group, so any backend with point-to-point support runs every schedule: gloo on CPU,
nccl/hccl/cncl/xccl on devices.

Framing. A receiver never posts a buffer smaller than what may arrive, because gloo
*terminates the process* on an oversized message. A payload of at most ``INLINE`` bytes
travels in one packet with its 64-byte header (tag 0) into a receive of 64 + max(expected,
INLINE) bytes; a larger payload sends the header alone (tag 0) and the payload as a second
message (tag 1), whose receive is posted with the size the header announced. So a rank with a
bigger tensor than its peer produces a clean mismatch error, and small messages still cost one
latency. Tags keep headers and payloads matched when one round sends two messages to a peer.

All receives of a round land in fresh packets and are applied after the round's sends and
receives completed, so a round that reads and writes the same span stays correct even though
gloo may read a send buffer late. Latency is the backend's (gloo: ~82 µs one way here), which
is why the shared-memory transport exists.
"""

from __future__ import annotations

import datetime
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from anyware.comm.errors import CommError, CommMismatchError, CommTimeoutError
from anyware.comm.reduce_ops import ReduceOp
from anyware.comm.schedule import Buf, Round, view
from anyware.comm.transports.base import (
    HEADER_BYTES,
    HEADER_WORDS,
    ITEMSIZE,
    Header,
    TransportKind,
    copies,
    deliver,
)

if TYPE_CHECKING:
    from anyware.comm.schedule import Schedule

INLINE = 64 * 1024


@dataclass(slots=True)
class Pending:
    """One round's posted messages on this transport."""

    works: list[tuple[Any, int, bool]] = field(default_factory=list)  # (work, peer, is_recv)
    packets: list[tuple[int, torch.Tensor]] = field(default_factory=list)  # (recv index, packet)
    keep: list[torch.Tensor] = field(default_factory=list)  # send packets stay alive
    exact: dict[int, torch.Tensor] = field(default_factory=dict)  # device path: recv payloads


class P2PTransport:
    kind = TransportKind.P2P

    def __init__(self, group: Any = None, *, timeout_s: float = 300.0) -> None:
        self.group = group
        self.rank = dist.get_rank(group)
        self.world = dist.get_world_size(group)
        self.timeout_s = timeout_s
        self.device = torch.device("cpu")
        self.exact = False
        """Use the device framing (exact sizes, batched) on CPU too: tests run it over gloo."""

    def post(
        self,
        rnd: Round,
        buffers: dict[Buf, torch.Tensor],
        header: Header,
        *,
        peers: set[int] | None = None,
    ) -> Pending:
        """Post the round's receives and sends (to ``peers`` only, when given)."""
        if self.exact or any(b.device.type != "cpu" for b in buffers.values()):
            return self._post_exact(rnd, buffers, header, peers)
        pend = Pending()
        for i, rv in enumerate(rnd.recvs):
            if peers is not None and rv.peer not in peers:
                continue
            nbytes = rv.span.count * buffers[rv.span.buf].element_size()
            dev = buffers[rv.span.buf].device  # nccl & co. need device packets
            pkt = torch.empty(HEADER_BYTES + max(nbytes, INLINE), dtype=torch.uint8, device=dev)
            w = dist.irecv(pkt, group=self.group, group_src=rv.peer, tag=0)
            pend.works.append((w, rv.peer, True))
            pend.packets.append((i, pkt))
        for s in rnd.sends:
            if peers is not None and s.peer not in peers:
                continue
            data = view(buffers, s.span).reshape(-1).view(torch.uint8)
            inline = data.numel() <= INLINE
            pkt = torch.empty(
                HEADER_BYTES + (data.numel() if inline else 0),
                dtype=torch.uint8,
                device=data.device,
            )
            pkt[:HEADER_BYTES].view(torch.int64).copy_(torch.tensor(header.words(s.span.count)))
            if inline:
                pkt[HEADER_BYTES:].copy_(data)
            pend.keep.append(pkt)
            pend.works.append(
                (dist.isend(pkt, group=self.group, group_dst=s.peer, tag=0), s.peer, False)
            )
            if not inline:
                payload = data.clone()  # gloo may read late; the schedule may write this span
                pend.keep.append(payload)
                w = dist.isend(payload, group=self.group, group_dst=s.peer, tag=1)
                pend.works.append((w, s.peer, False))
        return pend

    def _wait(self, work: Any, peer: int, is_recv: bool, header: Header) -> None:
        try:
            work.wait(timeout=datetime.timedelta(seconds=self.timeout_s))
        except RuntimeError as e:
            if "timed out" in str(e).lower() or "timeout" in str(e).lower():
                what = "message" if is_recv else "receive of our message"
                raise CommTimeoutError(
                    f"rank {self.rank} waited {self.timeout_s:g} s for a {what} from rank "
                    f"{peer} in {header.collective} #{header.seq}; rank {peer} never arrived "
                    "(crashed, hung, or skipped this collective)",
                    rank=peer,
                ) from None
            raise CommError(
                f"rank {self.rank}: point-to-point with rank {peer} failed in "
                f"{header.collective} #{header.seq}: {e}"
            ) from None

    def finish(
        self, pend: Pending, rnd: Round, buffers: dict[Buf, torch.Tensor], header: Header
    ) -> list[tuple[int, torch.Tensor]]:
        """Wait for the round's messages; return (receive index, data) after checking headers."""
        if pend.exact or (pend.packets and pend.packets[0][1].device.type != "cpu"):
            return self._finish_exact(pend, rnd, buffers, header)
        # Headers first, then post the large payloads' receives, *then* wait for our own sends:
        # gloo completes a large send only once the peer posted its receive.
        for w, peer, is_recv in pend.works:
            if is_recv:
                self._wait(w, peer, is_recv, header)
        later: list[tuple[int, torch.Tensor, Any]] = []
        payloads: dict[int, torch.Tensor] = {}
        for i, pkt in pend.packets:
            rv = rnd.recvs[i]
            got = pkt[:HEADER_BYTES].view(torch.int64).tolist()
            assert len(got) == HEADER_WORDS
            sent = got[5] * ITEMSIZE.get(got[3], 1) if got[7] == header.words(0)[7] else 0
            if sent > INLINE:
                payload = torch.empty(sent, dtype=torch.uint8, device=pkt.device)
                w = dist.irecv(payload, group=self.group, group_src=rv.peer, tag=1)
                later.append((rv.peer, payload, w))
            else:
                payload = pkt[HEADER_BYTES : HEADER_BYTES + sent]
            payloads[i] = payload
        for w, peer, is_recv in pend.works:
            if not is_recv:
                self._wait(w, peer, is_recv, header)
        for peer, _, w in later:
            self._wait(w, peer, True, header)
        out, error = [], None
        for i, pkt in pend.packets:  # every announced payload arrived: now judge the headers
            rv = rnd.recvs[i]
            got = pkt[:HEADER_BYTES].view(torch.int64).tolist()
            try:
                header.check(got, rv.span.count, me=self.rank, peer=rv.peer)
            except CommMismatchError as e:
                error = error or e
                continue
            out.append((i, payloads[i].view(buffers[rv.span.buf].dtype)))
        if error is not None:
            raise error
        return out

    def _post_exact(
        self, rnd: Round, buffers: dict[Buf, torch.Tensor], header: Header, peers: set[int] | None
    ) -> Pending:
        """Device backends (nccl, hccl, ...) match messages first-in first-out, ignore tags
        and need equal sizes on both ends: send header and payload as two exact-size messages
        in one batch (which also keeps two-way exchanges from deadlocking)."""
        pend, ops = Pending(), []
        for i, rv in enumerate(rnd.recvs):
            if peers is not None and rv.peer not in peers:
                continue
            dev = buffers[rv.span.buf].device
            hdr = torch.empty(HEADER_WORDS, dtype=torch.int64, device=dev)
            data = torch.empty(rv.span.count, dtype=buffers[rv.span.buf].dtype, device=dev)
            ops.append(dist.P2POp(dist.irecv, hdr, group=self.group, group_peer=rv.peer))
            if data.numel():
                ops.append(dist.P2POp(dist.irecv, data, group=self.group, group_peer=rv.peer))
            pend.packets.append((i, hdr))
            pend.exact[i] = data
        for s in rnd.sends:
            if peers is not None and s.peer not in peers:
                continue
            data = view(buffers, s.span).clone()
            hdr = torch.tensor(header.words(s.span.count), dtype=torch.int64, device=data.device)
            ops.append(dist.P2POp(dist.isend, hdr, group=self.group, group_peer=s.peer))
            if data.numel():
                ops.append(dist.P2POp(dist.isend, data, group=self.group, group_peer=s.peer))
            pend.keep += [hdr, data]
        if ops:
            pend.works = [(w, -1, True) for w in dist.batch_isend_irecv(ops)]
        return pend

    def _finish_exact(
        self, pend: Pending, rnd: Round, buffers: dict[Buf, torch.Tensor], header: Header
    ) -> list[tuple[int, torch.Tensor]]:
        for w, _, _ in pend.works:
            w.wait()
        out = []
        for i, hdr in pend.packets:
            rv = rnd.recvs[i]
            header.check(hdr.tolist(), rv.span.count, me=self.rank, peer=rv.peer)
            out.append((i, pend.exact[i]))
        return out

    def run(
        self, schedule: Schedule, buffers: dict[Buf, torch.Tensor], op: ReduceOp, header: Header
    ) -> None:
        for rnd in schedule.rounds:
            copies(buffers, rnd.pre)
            pend = self.post(rnd, buffers, header)
            for i, data in self.finish(pend, rnd, buffers, header):
                deliver(buffers, rnd, i, data, op)
            copies(buffers, rnd.post)

    def close(self) -> None:
        pass


def check_p2p_available(group: Any = None) -> None:
    if not dist.is_available() or not dist.is_initialized():
        raise CommError(
            "anyware.comm needs an initialised torch.distributed process group; call "
            "torch.distributed.init_process_group(...) first (gloo works on CPU)"
        )
