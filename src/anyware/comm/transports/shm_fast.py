"""The shared-memory transport's small-message fast path: compiled plans.

A schedule whose every message fits in one slot is compiled once per (schedule, dtype, op,
collective, element count, algorithm) into flat tuples of byte offsets, slot addresses and
header words, and run with numpy on the raw bytes of the tensors and the segments. Nothing on
this path builds a ``Span`` view, a header list or a torch op (for the dtypes numpy has): a
round of one send and one receive is a handful of numpy slice operations, ~10 µs of Python
instead of the ~100 µs the general loop spends (which streams messages of any size through
the slots and stays the path for large ones).

Semantics are the general loop's, exactly: sends to one peer and receives from one peer go in
order, every poll tries the first pending message of every peer, a staged round applies its
receives only after all its sends copied their data out and in the listed order (parking in
scratch space a receive that arrives earlier), and every receive's header is checked before
its data is touched. Results are bit-identical to
the general loop's: the same elementwise operation on the same operands in the same order
(numpy's ufuncs for the dtypes it has, torch's otherwise).
"""

from __future__ import annotations

import ctypes
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from anyware.comm.reduce_ops import ReduceOp, combine
from anyware.comm.schedule import Buf
from anyware.comm.transports.base import HEADER_BYTES, HEADER_WORDS, Header
from anyware.comm.transports.shm_wait import NSLOTS, WANT_MSG, WANT_SLOT, Waiter

if TYPE_CHECKING:
    from anyware.comm.schedule import Recv, Schedule, Send, Span
    from anyware.comm.transports.shm import ShmTransport

_BUFS = (Buf.IN, Buf.OUT, Buf.TMP)
_INDEX = {b: i for i, b in enumerate(_BUFS)}
#: dtypes reduced with numpy; the rest (bf16, fp8, fp16 — numpy's float16 is scalar code,
#: slower than torch's vectorised half) go through torch's ops on views of the same bytes.
_NUMPY: dict[torch.dtype, Any] = {
    torch.float32: np.float32,
    torch.float64: np.float64,
    torch.int64: np.int64,
    torch.int32: np.int32,
    torch.int16: np.int16,
    torch.int8: np.int8,
    torch.uint8: np.uint8,
    torch.bool: np.bool_,
}
_UFUNC: dict[ReduceOp, Any] = {  # on bool numpy's add/multiply are or/and, as torch's combine
    ReduceOp.SUM: np.add,
    ReduceOp.AVG: np.add,
    ReduceOp.PROD: np.multiply,
    ReduceOp.MIN: np.minimum,
    ReduceOp.MAX: np.maximum,
    ReduceOp.BAND: np.bitwise_and,
    ReduceOp.BOR: np.bitwise_or,
    ReduceOp.BXOR: np.bitwise_xor,
}


class Plan:
    """One schedule, compiled for one call shape. ``rounds`` holds per round
    ``(pre, sends, recvs, post, staged)``:

    * copy: ``(src buf, src byte offset, dst buf, dst byte offset, bytes)``;
    * send: ``[peer, buf, byte offset, bytes, header words (int64, word 0 = call number)]``;
    * recv: ``[peer, buf, byte offset, bytes, expected header (list), reduce, element offset,
      count, scratch or None, index]``.
    """

    __slots__ = (
        "dtype",
        "itemsize",
        "np_dtype",
        "op",
        "quiet",
        "rounds",
        "schedule",
        "ufunc",
        "used",
    )

    def __init__(self, schedule: Schedule, dtype: torch.dtype, op: ReduceOp, header: Header):
        self.schedule, self.dtype, self.op = schedule, dtype, op
        self.itemsize = torch.empty(0, dtype=dtype).element_size()
        self.np_dtype = _NUMPY.get(dtype)
        self.ufunc = _UFUNC[op]
        self.quiet = dtype.is_floating_point
        used: set[int] = set()
        size = self.itemsize

        def at(span: Span) -> tuple[int, int, int]:
            used.add(_INDEX[span.buf])
            return _INDEX[span.buf], span.offset * size, span.count * size

        rounds = []
        for rnd in schedule.rounds:
            pre = tuple((*at(c.src)[:2], *at(c.dst)) for c in rnd.pre)
            post = tuple((*at(c.src)[:2], *at(c.dst)) for c in rnd.post)
            sends: list[Any] = []
            for s in rnd.sends:
                b, off, n = at(s.span)
                words = np.array(header.words(s.span.count), dtype=np.int64)
                sends.append((s.peer, b, off, n, words))
            recvs: list[Any] = []
            for i, r in enumerate(rnd.recvs):
                b, off, n = at(r.span)
                scratch = np.empty(n, dtype=np.uint8) if rnd.staged else None
                want = header.words(r.span.count)
                recvs.append(
                    (r.peer, b, off, n, want, r.reduce, r.span.offset, r.span.count, scratch, i)
                )
            rounds.append((pre, tuple(sends), tuple(recvs), post, rnd.staged))
        self.rounds = tuple(rounds)
        self.used = tuple(sorted(used))


def eligible(schedule: Schedule, peers: set[int], slot_bytes: int, itemsize: int) -> bool:
    """Every message of the schedule fits in one slot and goes to a shared-memory peer."""
    for rnd in schedule.rounds:
        ops: list[Send | Recv] = [*rnd.sends, *rnd.recvs]
        for op in ops:
            if op.peer not in peers or op.span.count * itemsize > slot_bytes:
                return False
    return True


class Views:
    """numpy views of tensor memory by (address, bytes): ``Tensor.numpy()`` costs ~3 µs and
    refuses bf16; a view built from the address costs one dict lookup when cached. A cached
    view is only used while a live tensor occupies exactly that memory (the key is read off
    the tensor of this call), so a freed and reused address stays correct."""

    def __init__(self) -> None:
        self._cache: dict[tuple[int, int], np.ndarray] = {}

    def get(self, t: torch.Tensor) -> np.ndarray:
        key = (t.data_ptr(), t.numel() * t.element_size())
        arr = self._cache.get(key)
        if arr is None:
            if len(self._cache) > 256:
                self._cache.clear()
            if key[1] == 0:
                arr = np.empty(0, dtype=np.uint8)
            else:
                raw = (ctypes.c_uint8 * key[1]).from_address(key[0])
                arr = np.ctypeslib.as_array(raw)
            self._cache[key] = arr
        return arr


def run_plan(
    sh: ShmTransport, plan: Plan, buffers: dict[Buf, torch.Tensor], seq: int, header: Header
) -> None:
    """Run a compiled plan; ``seq`` is this call's number (header word 0)."""
    mem: list[Any] = [None, None, None]
    views = sh.views
    for b in plan.used:
        mem[b] = views.get(buffers[_BUFS[b]])
    tx, rx, send_seq, recv_seq = sh.tx, sh.rx, sh._send_seq, sh._recv_seq
    words, u8 = sh.me.words, sh.me.u8
    for pre, sends, recvs, post, staged in plan.rounds:
        for sb, so, db, do, n in pre:
            mem[db][do : do + n] = mem[sb][so : so + n]
        held: list[Any] = []
        waiter: Waiter | None = None
        s_left: Any = sends
        r_left: Any = recvs
        while s_left or r_left:
            moved = False
            if s_left:
                busy = 0  # bit per peer: one message per peer per poll keeps each channel FIFO
                rest: list[Any] = []
                for snd in s_left:
                    peer = snd[0]
                    bit = 1 << peer
                    if busy & bit:
                        rest.append(snd)
                        continue
                    busy |= bit
                    seg, posted_w, consumed_w, slots = tx[peer]
                    k = send_seq[peer]
                    sw = seg.words
                    if k - int(sw[consumed_w]) >= NSLOTS:
                        rest.append(snd)
                        continue
                    at = slots[k % NSLOTS]
                    hdr = snd[4]
                    hdr[0] = seq
                    sw[at >> 3 : (at >> 3) + HEADER_WORDS] = hdr
                    d, off, n = at + HEADER_BYTES, snd[2], snd[3]
                    seg.u8[d : d + n] = mem[snd[1]][off : off + n]
                    send_seq[peer] = k + 1
                    sw[posted_w] = k + 1  # after the data: x86-64 keeps stores in order
                    seg.ring(WANT_MSG)
                    moved = True
                s_left = rest
            if r_left:
                busy = 0
                rest = []
                in_order = True  # every receive listed before this one is applied
                for rcv in r_left:
                    peer = rcv[0]
                    bit = 1 << peer
                    if busy & bit:
                        rest.append(rcv)
                        in_order = False
                        continue
                    busy |= bit
                    posted_w, consumed_w, slots, owner = rx[peer]
                    k = recv_seq[peer]
                    if int(words[posted_w]) <= k:
                        rest.append(rcv)
                        in_order = False
                        continue
                    at = slots[k % NSLOTS]
                    got = words[at >> 3 : (at >> 3) + HEADER_WORDS].tolist()
                    want = rcv[4]
                    want[0] = seq
                    if got != want:
                        header.check(got, rcv[7], me=sh.rank, peer=peer)
                    d = at + HEADER_BYTES
                    src = u8[d : d + rcv[3]]
                    if staged and (s_left or held or not in_order):
                        # A send still has to read a span this may write, or an earlier
                        # receive in the listed order is missing: park it.
                        scratch = rcv[8]
                        scratch[:] = src
                        held.append(rcv)
                    else:  # our sends already copied their data out: apply from the slot
                        _apply(plan, buffers, mem, rcv, src)
                    recv_seq[peer] = k + 1
                    words[consumed_w] = k + 1
                    owner.ring(WANT_SLOT)
                    moved = True
                r_left = rest
            if moved:
                if waiter is not None:
                    waiter.moved()
            elif waiter is None:
                waiter = Waiter(sh, header)
            elif r_left:
                waiter.idle(WANT_MSG | (WANT_SLOT if s_left else 0), r_left[0][0], "a message")
            else:
                waiter.idle(WANT_SLOT, s_left[0][0], "a free slot")
        if held:
            held.sort(key=lambda r: r[9])
            for rcv in held:
                _apply(plan, buffers, mem, rcv, rcv[8])
        for sb, so, db, do, n in post:
            mem[db][do : do + n] = mem[sb][so : so + n]


def _apply(
    plan: Plan, buffers: dict[Buf, torch.Tensor], mem: list[Any], rcv: Any, src: np.ndarray
) -> None:
    """Copy or combine one received message (bytes in ``src``) into its span."""
    b, off, n = rcv[1], rcv[2], rcv[3]
    if not rcv[5]:
        mem[b][off : off + n] = src
    elif plan.np_dtype is not None:
        npdt = plan.np_dtype
        dst = mem[b][off : off + n].view(npdt)
        if plan.quiet:  # inf/nan as torch makes them, without numpy's warnings
            with np.errstate(over="ignore", invalid="ignore"):
                plan.ufunc(dst, src.view(npdt), out=dst)
        else:
            plan.ufunc(dst, src.view(npdt), out=dst)
    else:
        el = rcv[6]
        dst_t = buffers[_BUFS[b]][el : el + rcv[7]]
        combine(plan.op, dst_t, torch.from_numpy(src).view(plan.dtype))
