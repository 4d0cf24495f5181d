"""Loghub header formats: ``<Date> <Time> <Level> <Component>: <Content>`` to a regex.

The notation is the one the Loghub benchmarks publish: ``<Field>`` is a header field, everything
between is literal regex text (so ``\\[`` is a bracket) and a run of spaces matches any
whitespace. ``<Content>`` is the free text that template mining works on. ``auto`` tries the
published formats and a few training-log ones on the first lines and keeps the best.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

#: The published Loghub-2k formats, then common training-log layouts.
KNOWN_FORMATS: dict[str, str] = {
    "HDFS": "<Date> <Time> <Pid> <Level> <Component>: <Content>",
    "Hadoop": r"<Date> <Time> <Level> \[<Process>\] <Component>: <Content>",
    "Spark": "<Date> <Time> <Level> <Component>: <Content>",
    "Zookeeper": r"<Date> <Time> - <Level>  \[<Node>:<Component>@<Id>\] - <Content>",
    "Windows": "<Date> <Time>, <Level>                  <Component>    <Content>",
    "Android": "<Date> <Time>  <Pid>  <Tid> <Level> <Component>: <Content>",
    "HealthApp": r"<Time>\|<Component>\|<Pid>\|<Content>",
    "Apache": r"\[<Time>\] \[<Level>\] <Content>",
    "OpenSSH": r"<Date> <Day> <Time> <Component> sshd\[<Pid>\]: <Content>",
    "OpenStack": r"<Logrecord> <Date> <Time> <Pid> <Level> <Component> \[<ADDR>\] <Content>",
    "python-logging": r"<Date> <Time> <Level> \[<Component>\] <Content>",
    "level-first": "<Date> <Time> <Level> <Content>",
}
#: The masking regexes the published Loghub benchmarks use per system (replaced by ``<*>``
#: before mining), from the data README beside the samples.
LOGHUB_MASKS: dict[str, tuple[str, ...]] = {
    "HDFS": (r"blk_-?\d+", r"(\d+\.){3}\d+(:\d+)?"),
    "Hadoop": (r"(\d+\.){3}\d+",),
    "Spark": (),
    "Zookeeper": (r"(/|)(\d+\.){3}\d+(:\d+)?",),
    "Windows": (r"0x.*?\s",),
    "Android": (
        r"(/[\w-]+)+",
        r"([\w-]+\.){2,}[\w-]+",
        r"\b(\-?\+?\d+)\b|\b0[Xx][a-fA-F\d]+\b|\b[a-fA-F\d]{4,}\b",
    ),
    "HealthApp": (),
    "Apache": (r"(\d+\.){3}\d+",),
    "OpenSSH": (r"(\d+\.){3}\d+", r"([\w-]+\.){2,}[\w-]+"),
    "OpenStack": (r"((\d+\.){3}\d+,?)+", r"/.+?\s", r"\d+"),
}
#: Fraction of the sampled lines a format must match to be accepted.
MIN_MATCH = 0.5


class FormatError(ValueError):
    """A log format that is malformed or does not fit the file; the message quotes a line."""


def headers(fmt: str) -> list[str]:
    return re.findall(r"<([^<>]+)>", fmt)


def to_regex(fmt: str) -> str:
    """The anchored regex (named groups per header) for a Loghub format string."""
    names = headers(fmt)
    if "Content" not in names:
        raise FormatError(
            f"log format {fmt!r} has no <Content> field; add one, e.g. "
            "'<Date> <Time> <Level> <Content>'"
        )
    if len(set(names)) != len(names):
        raise FormatError(f"log format {fmt!r} repeats a field name")
    for n in names:
        if not re.fullmatch(r"[A-Za-z_]\w*", n):
            raise FormatError(f"log format field <{n}> must be a word (letters, digits, _)")
    out = []
    parts = re.split(r"(<[^<>]+>)", fmt)
    for i, part in enumerate(parts):
        if i % 2 == 0:
            out.append(re.sub(" +", r"\\s+", part))
            continue
        name = part[1:-1]
        before = parts[i - 1]
        if name == "Content":
            out.append(f"(?P<{name}>.*)")
        elif name == "Level":
            out.append(f"(?P<{name}>[A-Za-z]+)")
        elif name == "Time":  # a time has a digit: keeps 'auto' from taking words for a header
            out.append(
                f"(?P<{name}>.*?\\d.*?)"
                if before.endswith(("[", "("))
                else f"(?P<{name}>\\S*?\\d\\S*?)"
            )
        elif before.endswith(("[", "(")):
            out.append(f"(?P<{name}>.*?)")  # bracketed: may hold spaces ([IPC Server handler 5])
        else:
            # Any other field is one word; letting it span spaces (as a bare .*? would) makes
            # almost any format "match" and hides a wrong --log-format.
            out.append(f"(?P<{name}>\\S+?)")
    rx = "^" + "".join(out) + "$"
    try:
        re.compile(rx)
    except re.error as e:
        raise FormatError(f"log format {fmt!r} is not valid: {e}") from None
    return rx


def match_rate(fmt: str, lines: Sequence[str]) -> tuple[float, str | None]:
    """Fraction of non-empty ``lines`` the format matches, and the first line it does not."""
    rx = re.compile(to_regex(fmt))
    sample = [ln for ln in lines if ln.strip()]
    if not sample:
        return 1.0, None
    first_bad = None
    good = 0
    for ln in sample:
        if rx.match(ln.strip()):
            good += 1
        elif first_bad is None:
            first_bad = ln
    return good / len(sample), first_bad


def resolve(fmt: str, lines: Sequence[str]) -> str:
    """The format to use: ``fmt`` checked against ``lines``, or the best known one for 'auto'."""
    if fmt.strip().lower() != "auto":
        rate, bad = match_rate(fmt, lines)
        if rate < MIN_MATCH:
            shown = (bad or "")[:200]
            raise FormatError(
                f"--log-format {fmt!r} matches only {rate:.0%} of the first lines; "
                f"the first line that does not match is: {shown!r}"
            )
        return fmt
    best, best_key = "<Content>", (MIN_MATCH, 0, 0)
    for candidate in KNOWN_FORMATS.values():
        rate, _ = match_rate(candidate, lines)
        # Among formats that fit, the most specific: most literal characters, then fields.
        literal = len(re.sub(r"<[^<>]+>|\s", "", candidate))
        key = (rate, literal, len(headers(candidate)))
        if rate >= 0.9 and key > best_key:
            best, best_key = candidate, key
    return best
