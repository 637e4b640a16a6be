"""TF Serving's model layout, shared by the writer (export.py) and every reader.

    DIR/saved_model/<version>/      version = 1, 2, ...; the highest complete one is served
    DIR/saved_model/.partial-<n>/   an export being written (or left by a crash): never read

No TensorFlow import here, so commands can resolve the path before loading TensorFlow.
"""

import os

SAVED_MODEL_DIR = "saved_model"


def versions(base):
    """The complete versions under `base` (a folder holding saved_model.pb), oldest first."""
    if not os.path.isdir(base):
        return []
    return sorted(int(name) for name in os.listdir(base) if name.isdigit()
                  and os.path.exists(os.path.join(base, name, "saved_model.pb")))


def latest_saved_model(model_dir):
    """The SavedModel folder to load for a run: DIR/saved_model/<newest complete version>, or
    DIR/saved_model itself for a run exported before versions (saved_model.pb directly in it).

    Raises FileNotFoundError naming the folder when the run has no export yet.
    """
    base = os.path.join(model_dir, SAVED_MODEL_DIR)
    found = versions(base)
    if found:
        return os.path.join(base, str(found[-1]))
    if os.path.exists(os.path.join(base, "saved_model.pb")):
        return base
    raise FileNotFoundError(f"no SavedModel under {base}: the run has not finished "
                            "(python -m daah_tf.train exports it at the end)")
