"""Shared pytest setup: quiet TensorFlow's C++ logging before anything imports it, the opt-in
`slow` marker (run those with --runslow), the one smoke-trained run the session shares, and the
long independent commands started in the background (tests/_background.py)."""

import os

import _background
import pytest

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SMOKE = os.path.join(REPO, "flags", "smoke.cfg")


def pytest_addoption(parser):
    parser.addoption("--runslow", action="store_true", default=False,
                     help="also run tests marked slow (minutes each)")


def pytest_collection_modifyitems(config, items):
    if config.getoption("--runslow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --runslow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


def pytest_configure(config):
    config.addinivalue_line(
        "markers", "prefetch(name, *argv, timeout=600): the test waits for `python *argv`, "
        "started in the background once collected (tests/_background.py)")


# The session's smoke run, by tests/_background.py like a prefetched command.
SMOKE_ARGV = ["-m", "daah_tf.train", f"--flagfile={SMOKE}", f"--model_dir={_background.FOLDER}/run"]


def pytest_collection_finish(session):
    """Requests the background commands that the collected, not skipped tests need, in the
    order the tests will need them, and starts the first ones."""
    if session.config.option.collectonly:
        return
    for item in session.items:
        if item.get_closest_marker("skip") is not None:
            continue
        if "smoke_run" in getattr(item, "fixturenames", ()):
            _background.request("smoke", SMOKE_ARGV)
        for marker in item.iter_markers("prefetch"):
            _background.request(marker.args[0], marker.args[1:], **marker.kwargs)
    _background.pump()


def pytest_sessionfinish(session, exitstatus):
    _background.finish()  # a failed check shows the command's output in its message


@pytest.fixture
def prefetched(request):
    """The Result (returncode, stdout, stderr, folder) of the test's @pytest.mark.prefetch
    command."""
    return _background.result(request.node.get_closest_marker("prefetch").args[0])


@pytest.fixture(scope="session")
def smoke_run():
    """(model_dir, stdout) of one `python -m daah_tf.train --flagfile=flags/smoke.cfg` run (two
    epochs, a SavedModel), trained once for every module that only needs a finished smoke run.

    Read it, never write into it: a test that resumes, evaluates, indexes or damages a run works
    on a `shutil.copytree` copy of it (a run's settings do not include its folder: a copy is a
    run of its own, which the command resumes like the original)."""
    _background.request("smoke", SMOKE_ARGV)  # requested at collection, unless not seen there
    done = _background.result("smoke")
    assert done.returncode == 0, done.stdout + done.stderr
    model_dir = os.path.join(done.folder, "run")
    before = _listing(model_dir)
    yield model_dir, done.stdout
    assert _listing(model_dir) == before, "a test wrote into the shared smoke run"


def _listing(directory):
    """{relative path: (size, mtime)} of every file under `directory`."""
    found = {}
    for root, _, names in os.walk(directory):
        for name in names:
            status = os.stat(os.path.join(root, name))
            found[os.path.relpath(os.path.join(root, name), directory)] = (
                status.st_size, status.st_mtime_ns)
    return found
