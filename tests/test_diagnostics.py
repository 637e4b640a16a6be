"""The collapse measures written to metrics.json (bit balance, distinct codes) against brute
force, and on hand-made collapsed and balanced codes."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from daah_tf.evaluation.diagnostics import bit_balance, collapse_stats, distinct_codes


def brute_bit_balance(codes):
    """Per bit: count the +1s and -1s one item at a time; |plus - minus| / n; mean over bits."""
    n, q = len(codes), len(codes[0])
    total = 0.0
    for bit in range(q):
        plus = sum(1 for row in range(n) if codes[row][bit] > 0)
        total += abs(plus - (n - plus)) / n
    return total / q


def brute_distinct(codes):
    seen = []
    for row in codes:
        key = tuple(1 if value > 0 else -1 for value in row)
        if key not in seen:
            seen.append(key)
    return len(seen)


CODES = st.integers(1, 40).flatmap(lambda n: st.integers(1, 20).flatmap(
    lambda q: st.lists(st.lists(st.sampled_from([-1, 1]), min_size=q, max_size=q),
                       min_size=n, max_size=n)))


@settings(max_examples=200, deadline=None)
@given(codes=CODES)
def test_against_brute_force(codes):
    array = np.asarray(codes, np.int8)
    assert np.isclose(bit_balance(array), brute_bit_balance(codes))
    assert distinct_codes(array) == brute_distinct(codes)
    # float codes before sign (> 0 is +1) give the same numbers
    real = array * np.random.default_rng(0).uniform(0.1, 2.0, array.shape)
    assert np.isclose(bit_balance(real), bit_balance(array))
    assert distinct_codes(real) == distinct_codes(array)


def test_collapsed_and_balanced_codes():
    constant = np.tile(np.asarray([1, -1, 1, 1, -1, -1, 1, -1, 1], np.int8), (50, 1))
    assert bit_balance(constant) == 1.0 and distinct_codes(constant) == 1
    # every code of 4 bits once: each bit is +1 for exactly half the items
    every = np.asarray([[1 if (i >> b) & 1 else -1 for b in range(4)] for i in range(16)])
    assert bit_balance(every) == 0.0 and distinct_codes(every) == 16
    # 9 bits (more than a byte when packed) differing only in the last bit
    last = np.tile(constant[:1], (4, 1))
    last[::2, -1] = -last[::2, -1]
    assert distinct_codes(last) == 2
    assert np.isclose(bit_balance(last), 8 / 9)


def test_collapse_stats_per_modality():
    image = np.ones((6, 8), np.int8)
    text = np.where(np.arange(48).reshape(6, 8) % 3 == 0, 1, -1).astype(np.int8)
    labels = np.eye(6, 5, dtype=np.float32)
    stats = collapse_stats({"image": image, "text": text}, labels)
    assert stats == {"num_labels": 5, "bit_balance_image": 1.0,
                     "distinct_codes_image": 1, "bit_balance_text": bit_balance(text),
                     "distinct_codes_text": distinct_codes(text)}
    assert stats["distinct_codes_text"] == brute_distinct(text.tolist())
