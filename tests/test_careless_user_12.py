"""Twelfth probe (multi-step stories by someone who did not write the earlier fixes): what a careless user still broke.

A run whose `tensorboard/` folder cannot take a new event file (a full disk, a folder made read-only, a link to a
place nothing can be written) printed a Python traceback from TensorBoard's writer thread ("Exception in thread
Thread-2: Traceback ... PermissionError") above gmdrit's own one-line error, at `gmdrit resume` (and `train`).
`gmdrit app --host ::1` (or `--host ::`, an IPv6 address) was an httpx.InvalidURL traceback out of Gradio's launch
(gmdrit's own check of the address passed it, and it printed the page as `http://::1:7860/`).
"""

from __future__ import annotations

import importlib.util
import shutil
import socket
import subprocess
import sys
import time

import pytest

from conftest import assert_one_line_error, run_gmdrit, start_gmdrit


def test_a_tensorboard_folder_that_takes_no_event_file_is_one_line(run_dir, tmp_path):
    """The event file is opened by TensorBoard's writer thread: its OSError was a traceback of that thread."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    shutil.rmtree(run / "tensorboard", ignore_errors=True)
    (run / "tensorboard").symlink_to("/proc")  # a folder where no file can be made, even by root
    proc = run_gmdrit("resume", run, "--set", "train.max_iters=3")
    assert "Traceback" not in proc.stderr + proc.stdout, proc.stderr[-3000:]
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines()[-1].startswith("error: ")


def _free_ipv6_port() -> int | None:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
            return s.getsockname()[1]
    except OSError:
        return None


@pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason="gradio is not installed")
def test_app_on_an_ipv6_host_serves_or_says_why_in_one_line(run_dir):
    """`--host ::1` passed gmdrit's address check, then Gradio built `http://::1:PORT` and httpx raised."""
    port = _free_ipv6_port()
    if port is None:
        pytest.skip("no IPv6 loopback here")
    proc = start_gmdrit("app", "--run", run_dir, "--host", "::1", "--port", port)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        time.sleep(0.5)
        try:
            with socket.create_connection(("::1", port), timeout=1):
                break  # it serves: what a user asked for
        except OSError:
            continue
    if proc.poll() is None:  # serving (or still starting): no traceback so far
        proc.terminate()
        out, err = proc.communicate(timeout=60)
        assert "Traceback" not in out + err, err[-3000:]
        return
    out, err = proc.communicate()
    assert_one_line_error(subprocess.CompletedProcess(proc.args, proc.returncode, out, err))
