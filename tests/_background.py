"""The suite's longest independent commands, started in the background.

A command that a test only waits for and then checks (a long training run, the report tool's
four runs) does not depend on anything another test does. tests/conftest.py requests each one
that a collected, not skipped test needs (`@pytest.mark.prefetch(name, *argv)` on the test, or
the session's smoke run), in the order the tests will need them; they run at most MAX_RUNNING
at a time, the next starting when one ends, while the other tests run (one pytest process alone
keeps about one of two cores busy). The test then waits for its command's end (`result`, a
process wait with a hang guard, never a sleep) and checks what it printed and wrote, as it
would have after running the command itself. Nothing here changes what a command does: the same
argv, working directory and environment as a test's own `subprocess.run`.
"""

import dataclasses
import os
import shutil
import subprocess
import sys
import tempfile
import threading

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
MAX_RUNNING = 2  # with the pytest process itself, enough to keep two cores busy
FOLDER = "{folder}"  # in an argv: the command's own new folder


@dataclasses.dataclass
class Result:
    returncode: int
    stdout: str
    stderr: str
    folder: str  # the command's own folder (FOLDER in its argv)


@dataclasses.dataclass
class _Job:
    argv: list
    timeout: float
    folder: str
    process: subprocess.Popen = None


_jobs = {}  # name -> _Job, in the order first requested
_lock = threading.Lock()
_closed = False


def request(name, argv, timeout=600):
    """Registers `python *argv` (FOLDER in an argument: the command's own new folder) under
    `name`, unless it already is; `timeout`: the hang guard of its wait, in seconds."""
    with _lock:
        if name not in _jobs:
            folder = tempfile.mkdtemp(prefix=f"daah-{name}-")
            _jobs[name] = _Job([str(a).replace(FOLDER, folder) for a in argv], timeout, folder)


def pump():
    """Starts requested commands, in request order, while fewer than MAX_RUNNING run. Each
    start gets a thread that waits for the command's end and then pumps again."""
    with _lock:
        running = sum(job.process is not None and job.process.poll() is None
                      for job in _jobs.values())
        for job in _jobs.values():
            if running >= MAX_RUNNING or _closed:
                break
            if job.process is None:
                _start(job)
                running += 1


def _start(job):  # with _lock held
    with open(os.path.join(job.folder, "stdout"), "w") as out, \
            open(os.path.join(job.folder, "stderr"), "w") as err:  # files: no pipe to fill
        job.process = subprocess.Popen([sys.executable, *job.argv], cwd=REPO,
                                       env=dict(os.environ, TF_CPP_MIN_LOG_LEVEL="2"),
                                       stdout=out, stderr=err)
    threading.Thread(target=_pump_when_done, args=(job.process,), daemon=True).start()


def _pump_when_done(process):
    process.wait()
    pump()


def result(name):
    """Waits for the command registered as `name` (starting it now if it has not started) and
    returns its Result."""
    job = _jobs[name]
    with _lock:
        if job.process is None:
            _start(job)
    returncode = job.process.wait(timeout=job.timeout)  # a hang guard only
    with open(os.path.join(job.folder, "stdout")) as out, \
            open(os.path.join(job.folder, "stderr")) as err:
        return Result(returncode, out.read(), err.read(), job.folder)


def finish():
    """Starts nothing more, kills what still runs (an interrupted session) and removes the
    commands' folders."""
    global _closed
    with _lock:
        _closed = True
        jobs = list(_jobs.values())
    for job in jobs:
        if job.process is not None and job.process.poll() is None:
            job.process.kill()
            job.process.wait()
        shutil.rmtree(job.folder, ignore_errors=True)
