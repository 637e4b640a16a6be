"""Tests for daah_tf.hamming (packing codes, bit words, Hamming distances) against NumPy brute
force: one bit at a time, written plainly."""

from __future__ import annotations

import math

import numpy as np
import pytest
from _helpers import brute_hamming
from hypothesis import given, settings
from hypothesis import strategies as st

from daah_tf import hamming, index, metrics

# ---------------------------------------------------------------------------------------------
# Brute force references


def brute_pack(codes):
    """Bit b of a code is bit 7 - b % 8 of byte b // 8; the padding bits are 0."""
    codes = np.asarray(codes)
    out = np.zeros((len(codes), math.ceil(codes.shape[1] / 8)), dtype=np.uint8)
    for i, row in enumerate(codes):
        for b, value in enumerate(row):
            if value > 0:
                out[i, b // 8] |= 1 << (7 - b % 8)
    return out


def random_codes(rng, n, bits):
    return rng.choice(np.array([-1, 1], dtype=np.int8), size=(n, bits))


# ---------------------------------------------------------------------------------------------
# Packing


@pytest.mark.parametrize("bits", [1, 7, 8, 13, 64, 65, 130])
def test_pack_unpack_round_trip(bits):
    codes = np.random.default_rng(bits).choice([-1, 1], size=(9, bits)).astype(np.int8)
    packed = hamming.pack_codes(codes)
    assert packed.dtype == np.uint8 and packed.shape == (9, math.ceil(bits / 8))
    np.testing.assert_array_equal(packed, brute_pack(codes))
    np.testing.assert_array_equal(hamming.unpack_codes(packed, bits), codes)


def test_pack_bit_order_and_sign_rule():
    codes = np.array([[1, -1, -1, -1, -1, -1, -1, -1, 1], [0.5, 0, -0.2, 1, 1, 1, 1, 1, -1]])
    # Big bit order: dimension 0 is the top bit of byte 0; padding bits are 0; 0 counts as -1.
    np.testing.assert_array_equal(hamming.pack_codes(codes), [[128, 128], [0b10011111, 0]])


def test_pack_needs_a_bit():
    with pytest.raises(ValueError, match="at least one bit"):
        hamming.pack_codes(np.zeros((3, 0)))


def test_as_packed_codes_errors():
    with pytest.raises(ValueError, match="uint8"):
        hamming.as_packed_codes(np.zeros((2, 1), dtype=np.int8), 8)
    with pytest.raises(ValueError, match="bytes"):
        hamming.as_packed_codes(np.zeros((2, 2), dtype=np.uint8), 8)
    with pytest.raises(ValueError, match="padding"):
        hamming.as_packed_codes(np.array([[0, 1]], dtype=np.uint8), 12)
    with pytest.raises(ValueError, match="2-D"):
        hamming.as_packed_codes(np.zeros(3, dtype=np.uint8), 8)
    with pytest.raises(ValueError, match="bits must be a positive int"):
        hamming.as_packed_codes(np.zeros((2, 1), dtype=np.uint8), True)


def test_as_packed_codes_returns_a_contiguous_array():
    strided = np.zeros((4, 6), dtype=np.uint8)[:, ::2]
    packed = hamming.as_packed_codes(strided, 24)
    assert packed.flags.c_contiguous and packed.shape == (4, 3)


# ---------------------------------------------------------------------------------------------
# Words and distances


@pytest.mark.parametrize("width", [1, 7, 8, 9, 17])
def test_words_hold_the_bytes_in_order_then_zeros(width):
    packed = np.random.default_rng(width).integers(0, 256, (5, width), dtype=np.uint8)
    words = hamming.to_words(packed)
    assert words.dtype == np.uint64 and words.shape == (5, math.ceil(width / 8))
    as_bytes = words.view(np.uint8)
    np.testing.assert_array_equal(as_bytes[:, :width], packed)
    assert not as_bytes[:, width:].any()


@pytest.mark.parametrize("bits", [3, 8, 16, 24, 64, 100, 300])
def test_hamming_matches_unpacked_count(bits):
    rng = np.random.default_rng(bits)
    q, d = random_codes(rng, 5, bits), random_codes(rng, 11, bits)
    dist = hamming.hamming_distance(hamming.pack_codes(q), hamming.pack_codes(d))
    assert dist.shape == (5, 11) and dist.dtype == np.int32
    np.testing.assert_array_equal(dist, brute_hamming(q, d))


@settings(max_examples=40, deadline=None)
@given(st.integers(0, 2**32 - 1), st.integers(1, 7), st.integers(1, 9), st.integers(1, 200))
def test_distance_block_matches_brute_force(seed, n_query, n_db, bits):
    rng = np.random.default_rng(seed)
    q, d = random_codes(rng, n_query, bits), random_codes(rng, n_db, bits)
    words_q = hamming.to_words(hamming.pack_codes(q))
    words_d = hamming.to_words(hamming.pack_codes(d)).T.copy()
    dist = hamming.distance_block(words_q, words_d)
    # The smallest unsigned dtype that holds 64 bits per word.
    assert dist.dtype == hamming.small_uint(64 * words_d.shape[0])
    np.testing.assert_array_equal(dist, brute_hamming(q, d))


def test_hamming_dtype_argument():
    rng = np.random.default_rng(3)
    q = hamming.pack_codes(random_codes(rng, 4, 12))
    d = hamming.pack_codes(random_codes(rng, 6, 12))
    assert hamming.hamming_distance(q, d, dtype=np.uint8).dtype == np.uint8


def test_hamming_chunked_equals_unchunked():
    rng = np.random.default_rng(0)
    q, d = random_codes(rng, 23, 32), random_codes(rng, 40, 32)
    qp, dp = hamming.pack_codes(q), hamming.pack_codes(d)
    full = hamming.hamming_distance(qp, dp)
    for chunk in (1, 5, 23, 100):
        np.testing.assert_array_equal(hamming.hamming_distance(qp, dp, chunk_size=chunk), full)


def test_hamming_width_mismatch():
    with pytest.raises(ValueError, match="code width"):
        hamming.hamming_distance(np.zeros((2, 8), np.uint8), np.zeros((3, 4), np.uint8))
    with pytest.raises(ValueError, match="empty"):
        hamming.hamming_distance(np.zeros((2, 8), np.uint8), np.zeros((0, 8), np.uint8))


@pytest.mark.parametrize("max_value, dtype", [
    (0, np.uint8), (255, np.uint8), (256, np.uint16), (65535, np.uint16), (65536, np.uint32),
    (2**32, np.uint64),
])
def test_small_uint(max_value, dtype):
    assert hamming.small_uint(max_value) == np.dtype(dtype)


def test_chunk_rows():
    assert hamming.chunk_rows(10, 3) == 3
    assert hamming.chunk_rows(hamming.CHUNK_PAIRS * 4, None) == 1
    assert hamming.chunk_rows(0, None) == hamming.CHUNK_PAIRS
    for bad in (0, -1, 2.0, True):
        with pytest.raises(ValueError, match="chunk_size"):
            hamming.chunk_rows(10, bad)


def test_older_names_stay_importable():
    for name in ("pack_codes", "unpack_codes", "as_packed_codes", "hamming_distance"):
        assert getattr(metrics, name) is getattr(hamming, name)
    assert index.as_packed_codes is hamming.as_packed_codes
