"""Helpers shared by test modules (pytest puts this folder on sys.path)."""

import contextlib

import keras


@contextlib.contextmanager
def policy(name):
    """Sets the global dtype policy for a `with` block and always restores the previous one."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(name)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)
