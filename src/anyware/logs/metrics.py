"""Grouping accuracy (GA) and F1 grouping accuracy (FGA) of a parse against ground truth.

GA: a line is correct when the set of lines in its parsed group equals the set of lines of its
ground-truth template; GA is the fraction of correct lines. FGA: precision = correct groups /
parsed groups, recall = correct groups / true groups, FGA = their harmonic mean. (Definitions as
in the Loghub benchmarks.)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Sequence


def grouping_scores(truth: Sequence[Hashable], parsed: Sequence[Hashable]) -> tuple[float, float]:
    """(GA, FGA) for two equally long label sequences."""
    if len(truth) != len(parsed):
        raise ValueError(f"truth has {len(truth)} labels but parsed has {len(parsed)}")
    if not truth:
        raise ValueError("no labels to score")
    t_groups: dict[Hashable, set[int]] = defaultdict(set)
    p_groups: dict[Hashable, set[int]] = defaultdict(set)
    for i, (t, p) in enumerate(zip(truth, parsed, strict=True)):
        t_groups[t].add(i)
        p_groups[p].add(i)
    true_sets = {frozenset(s) for s in t_groups.values()}
    correct_groups = [s for s in p_groups.values() if frozenset(s) in true_sets]
    ga = sum(len(s) for s in correct_groups) / len(truth)
    precision = len(correct_groups) / len(p_groups)
    recall = len(correct_groups) / len(t_groups)
    fga = 0.0 if precision + recall == 0 else 2 * precision * recall / (precision + recall)
    return ga, fga
