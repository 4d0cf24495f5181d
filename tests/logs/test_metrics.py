from __future__ import annotations

import pytest

from anyware.logs.metrics import grouping_scores


def test_perfect_and_relabelled_grouping() -> None:
    assert grouping_scores(["a", "a", "b"], [7, 7, 9]) == (1.0, 1.0)


def test_over_merge_costs_both_groups() -> None:
    ga, fga = grouping_scores(["a", "a", "b", "c"], [1, 1, 1, 2])
    assert ga == pytest.approx(0.25)  # only "c" is exactly right
    assert fga == pytest.approx(2 * 0.5 * (1 / 3) / (0.5 + 1 / 3))


def test_length_mismatch() -> None:
    with pytest.raises(ValueError, match="labels"):
        grouping_scores(["a"], [1, 2])
