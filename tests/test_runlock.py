"""One writer per run folder: the lock file, stale locks, and two trainings started on one folder."""

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_gmdrit, set_args, start_gmdrit, tiny_overrides, wait_for_iterations
from gmdrit_cli.training.checkpoint import find_checkpoint
from gmdrit_cli.training.runlock import LOCK_FILE, STALE_AFTER_S, RunFolderBusy, RunLock


def write_lock(run_dir: Path, **holder) -> Path:
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / LOCK_FILE
    path.write_text(
        json.dumps(
            {"host": socket.gethostname(), "pid": os.getpid(), "started": time.time(), "token": "someone", **holder}
        )
    )
    return path


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_lock_is_exclusive_and_released(tmp_path):
    first = RunLock(tmp_path)
    first.acquire()
    holder = json.loads((tmp_path / LOCK_FILE).read_text())
    assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
    with pytest.raises(RunFolderBusy, match=f"PID {os.getpid()} on host {socket.gethostname()} since"):
        RunLock(tmp_path).acquire()
    first.release()
    assert not (tmp_path / LOCK_FILE).exists()
    with RunLock(tmp_path):  # free again
        assert (tmp_path / LOCK_FILE).exists()
    assert not (tmp_path / LOCK_FILE).exists()


def test_release_leaves_a_lock_that_is_not_ours(tmp_path):
    lock = RunLock(tmp_path)
    lock.acquire()
    write_lock(tmp_path, token="a newer holder")  # e.g. taken over meanwhile
    lock.release()
    assert (tmp_path / LOCK_FILE).exists()


def test_lock_of_a_dead_process_is_taken_over_with_a_note(tmp_path, caplog):
    pid = dead_pid()
    write_lock(tmp_path, pid=pid)
    with caplog.at_level(logging.WARNING, logger="gmdrit"):
        with RunLock(tmp_path):
            assert json.loads((tmp_path / LOCK_FILE).read_text())["pid"] == os.getpid()
    assert f"PID {pid}" in caplog.text and "no longer runs" in caplog.text


def test_a_reused_pid_does_not_keep_the_lock(tmp_path, caplog):
    # this process's PID, but recorded by a holder that started long before this process did: the PID was reused,
    # so the holder no longer runs and its lock is taken over with a note
    write_lock(tmp_path, started=time.time() - 10 * 365 * 86400)
    with caplog.at_level(logging.WARNING, logger="gmdrit"):
        with RunLock(tmp_path) as lock:
            holder = json.loads((tmp_path / LOCK_FILE).read_text())
            assert holder["token"] == lock.token != "someone" and holder["pid"] == os.getpid()
    assert f"PID {os.getpid()}" in caplog.text and "no longer runs" in caplog.text
    assert not (tmp_path / LOCK_FILE).exists()  # released: it was this lock's, not the old holder's


def test_other_host_lock_is_respected_until_its_heartbeat_is_old(tmp_path):
    path = write_lock(tmp_path, host="another-machine", pid=1)
    with pytest.raises(RunFolderBusy, match="PID 1 on host another-machine"):
        RunLock(tmp_path).acquire()
    old = time.time() - STALE_AFTER_S - 60
    os.utime(path, (old, old))
    with RunLock(tmp_path):
        assert json.loads(path.read_text())["host"] == socket.gethostname()


@pytest.mark.slow
def test_second_training_on_a_run_folder_is_refused_and_the_first_is_unharmed(tiny_data, tmp_path):
    overrides = tiny_overrides(tiny_data, 100000) + ["train.save_every=20"]
    args = ["train", "--preset", "mdmm_baseline", "--run-dir", tmp_path / "r", *set_args(overrides)]
    first = start_gmdrit(*args, cwd=tmp_path)
    wait_for_iterations(tmp_path / "r", 2, first)
    second = run_gmdrit(*args, cwd=tmp_path)
    assert first.poll() is None, "the first training must still run while the second is refused"
    assert second.returncode == 1
    lines = second.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in second.stderr
    assert f"PID {first.pid} on host {socket.gethostname()}" in lines[0] and "is being written by" in lines[0]
    first.send_signal(signal.SIGTERM)  # the first goes on until stopped, then saves as usual
    out, err = first.communicate(timeout=300)
    assert first.returncode == 128 + signal.SIGTERM, err
    folder, state = find_checkpoint(tmp_path / "r")
    rows = [json.loads(x)["iter"] for x in (tmp_path / "r" / "metrics.jsonl").read_text().splitlines()]
    assert rows == list(range(1, state["iteration"] + 1))  # one writer: no interleaved or repeated lines
    assert not (tmp_path / "r" / LOCK_FILE).exists()
