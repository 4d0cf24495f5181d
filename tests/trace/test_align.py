"""Row pairing: the position fast path plus the sort-and-search join give what a plain hash
join on (rank, key) gives."""

from __future__ import annotations

import numpy as np

from anyware.trace.align import _pair_keys


def _reference(ka: np.ndarray, kb: np.ndarray) -> np.ndarray:
    where = {int(k): i for i, k in enumerate(ka)}
    return np.array([where.get(int(k), -1) for k in kb], dtype=np.int64)


def test_pairs_match_a_hash_join() -> None:
    rng = np.random.default_rng(0)
    ka = rng.integers(0, 2**63, size=500, dtype=np.uint64)
    cases = {
        "same": ka.copy(),
        "extra_op": np.insert(ka, 100, np.uint64(7)),
        "missing_op": np.delete(ka, 250),
        "renamed_tail": np.concatenate([ka[:300], ka[300:] ^ np.uint64(1)]),
        "shuffled": rng.permutation(ka),
        "empty": ka[:0],
    }
    for name, kb in cases.items():
        got = _pair_keys(ka, kb)
        assert np.array_equal(got, _reference(ka, kb)), name
    assert np.array_equal(_pair_keys(ka[:0], ka[:5]), np.full(5, -1))
