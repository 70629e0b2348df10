"""Fourteenth probe (Ctrl+C at the wrong moment): what a careless user broke.

Ctrl+C pressed in the first second of any `gmdrit` command (the user sees a typo in the command line just after
pressing Enter) arrives while `gmdrit_cli/cli/main.py` imports typer, rich and the command modules at module level,
before `_run_app` (whose `except KeyboardInterrupt` prints "interrupted" and exits 130) is running: the user gets a
KeyboardInterrupt traceback of 10 to 20 lines through runpy, main.py and typer's or rich's imports (exit -2).

Ctrl+C pressed while a command imports torch (a few seconds into `gmdrit export`, `translate`, `eval`, ...) can land
while torch's C extension imports numpy: torch swallows that KeyboardInterrupt (it only warns that numpy could not
be initialised), so the command goes on as if nothing was pressed, with numpy half imported. `gmdrit export
--format onnx` then imports onnx, whose ml_dtypes touches numpy: a RecursionError traceback ("maximum recursion
depth exceeded" through numpy/__init__.py __getattr__, 900 frames) and exit 1. (A safetensors export just carries
on and writes the model: the Ctrl+C is lost.)

The moment is made exact here by an import hook that sends SIGINT to the process when a given module is first looked
for (the same as a Ctrl+C at that moment; in a real terminal the window is about a second wide at start-up and a
fraction of a second during torch's import, hit in 1 of 3 tries of `gmdrit export --format onnx` at 5 s).
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_one_line_error

REPO = Path(__file__).resolve().parents[1]

#: `python -m gmdrit_cli ARGS` (as runpy runs it), with SIGINT sent to the process when module TARGET is first
#: looked for: python -c HOOK TARGET ARGS...
HOOK = """
import os, runpy, signal, sys

TARGET = sys.argv[1]
sys.argv = ["gmdrit", *sys.argv[2:]]


class CtrlCWhenImported:
    fired = False

    def find_spec(self, name, path=None, target=None):
        if name == TARGET and not CtrlCWhenImported.fired:
            CtrlCWhenImported.fired = True
            os.kill(os.getpid(), signal.SIGINT)
        return None


sys.meta_path.insert(0, CtrlCWhenImported())
runpy.run_module("gmdrit_cli", run_name="__main__", alter_sys=True)
"""


def _ctrl_c_when_imported(target: str, *args) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", HOOK, target, *map(str, args)],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)},
    )


def _assert_interrupted(proc: subprocess.CompletedProcess) -> None:
    """What a Ctrl+C gives: exit 130 and one line, 'interrupted', no traceback."""
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-3000:]
    assert proc.returncode == 130, (proc.returncode, proc.stderr[-3000:])
    assert [line for line in proc.stderr.splitlines() if line.strip()] == ["interrupted"], proc.stderr[-3000:]


@pytest.mark.parametrize("module", ["typer", "rich.table", "gmdrit_cli.cli.infer"])
def test_ctrl_c_while_gmdrit_starts_is_one_line_not_a_traceback(module):
    """SIGINT while gmdrit_cli/cli/main.py imports typer (line 14), rich (line 15) or a command module (the imports
    at its end): KeyboardInterrupt traceback, exit -2 (the process killed by SIGINT)."""
    _assert_interrupted(_ctrl_c_when_imported(module, "presets"))


@pytest.mark.skipif(importlib.util.find_spec("onnx") is None, reason="the ONNX export needs onnx")
def test_ctrl_c_while_torch_imports_numpy_never_ends_in_a_recursion_traceback(tiny_gmdrit_run, tmp_path):
    """SIGINT while torch (imported by `gmdrit export`) imports numpy: torch swallows the KeyboardInterrupt, the
    export goes on and `import onnx` ends in a RecursionError traceback through numpy's __getattr__."""
    base, _ = tiny_gmdrit_run
    out = tmp_path / "onnx"
    proc = _ctrl_c_when_imported("numpy.linalg", "export", base / "run", "--out", out, "--format", "onnx")
    _assert_interrupted(proc)
    assert not out.exists() or not any(out.iterdir())  # nothing half-written


def test_ctrl_c_while_a_command_runs_says_interrupted(tiny_gmdrit_run, tmp_path):
    """After the fixes above: typer turns a KeyboardInterrupt into a silent exit 130, and torch's exit handlers
    logged 'FakeTensor cache stats' lines through gmdrit's INFO logging; now one line says what happened."""
    base, root = tiny_gmdrit_run
    image = sorted((root / "testA").iterdir())[0]
    out = tmp_path / "t"
    _assert_interrupted(
        _ctrl_c_when_imported(
            "PIL.PngImagePlugin", "translate", image, "-d", "orange", "--run", base / "run", "-o", out
        )
    )
    _assert_interrupted(
        _ctrl_c_when_imported("torch", "translate", image, "-d", "orange", "--run", base / "run", "-o", out)
    )


def test_a_sampling_json_with_a_misnamed_key_says_the_key_is_missing(cli, tiny_gmdrit_run, tmp_path):
    """`{"temperature": "1"}` was reported as "sample_temperature None is not a number"."""
    import json
    import shutil

    base, root = tiny_gmdrit_run
    run = Path(shutil.copytree(base / "run", tmp_path / "run", symlinks=True))
    (run / "sampling.json").write_text(json.dumps({"temperature": "1"}))
    image = sorted((root / "testA").iterdir())[0]
    proc = cli("translate", image, "-d", "orange", "--run", run, "-o", tmp_path / "t")
    assert_one_line_error(proc, "sampling.json is damaged (it has no sample_temperature (keys: temperature))")
