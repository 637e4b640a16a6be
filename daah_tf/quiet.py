"""Keeps TensorFlow's C++ start-up logs off the commands' output.

TensorFlow writes from C++, straight to stderr, lines such as the oneDNN notice, the
cpu_feature_guard's list of CPU instructions and absl's "All log messages before
absl::InitializeLog() is called are written to STDERR". The commands (`python -m daah_tf.train`,
...) import this module before anything imports TensorFlow, which then shows only its errors.

`DAAH_VERBOSE=1` in the environment brings every log back (TensorFlow's own defaults), and a
TF_CPP_MIN_LOG_LEVEL that is already set is always kept. Importing this module is all it takes;
it changes logging only, never what TensorFlow computes (oneDNN stays on).
"""

import os

VERBOSE_VARIABLE = "DAAH_VERBOSE"
# TensorFlow's C++ log threshold: 0 all, 1 no INFO, 2 no WARNING, 3 no ERROR either.
QUIET_LEVEL = "2"


def verbose():
    """True when the environment asks for TensorFlow's logs (DAAH_VERBOSE=1, true, yes)."""
    return os.environ.get(VERBOSE_VARIABLE, "").strip().lower() not in ("", "0", "false", "no")


def silence_tensorflow():
    """Sets TF_CPP_MIN_LOG_LEVEL (unless already set, or DAAH_VERBOSE): before TensorFlow loads,
    since it reads the variable once, at import."""
    if not verbose():
        os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", QUIET_LEVEL)


silence_tensorflow()
