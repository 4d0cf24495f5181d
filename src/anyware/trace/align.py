"""Pair the records of two runs.

1. **Renames**: an optional mapping ``{"module in A": "module in B"}`` rewrites B's paths
   (longest prefix first).
2. **Module tree**: modules that exist in only one run are paired in order of first execution
   when both runs have the same number of them (a refactor that renamed ``layers`` to
   ``blocks``); when the counts differ the structures differ, and the first such module is
   reported as ``structure differs at <module>``.
3. **Exact key** ``(rank, step/phase/module/op#call_index/slot)``.
4. **In order within a module**: where a module's sequence of ops differs between the runs
   (an extra cast, a missing multiply), call indices drift and exact keys would pair the wrong
   calls; those modules are re-aligned by longest common subsequence of their op sequences.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from typing import Any

_GROUP = ["rank", "step", "phase", "module", "level"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Alignment:
    a_index: Any
    """numpy int64 per B row: the row of A it is paired with, or -1."""
    b_matched: Any
    """numpy bool per A row: whether some B row is paired with it."""
    renamed: dict[str, str]
    """Module paths of B renamed to A's (from the mapping file or the tree pairing)."""
    structure_differs_at: str | None
    """The first module where the two runs' structures disagree, when they do."""
    realigned_groups: int
    loose: Any
    """numpy int64 per B row: id of its realigned module call (op sequences differed), or -1."""


def key_hash() -> Any:
    """A 64-bit hash of the stable key ``step/phase/module/op#call_index/slot``, from its parts.

    Joining on it is an integer join, several times faster than on strings, and the key string
    itself is never decoded (it is unique per row: a third of the Parquet decoding time). Each
    part is hashed with its own seed and the hashes are xor-ed: a collision among a run's keys
    has odds of about n²/2^65.
    """
    import polars as pl

    parts = ("step", "phase", "module", "op", "call_index", "slot")
    h = pl.col(parts[0]).hash(1)
    for i, c in enumerate(parts[1:], start=2):
        h = h ^ pl.col(c).hash(i)
    return h


def _rank_keys(df: Any) -> Any:
    """uint64 per row: the key hash folded with the rank (pairs never cross ranks)."""
    import numpy as np

    h = df.select(key_hash())[:, 0].to_numpy()
    return h ^ (df["rank"].to_numpy().astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15))


def _pair_keys(ka: Any, kb: Any) -> Any:
    """Per B row, the A row with the same key, or -1.

    Two runs of one program record in the same order, so most rows pair with the row at the
    same position: one vectorised comparison settles those, and only the rest (after an extra
    or a missing op, or in another structure) go through a sort-and-search join. Keys are unique
    within a rank, so a row paired by position is the row a join would have found.
    """
    import numpy as np

    a_index = np.full(len(kb), -1, dtype=np.int64)
    n = min(len(ka), len(kb))
    same = np.nonzero(ka[:n] == kb[:n])[0]
    a_index[same] = same
    rest_b = np.nonzero(a_index < 0)[0]
    if len(rest_b) == 0:
        return a_index
    free = np.ones(len(ka), dtype=bool)
    free[same] = False
    rest_a = np.nonzero(free)[0]
    if len(rest_a) == 0:
        return a_index
    order = np.argsort(ka[rest_a], kind="stable")
    sorted_a = ka[rest_a][order]
    q = np.minimum(np.searchsorted(sorted_a, kb[rest_b]), len(sorted_a) - 1)
    hit = sorted_a[q] == kb[rest_b]
    a_index[rest_b[hit]] = rest_a[order[q[hit]]]
    return a_index


def _rename(df: Any, mapping: dict[str, str]) -> Any:
    import polars as pl

    if not mapping:
        return df
    expr = pl.col("module")
    for new, old in sorted(mapping.items(), key=lambda kv: -len(kv[1])):
        hit = (pl.col("module") == old) | pl.col("module").str.starts_with(old + ".")
        expr = pl.when(hit).then(pl.lit(new) + pl.col("module").str.slice(len(old))).otherwise(expr)
    return df.with_columns(expr.alias("module"))


def _first_seen(df: Any) -> list[str]:
    import polars as pl

    first = df["step"].min()
    return (
        df.filter((pl.col("step") == first) & (pl.col("phase") == "forward"))
        .group_by("module")
        .agg(pl.col("seq").min())
        .sort("seq")["module"]
        .to_list()
    )


def align(a: Any, b: Any, mapping: dict[str, str] | None = None) -> tuple[Any, Alignment]:
    """Pair rows; returns B (modules renamed to A's names) and the :class:`Alignment`."""
    import numpy as np
    import polars as pl

    renamed = dict(mapping or {})
    b = _rename(b, renamed)
    a_mods, b_mods = _first_seen(a), _first_seen(b)
    only_a = [m for m in a_mods if m not in set(b_mods)]
    only_b = [m for m in b_mods if m not in set(a_mods)]
    differs: str | None = None
    if only_a or only_b:
        if len(only_a) == len(only_b):
            tree = dict(zip(only_a, only_b, strict=True))
            b = b.with_columns(pl.col("module").replace(dict(zip(only_b, only_a, strict=True))))
            renamed.update(tree)
        else:
            differs = (only_b or only_a)[0]

    if "key" in b.columns:  # renamed modules made it stale: reports rebuild it (row_key)
        b = b.drop("key")
    ai = a.with_row_index("_a")
    bi = b.with_row_index("_b")
    a_index = _pair_keys(_rank_keys(a), _rank_keys(b))

    # Module calls whose op sequences differ (an extra or missing op shifts call indices, so
    # some key finds no partner) are re-aligned in order.
    tok = pl.concat_str([pl.col("op"), pl.lit("/"), pl.col("slot")]).alias("tok")
    a_hit = np.zeros(a.height, dtype=bool)
    a_hit[a_index[a_index >= 0]] = True
    bad_b = bi.filter(pl.Series(a_index < 0)).select(_GROUP)
    bad_a = ai.filter(pl.Series(~a_hit)).select(_GROUP)
    bad = pl.concat([bad_a, bad_b]).unique()
    realigned = 0
    loose = np.full(b.height, -1, dtype=np.int64)
    if bad.height:
        keys = bad
        ga = ai.join(keys, on=_GROUP, how="semi").with_columns(tok).sort("seq")
        gb = bi.join(keys, on=_GROUP, how="semi").with_columns(tok).sort("seq")
        pa_ = ga.partition_by(_GROUP, as_dict=True)
        pb_ = gb.partition_by(_GROUP, as_dict=True)
        for k, grp_b in pb_.items():
            grp_a = pa_.get(k)
            if grp_a is None:
                continue
            realigned += 1
            tb, ta = grp_b["tok"].to_list(), grp_a["tok"].to_list()
            rb, ra = grp_b["_b"].to_numpy(), grp_a["_a"].to_numpy()
            a_index[rb] = -1
            loose[rb] = realigned
            sm = difflib.SequenceMatcher(a=ta, b=tb, autojunk=False)
            for blk in sm.get_matching_blocks():
                a_index[rb[blk.b : blk.b + blk.size]] = ra[blk.a : blk.a + blk.size]
    b_matched = np.zeros(a.height, dtype=bool)
    b_matched[a_index[a_index >= 0]] = True
    return b, Alignment(
        a_index=a_index,
        b_matched=b_matched,
        renamed={k: v for k, v in renamed.items() if k != v},
        structure_differs_at=differs,
        realigned_groups=realigned,
        loose=loose,
    )
