"""What one log line says about itself: its time, and (in mixed streams) its rank and host.

Only candidate lines (a few per million) come here, so plain Python regexes are fine. Times are
read as UTC unless the line carries an offset: ranks of one job share a clock convention, and
the analyser only compares times with each other.
"""

from __future__ import annotations

import calendar
import re

# ISO-like (2026-11-29 02:24:59,123 / 2026-11-29T02:24:59.123456+00:00) and torchrun's summary
# form (2026-11-29_02:24:59).
_ISO = re.compile(
    r"(?P<y>\d{4})-(?P<mo>\d{2})-(?P<d>\d{2})[T _](?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})"
    r"(?:[.,](?P<frac>\d{1,9}))?(?P<tz>Z|[+-]\d{2}:?\d{2})?"
)
# syslog / dmesg -T: "Nov 29 02:24:59" (no year: taken from the job's other lines).
_SYSLOG = re.compile(
    r"\b(?P<mon>Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) +(?P<d>\d{1,2}) "
    r"(?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})"
)
# glog (I1129 02:24:59.123456): month and day, no year.
_GLOG = re.compile(
    r"^\s*(?:\[(?:rank|default)\d+\]:)?\[?[IWEF](?P<mo>\d{2})(?P<d>\d{2}) (?P<h>\d{2}):(?P<mi>\d{2}):(?P<s>\d{2})\.(?P<frac>\d+)"
)
_MONTHS = {
    m: i
    for i, m in enumerate(
        ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"), 1
    )
}

# torchrun --tee / log_line_prefix ("[rank3]:", older "[default3]:"), srun --label ("3: ").
_RANK_PREFIX = re.compile(r"^\s*(?:\[(?:rank|default)(?P<a>\d+)\]:|(?P<b>\d{1,6}): )")
# "[Rank 3]" inside PyTorch messages names the rank that printed it.
_RANK_INLINE = re.compile(r"\[Rank (?P<r>\d+)\]")
# NCCL INFO/WARN lines: "host:pid:tid [dev] NCCL ..."
_NCCL_HOST = re.compile(r"^\s*(?:\[\w+\]:)?\s*(?P<host>[\w.-]+):\d+:\d+ \[\d+\] NCCL")


def line_time(text: str, default_year: int = 1970) -> float | None:
    """Unix seconds of the first timestamp in ``text``, or None."""
    m = _ISO.search(text)
    if m is not None:
        frac = m["frac"] or ""
        t = calendar.timegm(
            (
                int(m["y"]),
                int(m["mo"]),
                int(m["d"]),
                int(m["h"]),
                int(m["mi"]),
                int(m["s"]),
                0,
                0,
                0,
            )
        )
        if frac:
            t += int(frac) / 10 ** len(frac)
        tz = m["tz"]
        if tz and tz != "Z":
            sign = 1 if tz[0] == "+" else -1
            digits = tz[1:].replace(":", "")
            t -= sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60)
        return float(t)
    m = _GLOG.match(text)
    if m is not None:
        return calendar.timegm(
            (
                default_year,
                int(m["mo"]),
                int(m["d"]),
                int(m["h"]),
                int(m["mi"]),
                int(m["s"]),
                0,
                0,
                0,
            )
        ) + float("0." + m["frac"])
    m = _SYSLOG.search(text)
    if m is not None:
        return float(
            calendar.timegm(
                (
                    default_year,
                    _MONTHS[m["mon"]],
                    int(m["d"]),
                    int(m["h"]),
                    int(m["mi"]),
                    int(m["s"]),
                    0,
                    0,
                    0,
                )
            )
        )
    return None


def line_rank(text: str) -> int | None:
    """The rank a mixed-stream line belongs to, from its prefix or a ``[Rank N]`` tag."""
    m = _RANK_PREFIX.match(text)
    if m is not None:
        return int(m["a"] or m["b"])
    m = _RANK_INLINE.search(text)
    return int(m["r"]) if m is not None else None


def line_host(text: str) -> str | None:
    m = _NCCL_HOST.match(text)
    return m["host"] if m is not None else None


def strip_prefix(text: str) -> str:
    """The line without a launcher's rank prefix."""
    return _RANK_PREFIX.sub("", text, count=1)


_FILE_RANK = re.compile(r"(?i)(?:rank|proc|task|worker)[-_.]?(?P<r>\d+)")
_FILE_HOST = re.compile(r"(?i)(?P<h>(?:node|host|gpu|nid|compute|worker)[-_]?[a-z]*\d+)")


def name_rank_host(name: str) -> tuple[int | None, str | None]:
    """Rank and host from a file name: ``node03-rank17.log``, ``host_gpu7.rank5.txt``."""
    rank = None
    for m in _FILE_RANK.finditer(name):
        rank = int(m["r"])
    host = None
    for m in _FILE_HOST.finditer(name):
        if not re.match(r"(?i)worker", m["h"]) or rank is None:
            host = m["h"]
            break
    if host is not None and re.fullmatch(r"(?i)(?:rank|proc|task|worker)[-_.]?\d+", host):
        host = None
    return rank, host
