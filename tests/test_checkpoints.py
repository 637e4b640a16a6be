"""training/checkpoints.py under hostile conditions: an unreadable latest checkpoint."""

from _commands import run, train_command


def test_unreadable_latest_checkpoint_falls_back_with_warning(smoke_run, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(smoke_run[0], copy)  # the session's two-epoch smoke run (conftest.py)
    data = copy / "checkpoints" / "ckpt-2.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:100])  # a truncated copy
    result = run(train_command(copy, "--epochs=3"))
    assert result.returncode == 0, result.stderr
    assert "ckpt-2 is unreadable" in result.stderr
    assert "from " + str(copy / "checkpoints" / "ckpt-1") + ": epoch 1" in result.stdout
