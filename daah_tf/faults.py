"""Crash points for the crash tests: off unless DAAH_TF_FAULT is set.

    DAAH_TF_FAULT=NAME        kill -9 this process the first time it reaches point NAME
    DAAH_TF_FAULT=NAME:N      ... the N-th time (N >= 1)

The points a run passes (grep for `faults.point`): "train_batch" (after each training batch),
"checkpoint_written" (a checkpoint's files are on disk, the checkpoint list not yet updated),
"before_rename:FILE" (an atomic write of FILE, e.g. metrics.json, is complete in its temporary
file, not yet renamed), "saved_model_staged" (the export is complete in its staging folder, not
yet renamed into saved_model/). Each test kills the run exactly there and checks that the rerun
resumes and trusts nothing half-written; without the variable a point costs one dict lookup.
"""

import os
import signal

ENVIRONMENT_VARIABLE = "DAAH_TF_FAULT"
_reached = {}


def _parse(spec):
    """"NAME" or "NAME:N" -> (NAME, N); a NAME may itself hold colons (before_rename:FILE)."""
    name, _, count = spec.rpartition(":")
    if name and count.isdigit() and int(count) >= 1:
        return name, int(count)
    return spec, 1


def point(name):
    """Kills this process with SIGKILL if DAAH_TF_FAULT names `name` and its count is reached."""
    spec = os.environ.get(ENVIRONMENT_VARIABLE)
    if not spec:
        return
    target, count = _parse(spec)
    if target != name:
        return
    _reached[name] = _reached.get(name, 0) + 1
    if _reached[name] == count:
        os.kill(os.getpid(), signal.SIGKILL)
