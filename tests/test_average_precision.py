"""Tests for daah_tf.average_precision's internals: harmonic numbers and the rank table cache.

Its AP formulas are tested through the public metrics in tests/test_metrics.py.
"""

from __future__ import annotations

import math

import numpy as np

from daah_tf import average_precision


def test_harmonic_diff_accuracy():
    rng = np.random.default_rng(0)
    lo = np.concatenate([[0, 0, 1, 63, 64, 65, 200_000], rng.integers(0, 300_000, 20)])
    hi = lo + np.concatenate([[0, 70, 5, 1, 1, 100, 3], rng.integers(0, 1000, 20)])
    got = average_precision._harmonic_diff(lo, hi)
    expected = [
        math.fsum(1.0 / j for j in range(a + 1, b + 1)) for a, b in zip(lo, hi, strict=True)
    ]
    np.testing.assert_allclose(got, expected, rtol=1e-13, atol=0)


def test_rank_table_cache_follows_database_size():
    first = average_precision.tie_index(np.array([[0, 1, 1]]), np.array([[0, 1, 1]], bool), 3)
    second = average_precision.tie_index(np.array([[0, 1]]), np.array([[0, 1]], bool), 2)
    np.testing.assert_allclose(first, [(1 / 2 + 2 / 3) / 2])
    np.testing.assert_allclose(second, [1 / 2])
    assert list(average_precision._RANK_TABLES) == [2]  # one size kept: memory stays bounded
