"""The user cache folder: converted pretrained weights and automatic feature caches live here.

No TensorFlow here: the data code finds its feature caches without importing the models.
"""

import os

CACHE_ENV = "DAAH_TF_CACHE_DIR"


def cache_dir():
    """The user cache folder: $DAAH_TF_CACHE_DIR, else $XDG_CACHE_HOME/daah_tf, else
    ~/.cache/daah_tf."""
    if os.environ.get(CACHE_ENV):
        return os.environ[CACHE_ENV]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "daah_tf")
