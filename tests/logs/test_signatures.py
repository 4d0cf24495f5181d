"""Every signature: stable code, a docstring, and the wordings it promises to recognise."""

from __future__ import annotations

import subprocess
import sys

import pytest

from anyware.logs import signatures
from anyware.logs.model import Role, Severity

EXAMPLES = [
    (
        "[Rank 3] Watchdog caught collective operation timeout: WorkNCCL(SeqNum=12, OpType=ALLREDUCE, NumelIn=1, NumelOut=1, Timeout(ms)=600000) ran for 600100 milliseconds before timing out.",
        "LOG001",
        Role.VICTIM,
    ),
    (
        "[Rank 1] Watchdog caught collective operation timeout: WorkHCCL(SeqNum=7, OpType=BROADCAST, Timeout(ms)=1800000)",
        "LOG001",
        Role.VICTIM,
    ),
    (
        "Watchdog caught collective operation timeout: WorkCNCL(SeqNum=9, OpType=ALLGATHER, Timeout(ms)=60000)",
        "LOG001",
        Role.VICTIM,
    ),
    (
        "torch.distributed.DistBackendError: NCCL error in: ProcessGroupNCCL.cpp:1970, unhandled system error",
        "LOG002",
        Role.ORIGIN,
    ),
    (
        "RuntimeError: HCCL error in: ../ProcessGroupHCCL.cpp:1, internal error",
        "LOG002",
        Role.ORIGIN,
    ),
    ("NCCL error: remote process exited or there was a network error", "LOG002", Role.VICTIM),
    (
        "RuntimeError: CUDA out of memory. Tried to allocate 20.00 MiB (GPU 0; 15.78 GiB total capacity)",
        "LOG003",
        Role.ORIGIN,
    ),
    (
        "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB.",
        "LOG003",
        Role.ORIGIN,
    ),
    ("RuntimeError: NPU out of memory. Tried to allocate 1.00 GiB", "LOG003", Role.ORIGIN),
    ("NVRM: Xid (PCI:0000:3b:00): 79, pid=1, GPU has fallen off the bus.", "LOG004", Role.ORIGIN),
    ("RuntimeError: CUDA error: uncorrectable ECC error encountered", "LOG005", Role.ORIGIN),
    ("Fatal Python error: Segmentation fault", "LOG006", Role.ORIGIN),
    ("RuntimeError: CUDA error: an illegal memory access was encountered", "LOG006", Role.ORIGIN),
    ("Rank 5: found NaN in local grad norm in backward pass", "LOG007", Role.ORIGIN),
    (" iteration 100/ 1000 | lm loss: nan | grad norm: 3.2", "LOG007", Role.ORIGIN),
    ("Traceback (most recent call last):", "LOG008", Role.ORIGIN),
    ("torch.distributed.elastic.rendezvous.api.RendezvousTimeoutError", "LOG009", Role.ORIGIN),
    (
        "ERROR failed (exitcode: 1) local_rank: 0 (pid: 4242) of binary: /usr/bin/python",
        "LOG009",
        Role.REPORT,
    ),
    (
        "NET/IB : Got completion from peer 10.0.0.7<5353> with error 12, opcode 0",
        "LOG010",
        Role.ORIGIN,
    ),
    ("ConnectionResetError: [Errno 104] Connection reset by peer", "LOG010", Role.ORIGIN),
    ("OSError: [Errno 28] No space left on device", "LOG011", Role.ORIGIN),
    ("OSError: [Errno 5] Input/output error", "LOG011", Role.ORIGIN),
    ("Out of memory: Killed process 4242 (python) total-vm:1kB", "LOG012", Role.ORIGIN),
    ("Sending process 4250 closing signal SIGTERM", "LOG012", Role.VICTIM),
]


def _match(line: str) -> tuple[str, Role, Severity] | None:
    for sig in signatures.all_signatures():
        hit = sig.match(line)
        if hit is not None:
            return sig.code, hit[0].role, hit[0].severity
    return None


@pytest.mark.parametrize(("line", "code", "role"), EXAMPLES)
def test_signature_recognises(line: str, code: str, role: Role) -> None:
    assert _match(line) == (code, role, Severity.ERROR)


def test_routine_fp16_overflow_is_a_warning() -> None:
    hit = _match("[deepspeed] OVERFLOW! Rank 0 Skipping step. Attempted loss scale: 65536")
    assert hit is not None and hit[0] == "LOG007" and hit[2] is Severity.WARNING


def test_boring_lines_match_nothing() -> None:
    for line in (
        "2026-01-01 INFO step 12 | loss 2.345 | lr 3e-4 | tokens/s 12345",
        "NCCL INFO comm 0x55 rank 3 nranks 16 cudaDev 3 busId 3b000 - Init COMPLETE",
        "INFO: finance module loaded; information only",
    ):
        assert _match(line) is None, line


def test_registry_codes_docs_and_lookup() -> None:
    sigs = signatures.all_signatures()
    codes = [s.code for s in sigs]
    assert codes == [f"LOG{i:03d}" for i in range(1, len(sigs) + 1)]
    for s in sigs:
        assert s.doc.startswith(s.code), s.code
        assert "Fix" in s.doc or "fix" in s.doc, s.code
    assert signatures.get("log003").code == "LOG003"
    with pytest.raises(KeyError, match="did you mean LOG003"):
        signatures.get("LOG0003")


def test_first_load_from_many_threads_sees_every_signature() -> None:
    # A fresh interpreter, so the registry really is loaded for the first time here.
    code = (
        "import threading\n"
        "from anyware.logs import signatures\n"
        "b = threading.Barrier(8); out = []\n"
        "def go():\n"
        "    b.wait(); out.append(len(signatures.all_signatures()))\n"
        "ts = [threading.Thread(target=go) for _ in range(8)]\n"
        "[t.start() for t in ts]; [t.join() for t in ts]\n"
        "print(sorted(out))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str([13] * 8)
