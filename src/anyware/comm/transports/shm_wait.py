"""How a shared-memory rank signals and waits: the ``BELL``/``SLEEPING`` control words, the
futex, and the :class:`Waiter` that spins, yields, then naps. Shared by the general loop
(:mod:`.shm`) and the compiled fast path (:mod:`.shm_fast`).

A sleeper reads ``BELL``, announces what it waits for in ``SLEEPING``, polls once more, then
sleeps on ``BELL`` for at most ``NAP_S``. A peer that changed something the sleeper waits for
bumps ``BELL`` and wakes it. x86-64 may reorder a store before a later load, so both sides can
miss each other (the peer reads ``SLEEPING`` = 0 while the sleeper's last poll misses the
message): the nap's bound, ``NAP_S``, is what that rare race costs.
"""

from __future__ import annotations

import ctypes
import mmap
import os
import time
from typing import TYPE_CHECKING

import numpy as np
import torch

if TYPE_CHECKING:
    from anyware.comm.transports.base import Header
    from anyware.comm.transports.shm import ShmTransport

CTRL_WORDS = 8  # magic, pid, aborted, bell, sleeping, ...
#: Slots per channel: a sender may run this many messages ahead of its receiver.
NSLOTS = 4
BELL, SLEEPING = 3, 4
#: What a sleeper waits for (bits of SLEEPING): a sender rings only a rank waiting for
#: messages, a consumer only one waiting for free slots — one wake-up per message, not two
#: (each wake-up costs ~0.3 ms when the host is oversubscribed).
WANT_MSG, WANT_SLOT = 1, 2
#: Spin this long before yielding: a peer that is running answers within a few µs.
SPIN_S = 20e-6
#: Then keep polling but give the core away between polls (``sched_yield``) up to this long
#: before sleeping on the futex. In this VM a futex wake-up costs the *waker* ~0.3 ms (the
#: sleeper's vCPU must be woken through the hypervisor): 10× the whole small-message
#: collective, so a waiter that sleeps early makes its peer pay that on the next message.
#: Yielding keeps the core available to other processes on an oversubscribed host.
YIELD_S = 5e-3
#: Longest futex sleep; bounds the cost of a lost wake-up and sets how often liveness and the
#: timeout are checked.
NAP_S = 0.002
#: Liveness and timeout are checked this often while waiting.
CHECK_S = 0.05

_SYS_FUTEX = 202  # x86-64
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1
_libc = ctypes.CDLL(None, use_errno=True)


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


def futex_wait(addr: int, expected: int, timeout_s: float) -> None:
    ts = _Timespec(int(timeout_s), int((timeout_s % 1) * 1e9))
    _libc.syscall(
        _SYS_FUTEX,
        ctypes.c_void_p(addr),
        _FUTEX_WAIT,
        ctypes.c_int(expected),
        ctypes.byref(ts),
        None,
        0,
    )


def _futex_wake(addr: int) -> None:
    _libc.syscall(
        _SYS_FUTEX, ctypes.c_void_p(addr), _FUTEX_WAKE, ctypes.c_int(1 << 30), None, None, 0
    )


class Segment:
    """One rank's mapped segment, as int64 words, torch bytes and numpy bytes."""

    def __init__(self, mm: mmap.mmap) -> None:
        self.mm = mm
        self.words = np.frombuffer(mm, dtype=np.int64)  # whole segment as int64 words
        self.bytes = torch.frombuffer(mm, dtype=torch.uint8)
        self.u8 = np.frombuffer(mm, dtype=np.uint8)  # the fast path's byte view
        self.bell_addr = self.words.ctypes.data + BELL * 8

    def ring(self, why: int) -> None:
        """Tell the owner something changed, if it announced a nap waiting for ``why``
        (bumping ``BELL`` makes a futex wait that has not started yet return at once)."""
        w = self.words
        if int(w[SLEEPING]) & why:
            w[BELL] = (int(w[BELL]) + 1) & 0x7FFFFFFF
            _futex_wake(self.bell_addr)


class Waiter:
    """How a rank with nothing to do waits: spin, then poll while yielding the core, then
    announce a nap (``SLEEPING``), poll once more, and sleep on the futex that a peer rings.
    Liveness and the timeout are checked every ``CHECK_S``. Created at the first idle poll,
    so a message that is already there costs no clock reads."""

    __slots__ = ("armed", "bell", "checked", "header", "idle_since", "me", "started", "transport")

    def __init__(self, transport: ShmTransport, header: Header) -> None:
        self.transport, self.header = transport, header
        self.me = transport._segs[transport.rank]
        self.started = self.idle_since = self.checked = time.perf_counter()
        self.armed, self.bell = False, 0

    def moved(self) -> None:
        if self.armed:  # the last poll before the nap found work: not asleep after all
            self.me.words[SLEEPING] = 0
            self.armed = False
        self.idle_since = time.perf_counter()

    def idle(self, want: int, peer: int, what: str) -> None:
        now = time.perf_counter()
        idle = now - self.idle_since
        if idle < SPIN_S:
            return
        if now - self.checked > CHECK_S:
            self.checked = now
            self.transport._check_peer(peer, self.header, self.started, what)
        if idle < YIELD_S:
            os.sched_yield()
            return
        me = self.me
        if not self.armed:  # announce the nap, then poll once more before taking it
            self.bell = int(me.words[BELL])
            me.words[SLEEPING] = want
            self.armed = True
            return
        futex_wait(me.bell_addr, self.bell, NAP_S)
        me.words[SLEEPING] = 0
        self.armed = False
