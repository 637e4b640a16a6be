"""Helpers shared by test modules (pytest puts this folder on sys.path)."""

import contextlib
import pathlib

import keras
import numpy as np
import pytest


@contextlib.contextmanager
def policy(name):
    """Sets the global dtype policy for a `with` block and always restores the previous one."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)


def brute_hamming(query_codes, db_codes):
    """(Q, q) and (N, q) codes (sign = bit) -> (Q, N) int64 Hamming distances, pair by pair."""
    q = np.asarray(query_codes) > 0
    d = np.asarray(db_codes) > 0
    out = np.zeros((len(q), len(d)), dtype=np.int64)
    for i in range(len(q)):
        for j in range(len(d)):
            out[i, j] = int(np.sum(q[i] != d[j]))
    return out


SHARED_DATA = pathlib.Path(__file__).resolve().parents[1].parent / "shared" / "data"


def require(folder):
    """str(folder) if it exists, else skip the test: only developers and CI have the shared data."""
    if not folder.is_dir():
        pytest.skip(f"shared data not found at {folder} (only developers and CI have it)")
    return str(folder)
