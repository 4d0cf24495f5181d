"""Same-host shared-memory transport: one-sided puts into the receiver's mailbox, signalled by
counters — the shape of DeepEP's low-latency (IBGDA) path, on plain shared memory.

Each rank owns one segment holding, for every peer that sends to it, a channel of ``NSLOTS``
slots (64-byte header + ``slot_bytes`` payload) and two counters on their own cache lines:

* ``posted``  — written by the sender after it copied a chunk into slot ``seq % NSLOTS``;
* ``consumed`` — written by the receiver after it reduced/copied that chunk out.

A sender may put chunk ``seq`` once ``seq - consumed < NSLOTS``; a receiver takes chunk ``seq``
once ``posted > seq``. Large messages stream through the slots, so segment size is fixed and a
16 MiB allreduce pipelines copy-in, reduce and copy-out. One way costs ~2 µs in Python (gloo:
~82 µs here). Stores are ordered on x86-64 (TSO): data written before the counter is visible
before it; weakly ordered CPUs would need fences, so ``available()`` says no there.

Cleanup that survives a dying rank: segments are created in ``/dev/shm`` and *unlinked as
soon as every rank has mapped them*, so after setup no name exists that a crash could leak;
the memory goes when the last mapping does. A crash during the few-millisecond setup leaves a
file whose name carries the creator's pid; the next setup removes files whose pid is gone.

Failure: each rank's control words hold its pid and an ``aborted`` flag. A waiting rank checks
the peer it waits on: a set flag (the peer raised) or a dead pid ends the wait at once with a
:class:`CommError` naming the rank; silence ends it after ``timeout_s`` with
:class:`CommTimeoutError` naming the rank.
"""

from __future__ import annotations

import contextlib
import mmap
import os
import platform
import re
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from anyware.comm.errors import CommError, CommTimeoutError
from anyware.comm.reduce_ops import ReduceOp, combine
from anyware.comm.schedule import Buf, Round, view
from anyware.comm.transports.base import (
    HEADER_BYTES,
    HEADER_WORDS,
    Header,
    TransportKind,
    copies,
    deliver,
)
from anyware.comm.transports.shm_fast import Plan, Views, eligible, run_plan
from anyware.comm.transports.shm_wait import (
    CTRL_WORDS,
    NSLOTS,
    WANT_MSG,
    WANT_SLOT,
    Segment,
    Waiter,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterable

    from anyware.comm.schedule import Schedule

SHM_DIR = Path("/dev/shm")
PREFIX = "anyware-comm-"
#: 1 MiB slots: a 16 MiB message is 16 chunks (Python overhead ~10 µs each, <2% of the copy
#: time), and a segment for 3 peers stays at 12 MiB.
SLOT_BYTES = 1 << 20
LINE = 64  # bytes; every counter on its own cache line
MAGIC = 0x414E59574152


def available() -> str | None:
    """Why the shared-memory transport cannot run here, or None."""
    if not SHM_DIR.is_dir():
        return f"{SHM_DIR} does not exist"
    if platform.machine().lower() not in {"x86_64", "amd64"}:
        return f"needs x86-64 store ordering, this is {platform.machine()}"
    return None


def sweep_stale() -> int:
    """Remove segments left by processes that died during setup; returns how many."""
    removed = 0
    for f in SHM_DIR.glob(PREFIX + "*"):
        m = re.search(r"-p(\d+)$", f.name)
        if not m:
            continue
        try:
            os.kill(int(m.group(1)), 0)
        except ProcessLookupError:
            f.unlink(missing_ok=True)
            removed += 1
        except PermissionError:
            pass
    return removed


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:  # a killed rank stays a zombie until its launcher reaps it: that is dead too
        stat = Path(f"/proc/{pid}/stat").read_text()
        return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except (OSError, IndexError):
        return True


class _Layout:
    """Byte offsets inside one rank's segment; identical arithmetic on every rank."""

    def __init__(self, world: int, slot_bytes: int) -> None:
        self.world, self.slot_bytes = world, slot_bytes
        self.slot_stride = HEADER_BYTES + slot_bytes
        self.chan_stride = 2 * LINE + NSLOTS * self.slot_stride
        self.size = LINE + world * self.chan_stride

    def posted(self, src: int) -> int:
        return LINE + src * self.chan_stride

    def consumed(self, src: int) -> int:
        return LINE + src * self.chan_stride + LINE

    def slot(self, src: int, k: int) -> int:
        return LINE + src * self.chan_stride + 2 * LINE + k * self.slot_stride


class ShmTransport:
    kind = TransportKind.SHM

    def __init__(
        self,
        *,
        rank: int,
        world: int,
        exchange: Callable[[Any], list[Any]],
        barrier: Callable[[], None],
        peers: Iterable[int] | None = None,
        timeout_s: float = 300.0,
        slot_bytes: int = SLOT_BYTES,
    ) -> None:
        """``exchange(obj)`` all-gathers a small object across the world (every rank calls
        it); ``peers`` are the ranks on this host (default: all)."""
        reason = available()
        if reason:
            raise CommError(f"the shared-memory transport is not available: {reason}")
        self.rank, self.world, self.timeout_s = rank, world, timeout_s
        self.peers = set(range(world) if peers is None else peers) - {rank}
        self.layout = _Layout(world, slot_bytes)
        self._send_seq = [0] * world
        self._recv_seq = [0] * world
        self._segs: dict[int, Segment] = {}
        self._closed = False
        sweep_stale()
        token = exchange(uuid.uuid4().hex[:12])[0]
        name = f"{PREFIX}{token}-r{rank}-p{os.getpid()}"
        path = SHM_DIR / name
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
        try:
            os.ftruncate(fd, self.layout.size)
            mm = mmap.mmap(fd, self.layout.size)
        finally:
            os.close(fd)
        try:
            self._segs[rank] = seg = Segment(mm)
            seg.words[:CTRL_WORDS] = [MAGIC, os.getpid(), 0, 0, 0, 0, 0, 0]
            names = exchange(name)
            for p in self.peers:
                pfd = os.open(SHM_DIR / names[p], os.O_RDWR)
                try:
                    self._segs[p] = Segment(mmap.mmap(pfd, self.layout.size))
                finally:
                    os.close(pfd)
            barrier()  # everyone mapped everything: names can go
        finally:
            path.unlink(missing_ok=True)
        self._pids = {p: int(self._segs[p].words[1]) for p in self.peers}
        self.me = self._segs[rank]
        lay = self.layout
        # The fast path's precomputed addresses: per peer, where our messages to it go (its
        # segment) and where its messages to us arrive (ours).
        self.tx = {
            p: (
                self._segs[p],
                lay.posted(rank) // 8,
                lay.consumed(rank) // 8,
                tuple(lay.slot(rank, k) for k in range(NSLOTS)),
            )
            for p in self.peers
        }
        self.rx = {
            p: (
                lay.posted(p) // 8,
                lay.consumed(p) // 8,
                tuple(lay.slot(p, k) for k in range(NSLOTS)),
                self._segs[p],
            )
            for p in self.peers
        }
        self.views = Views()
        self._plans: dict[tuple[Any, ...], tuple[Schedule, Plan | None]] = {}

    # -- signalling ------------------------------------------------------------------------
    def _abort(self) -> None:
        with contextlib.suppress(Exception):
            self._segs[self.rank].words[2] = 1

    def _check_peer(self, peer: int, header: Header, started: float, what: str) -> None:
        if self._segs[peer].words[2]:
            raise CommError(
                f"rank {peer} aborted {header.collective} #{header.seq} (see its error); "
                f"rank {self.rank} stops too"
            )
        if not _pid_alive(self._pids[peer]):
            raise CommError(
                f"rank {peer} (pid {self._pids[peer]}) died during {header.collective} "
                f"#{header.seq}; rank {self.rank} was waiting for {what}"
            )
        if time.perf_counter() - started > self.timeout_s:
            raise CommTimeoutError(
                f"rank {self.rank} waited {self.timeout_s:g} s for {what} from rank {peer} in "
                f"{header.collective} #{header.seq}; rank {peer} never arrived (hung, or skipped "
                "this collective)",
                rank=peer,
            )

    # -- one round -------------------------------------------------------------------------
    def progress(
        self,
        rnd: Round,
        buffers: dict[Buf, torch.Tensor],
        op: ReduceOp,
        header: Header,
        staged: dict[int, torch.Tensor],
    ) -> None:
        """Move the round's messages to and from on-host peers. Receives of a staged round
        land in ``staged[index]``; others are applied straight from the slot."""
        lay = self.layout
        me = self._segs[self.rank]
        sends: list[list[Any]] = []  # [peer, bytes view, nchunks, next, header words]
        for sd in rnd.sends:
            if sd.peer in self.peers:
                data = view(buffers, sd.span).view(torch.uint8)
                n = max(1, -(-data.numel() // lay.slot_bytes))
                sends.append([sd.peer, data, n, 0, header.words(sd.span.count)])
        recvs: list[list[Any]] = []  # [index, peer, dst elements, elems per chunk, nchunks, next]
        for i, rv in enumerate(rnd.recvs):
            if rv.peer in self.peers:
                dst = view(buffers, rv.span)
                if rnd.staged:
                    dst = staged.setdefault(i, torch.empty_like(dst))
                per = lay.slot_bytes // dst.element_size()
                recvs.append([i, rv.peer, dst, per, max(1, -(-dst.numel() // per)), 0])
        waiter: Waiter | None = None
        while sends or recvs:
            moved = False
            busy: set[int] = set()
            for snd in sends:  # sends to one peer go in order
                peer, data, n, k, words = snd
                if peer in busy:
                    continue
                busy.add(peer)
                seg, seq = self._segs[peer], self._send_seq[peer]
                if seq - int(seg.words[lay.consumed(self.rank) // 8]) >= NSLOTS:
                    continue
                at = lay.slot(self.rank, seq % NSLOTS)
                lo = k * lay.slot_bytes
                hi = min(lo + lay.slot_bytes, data.numel())
                seg.words[at // 8 : at // 8 + HEADER_WORDS] = words
                seg.bytes[at + HEADER_BYTES : at + HEADER_BYTES + hi - lo].copy_(data[lo:hi])
                self._send_seq[peer] = seq + 1
                seg.words[lay.posted(self.rank) // 8] = seq + 1
                seg.ring(WANT_MSG)
                snd[3] = k + 1
                moved = True
            sends = [s for s in sends if s[3] < s[2]]
            busy.clear()
            for r in recvs:  # receives from one peer go in order
                i, peer, dst, per, n, k = r
                if peer in busy:
                    continue
                busy.add(peer)
                seq = self._recv_seq[peer]
                if int(me.words[lay.posted(peer) // 8]) <= seq:
                    continue
                at = lay.slot(peer, seq % NSLOTS)
                lo, hi = k * per, min((k + 1) * per, dst.numel())
                if k == 0:
                    got = me.words[at // 8 : at // 8 + HEADER_WORDS].tolist()
                    header.check(got, rnd.recvs[i].span.count, me=self.rank, peer=peer)
                chunk = me.bytes[
                    at + HEADER_BYTES : at + HEADER_BYTES + (hi - lo) * dst.element_size()
                ]
                part = chunk.view(dst.dtype)
                rv = rnd.recvs[i]
                if rnd.staged or not rv.reduce:
                    dst[lo:hi].copy_(part)
                else:
                    combine(op, dst[lo:hi], part)
                self._recv_seq[peer] = seq + 1
                me.words[lay.consumed(peer) // 8] = seq + 1
                self._segs[peer].ring(WANT_SLOT)
                r[5] = k + 1
                moved = True
            recvs = [r for r in recvs if r[5] < r[4]]
            if waiter is None:
                if not moved:
                    waiter = Waiter(self, header)
            elif moved:
                waiter.moved()
            elif recvs:
                waiter.idle(WANT_MSG | (WANT_SLOT if sends else 0), recvs[0][1], "a message")
            elif sends:
                waiter.idle(WANT_SLOT, sends[0][0], "a free slot")

    def plan(
        self, schedule: Schedule, dtype: torch.dtype, op: ReduceOp, header: Header
    ) -> Plan | None:
        """The compiled fast-path plan for this call shape, or None when a message needs
        more than one slot (then the general loop streams it)."""
        key = (id(schedule), dtype, op, header.collective, header.numel, header.algo)
        hit = self._plans.get(key)
        if hit is not None and hit[0] is schedule:
            return hit[1]
        itemsize = torch.empty(0, dtype=dtype).element_size()
        ok = eligible(schedule, self.peers, self.layout.slot_bytes, itemsize)
        plan = Plan(schedule, dtype, op, header) if ok else None
        if len(self._plans) > 1024:
            self._plans.clear()
        self._plans[key] = (schedule, plan)
        return plan

    def run(
        self, schedule: Schedule, buffers: dict[Buf, torch.Tensor], op: ReduceOp, header: Header
    ) -> None:
        try:
            plan = self.plan(schedule, buffers[Buf.IN].dtype, op, header)
            if plan is not None:
                run_plan(self, plan, buffers, header.seq, header)
                return
            for rnd in schedule.rounds:
                copies(buffers, rnd.pre)
                staged: dict[int, torch.Tensor] = {}
                self.progress(rnd, buffers, op, header, staged)
                for i in sorted(staged):
                    deliver(buffers, rnd, i, staged[i], op)
                copies(buffers, rnd.post)
        except BaseException:
            self._abort()
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        segs, self._segs = self._segs, {}
        for seg in segs.values():
            del seg.words, seg.bytes, seg.u8
            with contextlib.suppress(BufferError):
                seg.mm.close()
