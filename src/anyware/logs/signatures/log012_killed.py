"""LOG012 killed: the process was killed by a signal or by the host's OOM killer.

Detects the kernel's ``Out of memory: Killed process 4242 (python)``, ``oom-kill``/``oom_reaper``,
``Signal 9 (SIGKILL) received by PID 4242``, a bare ``Killed`` from the shell, and
``exited with signal 9``. torchrun's own ``Sending process N closing signal SIGTERM`` is the
launcher tearing down *victims* and is not counted.
Why it matters: a killed rank writes no error of its own; only this line and the others'
timeouts remain. Fix: host memory (dataloader workers, pinned memory) or the scheduler's limits.
"""

from __future__ import annotations

from anyware.logs.model import Category, Role, Rule, Signature

SIGNATURE = Signature(
    code="LOG012",
    name="killed by signal",
    category=Category.KILLED,
    needles=("Killed", "oom-kill", "oom_reaper", "SIGKILL", "signal 9", "closing signal"),
    rules=(
        Rule(pattern=r"closing signal SIG\w+", role=Role.VICTIM, specificity=0),
        Rule(
            pattern=r"Out of memory: Killed process (?P<pid>\d+)|oom-kill|oom_reaper", specificity=2
        ),
        Rule(
            pattern=r"Signal 9 \(SIGKILL\) received by PID (?P<pid>\d+)|signal 9\b", specificity=1
        ),
        Rule(pattern=r"^(?:\S+\s+)?Killed\s*$|\bKilled process\b", specificity=1),
    ),
    doc=__doc__ or "",
)
