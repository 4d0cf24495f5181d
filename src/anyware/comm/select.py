"""Choosing an algorithm: an explicit ``algo=``, then ``ANYWARE_COMM_ALGO``, then the α-β cost
model — NCCL's rule (time = latency + bytes/bandwidth per algorithm, take the cheapest) with
α and β measured on this job's own transport by a short ping-pong, or loaded from a file.

Override syntax (HCCL's ``HCCL_ALGO`` idea, with size conditions)::

    ANYWARE_COMM_ALGO="allreduce:tree@<=1M,ring@>1M;alltoall:bruck@<64K"

``op:algo[@cond],...`` separated by ``;``; a condition is ``<``, ``<=``, ``>``, ``>=`` and a
byte size with an optional K/M/G (powers of 1024). The first rule whose condition holds wins;
when none does, the cost model decides.
"""

from __future__ import annotations

import json
import operator
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

from anyware.comm.algorithms import (
    REGISTRY,
    Algorithm,
    Args,
    Collective,
    Links,
    get,
    parse_collective,
)

_SIZE = re.compile(r"^\s*(<=|>=|<|>)\s*(\d+(?:\.\d+)?)\s*([kmgKMG]?)(?:i?[bB])?\s*$")
_OPS: dict[str, Callable[[float, float], bool]] = {
    "<": operator.lt,
    "<=": operator.le,
    ">": operator.gt,
    ">=": operator.ge,
}


def parse_size(text: str) -> int:
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmgKMG]?)(?:i?[bB])?\s*", text)
    if not m:
        raise ValueError(f"cannot read size {text!r}; write e.g. 4096, 64K, 16M or 1G")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[m.group(2).lower()]
    return int(float(m.group(1)) * scale)


@dataclass(frozen=True, slots=True, kw_only=True)
class Rule:
    algo: str
    cmp: str = ""
    limit: int = 0

    def matches(self, nbytes: int) -> bool:
        return not self.cmp or _OPS[self.cmp](nbytes, self.limit)


def parse_overrides(text: str | None) -> dict[Collective, list[Rule]]:
    """Parse ``ANYWARE_COMM_ALGO``; errors name the bad piece and show the syntax."""
    out: dict[Collective, list[Rule]] = {}
    if not text:
        return out
    for part in filter(None, (p.strip() for p in text.split(";"))):
        if ":" not in part:
            raise ValueError(
                f"ANYWARE_COMM_ALGO: {part!r} lacks 'op:'; write e.g. 'allreduce:tree@<=1M,ring@>1M'"
            )
        op_name, _, rules = part.partition(":")
        coll = parse_collective(op_name)
        for item in filter(None, (r.strip() for r in rules.split(","))):
            name, _, cond = item.partition("@")
            algo = get(coll, name).name  # unknown names fail here, with a suggestion
            if not cond:
                out.setdefault(coll, []).append(Rule(algo=algo))
                continue
            m = _SIZE.match(cond)
            if not m:
                raise ValueError(
                    f"ANYWARE_COMM_ALGO: cannot read condition {cond!r} in {item!r}; "
                    "write e.g. '@<=1M' or '@>64K'"
                )
            limit = parse_size(m.group(2) + m.group(3))
            out.setdefault(coll, []).append(Rule(algo=algo, cmp=m.group(1), limit=limit))
    return out


@dataclass(frozen=True, slots=True, kw_only=True)
class CostModel:
    """α (s) and β (s/byte) per link class, plus where they came from."""

    links: Links
    source: str = "default"
    """"default", "ping-pong" or the file it was loaded from."""
    extra: dict[str, float] = field(default_factory=dict)

    def predict(self, algo: Algorithm, world: int, nbytes: float) -> float:
        return algo.cost(world, nbytes, self.links)

    def choose(self, coll: Collective, args: Args, nbytes: int) -> Algorithm:
        best: tuple[float, str] | None = None
        for name, algo in REGISTRY[coll].items():
            if algo.unsupported(args) is not None:
                continue
            t = self.predict(algo, args.world, nbytes)
            if best is None or (t, name) < best:
                best = (t, name)
        assert best is not None, f"no algorithm for {coll}"
        return REGISTRY[coll][best[1]]

    def to_json(self) -> dict[str, object]:
        return {"links": asdict(self.links), "source": self.source}

    def save(self, path: str | Path) -> None:
        from anyware._io import atomic_write_json

        atomic_write_json(path, self.to_json())

    @staticmethod
    def load(path: str | Path) -> CostModel:
        p = Path(path)
        try:
            raw = json.loads(p.read_text())
            links = Links(**raw["links"])
        except (OSError, ValueError, KeyError, TypeError) as e:
            raise ValueError(
                f"cannot read the comm cost model {p}: {e}; write it with "
                "`anyware comm bench --cost-out FILE` or unset ANYWARE_COMM_COST_FILE"
            ) from None
        return CostModel(links=links, source=str(p))


#: Measured on this machine (2 cores): shared-memory one-way 1–2.5 µs plus Python round
#: overhead (~8 µs a round), ~4 GB/s per copy; gloo send/recv ~82 µs one way, ~2.3 GB/s.
DEFAULT_SHM = Links(alpha_intra=10e-6, beta_intra=1 / 4e9, gamma=1 / 5e9)
DEFAULT_P2P = Links(alpha_intra=82e-6, beta_intra=1 / 2.3e9, gamma=1 / 5e9)


def choose(
    coll: Collective,
    args: Args,
    nbytes: int,
    model: CostModel,
    overrides: dict[Collective, list[Rule]],
) -> Algorithm:
    for rule in overrides.get(coll, ()):
        if rule.matches(nbytes):
            algo = REGISTRY[coll][rule.algo]
            if algo.unsupported(args) is None:
                return algo
    return model.choose(coll, args, nbytes)
