"""The `gmdrit` command as a user runs it: its exit code, stdout and stderr (in this process where a separate one
is not the point), and the fast exit at the end of a real process."""

import json
import subprocess
import sys

import pytest

from conftest import assert_one_line_error, run_gmdrit, set_args, tiny_overrides
from gmdrit_cli.families import MODEL_FAMILIES


def test_user_errors_are_one_line(cli, tmp_path):
    assert_one_line_error(cli("train", "--preset", "mdmm_basline"), "unknown preset", "mdmm_baseline")
    assert_one_line_error(
        cli("train", "--preset", "quickstart", "--set", "train.max_iter=3"),
        "unknown key 'train.max_iter'",
        "train.max_iters",
    )
    assert_one_line_error(
        cli(
            "train",
            "--preset",
            "mdmm_baseline",
            "--set",
            f"data.root={tmp_path / 'no'}",
            "--run-dir",
            str(tmp_path / "r"),
        ),
        "does not exist",
        "data.root",
    )
    empty = tmp_path / "empty"
    for split in ("trainA", "trainB"):
        (empty / split).mkdir(parents=True)
    (empty / "trainA" / "readme.txt").write_text("no images here")
    assert_one_line_error(
        cli("train", "--preset", "mdmm_baseline", "--set", f"data.root={empty}", "--run-dir", str(tmp_path / "r")),
        "no readable images",
    )
    assert not (tmp_path / "r").exists()  # nothing is created for a run that cannot start


def test_presets_and_models_listings(cli):
    proc = cli("presets")
    assert proc.returncode == 0
    assert "quickstart" in proc.stdout and "mdmm_baseline" in proc.stdout
    proc = cli("models")
    # rows start in the first column; wrapped descriptions continue indented
    listed = {line.split()[0] for line in proc.stdout.splitlines()[1:] if line[1:2].strip()}
    assert listed == set(MODEL_FAMILIES)  # the CLI lists exactly the registry


@pytest.mark.slow  # the full-size networks built on the CPU
def test_dry_run_json_shows_official_parameter_counts(cli):
    proc = cli("train", "--preset", "mdmm_baseline", "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["params"] == {
        "content_encoder": 5_099_136,
        "attribute_encoder": 1_346_128,
        "generator": 5_435_252,
        "dis_encoded": 15_728_256,
        "dis_random": 15_728_256,
        "dis_content": 10_683_906,
    }
    assert out["config"]["data"]["crop"] == 216
    text = cli("train", "--preset", "mdmm_baseline", "--dry-run")
    assert "5,099,136" in text.stdout and "crop: 216" in text.stdout


@pytest.mark.slow
def test_train_through_cli_writes_run_folder(tiny_data, tmp_path):
    # on a CPU capped at AVX2 (no native bf16) speed.amp auto trains in fp32, and the first line says so; a process
    # of its own, since torch reads the caps (ONEDNN_MAX_CPU_ISA, ATEN_CPU_CAPABILITY) when it is imported
    proc = run_gmdrit(
        "train",
        "--preset",
        "mdmm_baseline",
        *set_args(tiny_overrides(tiny_data, 3)),
        cwd=tmp_path,
        env={"ONEDNN_MAX_CPU_ISA": "AVX2", "ATEN_CPU_CAPABILITY": "avx2"},
    )
    assert proc.returncode == 0, proc.stderr
    assert "on cpu (fp32, speed.amp=auto: CPU without native bf16)" in proc.stdout.replace("\n", " ")
    run = tmp_path / "runs" / "mdmm_baseline"  # default run folder: runs/<preset name>
    assert (run / "config.yaml").is_file() and (run / "metrics.jsonl").is_file()
    assert len((run / "metrics.jsonl").read_text().splitlines()) == 3
    assert list((run / "samples").glob("*.png"))
    assert (run / "checkpoints" / "iter_0000003" / "model.safetensors").is_file()
    assert "done: iteration 3" in proc.stdout


def _end_process_script(body: str) -> list[str]:
    return [
        sys.executable,
        "-c",
        "import sys, threading, time, torch\nfrom gmdrit_cli.cli.main import _end_process\n" + body,
    ]


@pytest.mark.slow
def test_fast_exit_flushes_piped_output_and_keeps_the_exit_code():
    # stdout is a pipe here (block-buffered): what was printed must still arrive when the process ends at once
    proc = subprocess.run(
        _end_process_script("print('x' * 100000, end='')\nsys.stderr.write('done')\n_end_process(3)"),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 3
    assert proc.stdout == "x" * 100000 and proc.stderr == "done"


@pytest.mark.slow
def test_fast_exit_waits_for_a_running_thread(tmp_path):
    # a live non-daemon thread (e.g. a writer finishing a file) makes it take Python's normal exit, which waits
    marker = tmp_path / "written"
    body = (
        f"t = threading.Thread(target=lambda: (time.sleep(0.5), open({str(marker)!r}, 'w').write('ok')))\n"
        "t.start()\n_end_process(0)"
    )
    proc = subprocess.run(_end_process_script(body), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert marker.read_text() == "ok"


@pytest.mark.slow
def test_fast_exit_runs_the_exit_handlers(tmp_path):
    # atexit handlers (a process group's teardown, coverage's data file, logging) still run; the fast path was taken
    # (a module global's finaliser, run by the interpreter's teardown, must not run: the teardown was skipped)
    marker, teardown = tmp_path / "handler", tmp_path / "teardown"
    body = (
        f"import atexit; atexit.register(lambda: open({str(marker)!r}, 'w').write(str(threading.active_count())))\n"
        f"class Finalised:\n    def __del__(self): open({str(teardown)!r}, 'w').write('ran')\n"
        "kept = Finalised()\n_end_process(5)"
    )
    proc = subprocess.run(_end_process_script(body), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 5, proc.stderr
    assert marker.read_text() == "1"
    assert not teardown.exists()
