"""Atomic file writes: a reader (or the next run) sees the old file or the new one, never half.

Every artefact a run or a tool leaves (metrics, configs, splits, indexes, reports, pictures) is
written to a temporary file in the target's folder, flushed to disk, and renamed over the target.
"""

import contextlib
import json
import os
import tempfile

from daah_tf import faults


def _umask():
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_writer(path):
    """Yields a binary stream; on a clean exit its bytes replace `path` in one rename.

    On an error the temporary file is removed and `path` is left as it was; after a crash a
    `.tmp-*.part` file may remain beside it, which nothing reads (`remove_stale_temporaries`).
    The file gets the permissions a plain open() would give (mkstemp alone would make it
    private).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-", suffix=".part")
    try:
        os.chmod(temporary, 0o666 & ~_umask())
        with os.fdopen(handle, "wb") as stream:
            yield stream
            stream.flush()
            os.fsync(stream.fileno())
        faults.point(f"before_rename:{os.path.basename(path)}")
        os.replace(temporary, path)
    except BaseException:
        if os.path.exists(temporary):
            os.remove(temporary)
        raise


def atomic_write_bytes(path, data):
    with atomic_writer(path) as stream:
        stream.write(data)


def atomic_write_text(path, text):
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path, value):
    atomic_write_text(path, json.dumps(value, indent=2, sort_keys=True) + "\n")


def remove_stale_temporaries(directory):
    """Removes the `.tmp-*.part` files a crashed atomic write left in `directory` (not below).

    Returns the removed names. Call it only where no other process is writing.
    """
    removed = []
    for name in sorted(os.listdir(directory)):
        if name.startswith(".tmp-") and name.endswith(".part"):
            os.remove(os.path.join(directory, name))
            removed.append(name)
    return removed
