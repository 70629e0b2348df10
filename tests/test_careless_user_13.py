"""Thirteenth probe (multi-step stories by someone who did not write the earlier fixes): what a careless user broke.

A JSON number too large for a float (an integer of a few hundred digits: a damaged or hand-edited file; Python's json
reads it as an int, which no finite-number check saw) was an OverflowError traceback ("int too large to convert to
float"): in a run's `metrics.jsonl` (a loss value, or the `iter` of a line) at `gmdrit report RUN`, and in the
`temperature` of a row of the `sweep.json` given to `gmdrit export --temperature T --sweep SWEEP`, in a run's
`benchmark.json` (a row's `median` or `peak_memory_bytes`: math.isfinite in the report's own shape check) at
`gmdrit report RUN`, and in a float config key (`--set loss.keep_neutral=1000...0`, or such a value in an export's
config.yaml read by `gmdrit translate`). A `benchmark.json` row without `report_seconds` (which the shape check lets
through as "not timed by the report") was a KeyError traceback in the report's benchmark chart.

A cached domain classifier whose `domain_classifier.json` was damaged or hand-edited in its summary fields (`test`,
`junk`, `training`: None, a list, text or such an integer where numbers go) while its weights and their SHA-256
were intact was loaded as valid, then a TypeError, AttributeError, ValueError or OverflowError traceback at
`gmdrit eval --metrics domain_accuracy` (DomainClassifier.info and the printed summary line), where every other
damage to the cache means "train again".

A run's `.lock` (left by a killed training, then damaged or hand-edited) naming a PID no process ID can be (2**40, or
an integer of 400 digits) passed the lock reader's shape check (a positive int) and was an OverflowError traceback
out of os.kill(pid, 0) ("signed integer is greater than maximum") at `gmdrit resume RUN` and `gmdrit train`.

Lost (small): `gmdrit resume RUN/checkpoints/iter_N` (an earlier checkpoint) sets the later metrics lines aside in
`metrics.after-iter_N.jsonl`, but deleted every complete line it could not read as a record with an `iter` (a
note the user added, `{"note": "lr lowered here"}`, or a line whose iter is not a number): it went neither into
metrics.jsonl nor into the file set aside. (Only a line cut off by a kill is garbage.)

The torchrun variables set to something that is not a whole number (a shell or job script that uses RANK or
WORLD_SIZE for something else, or LOCAL_WORLD_SIZE=abc) were a ValueError traceback ("invalid literal for int()")
at `gmdrit train`: distributed.join (RANK, WORLD_SIZE, LOCAL_RANK) and the loader-thread count (LOCAL_WORLD_SIZE).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import traceback
from pathlib import Path

import pytest

from conftest import assert_one_line_error, tiny_overrides

#: an integer JSON number that no float holds (fewer digits than Python's 4,300-digit limit for int())
HUGE = "1" + "0" * 400


def _cli(cli, *args) -> subprocess.CompletedProcess:
    """``cli(*args)``, an exception escaping the command turned into the traceback a user would have seen."""
    try:
        return cli(*args)
    except Exception:  # what `gmdrit` would print as a Python traceback
        return subprocess.CompletedProcess(args, 1, "", traceback.format_exc())


def _copy_of_run(tiny_gmdrit_run, tmp_path: Path) -> Path:
    """A copy of the shared tiny run, ``tmp_path / "run"``, for a test to damage."""
    base, _ = tiny_gmdrit_run
    return Path(shutil.copytree(base / "run", tmp_path / "run", symlinks=True))


def _run_with_metrics_line(tiny_gmdrit_run, tmp_path: Path, edit) -> Path:
    run = _copy_of_run(tiny_gmdrit_run, tmp_path)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[0] = edit(lines[0])
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run


def _report_leaves_out_or_says_one_line(cli, run: Path, out: Path, damaged: str = "metrics.jsonl") -> None:
    """`gmdrit report` of a run with a ``damaged`` file: no traceback; the damage left out, or one line naming it."""
    proc = _cli(cli, "report", run, "--out", out)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-2000:]
    if proc.returncode != 0:
        assert_one_line_error(proc, damaged)


def test_report_of_a_metrics_line_whose_loss_no_float_holds(cli, tiny_gmdrit_run, tmp_path):
    """A loss value of 400 digits in metrics.jsonl: OverflowError in reporting/run_metrics.series (float(value))."""

    def edit(line: str) -> str:
        record = json.loads(line)
        key = next(k for k, v in record.items() if k not in ("iter", "epoch", "time") and isinstance(v, float))
        return json.dumps(record).replace(f'"{key}": {json.dumps(record[key])}', f'"{key}": {HUGE}', 1)

    run = _run_with_metrics_line(tiny_gmdrit_run, tmp_path, edit)
    _report_leaves_out_or_says_one_line(cli, run, tmp_path / "report")


def test_report_of_a_metrics_line_whose_iteration_no_float_holds(cli, tiny_gmdrit_run, tmp_path):
    """An `iter` of 400 digits in metrics.jsonl: OverflowError in matplotlib's plot (np.asanyarray(x, float))."""

    def edit(line: str) -> str:
        record = json.loads(line)
        return json.dumps(record).replace(f'"iter": {record["iter"]}', f'"iter": {HUGE}', 1)

    run = _run_with_metrics_line(tiny_gmdrit_run, tmp_path, edit)
    _report_leaves_out_or_says_one_line(cli, run, tmp_path / "report")


def test_export_with_a_sweep_whose_temperature_no_float_holds(cli, tiny_gmdrit_run, tmp_path):
    """`export --temperature 1 --sweep S` where a row of S has a temperature of 400 digits: OverflowError in
    model_files._chosen_from_sweep (float(row["temperature"])), not one of the exceptions it turns into a line."""
    base, _ = tiny_gmdrit_run
    sweep = tmp_path / "sweep.json"
    sweep.write_text(
        '{"split": "val", "model": {"fingerprint": "x"}, "rows": ['
        f'{{"temperature": {HUGE}, "mean": {{}}}}, {{"temperature": 1.0, "mean": {{}}}}]}}'
    )
    proc = _cli(cli, "export", base / "run", "--out", tmp_path / "export", "--temperature", "1", "--sweep", sweep)
    assert_one_line_error(proc, "--sweep")
    assert not (tmp_path / "export" / "model.safetensors").exists()


def test_a_float_config_key_set_to_an_integer_no_float_holds(cli, tmp_path):
    """`--set loss.keep_neutral=1000...0` (also optim.lr_eg, model.sample_temperature, train.ema_beta,
    data.val_fraction, loss.mode_seeking: every float key): OverflowError in config.schema._coerce (float(value)),
    where an integer key of that size (train.max_iters, data.crop) is one line."""
    proc = _cli(
        cli,
        "train",
        "--preset",
        "demo_gmdrit",
        "--run-dir",
        tmp_path / "run",
        "--dry-run",
        "--set",
        f"loss.keep_neutral={HUGE}",
    )
    assert_one_line_error(proc, "loss.keep_neutral")


def test_an_exports_config_with_an_integer_no_float_holds(cli, tiny_gmdrit_run, tmp_path):
    """The same through a file: an export's config.yaml whose model.sample_temperature is such an integer (a hand
    edit) was an OverflowError traceback at `gmdrit translate --checkpoint EXPORT/model.safetensors`."""
    base, root = tiny_gmdrit_run
    export = tmp_path / "export"
    assert cli("export", base / "run", "--out", export).returncode == 0
    config = export / "config.yaml"
    text = config.read_text()
    assert "  sample_temperature: " in text
    config.write_text(
        "\n".join(
            f"  sample_temperature: {HUGE}" if line.startswith("  sample_temperature: ") else line
            for line in text.splitlines()
        )
        + "\n"
    )
    proc = _cli(
        cli,
        "translate",
        root / "testA" / "0.png",
        "--domain",
        "B",
        "--checkpoint",
        export / "model.safetensors",
        "--out",
        tmp_path / "out",
        "--samples",
        "2",
    )
    assert_one_line_error(proc, "sample_temperature")


def _run_with_benchmark(tiny_gmdrit_run, tmp_path: Path, row: str) -> Path:
    run = _copy_of_run(tiny_gmdrit_run, tmp_path)
    (run / "benchmark.json").write_text('{"rows": [' + row + "]}")
    return run


def test_report_of_a_benchmark_whose_median_no_float_holds(cli, tiny_gmdrit_run, tmp_path):
    """benchmark_problem's own check (_seconds: math.isfinite) raised OverflowError on a 400-digit median."""
    run = _run_with_benchmark(tiny_gmdrit_run, tmp_path, f'{{"resolution": 108, "label": "x", "median": {HUGE}}}')
    _report_leaves_out_or_says_one_line(cli, run, tmp_path / "report", "benchmark.json")


def test_report_of_a_benchmark_whose_peak_memory_no_float_holds(cli, tiny_gmdrit_run, tmp_path):
    run = _run_with_benchmark(
        tiny_gmdrit_run, tmp_path, f'{{"resolution": 108, "label": "x", "median": 1.5, "peak_memory_bytes": {HUGE}}}'
    )
    _report_leaves_out_or_says_one_line(cli, run, tmp_path / "report", "benchmark.json")


def test_report_of_a_benchmark_row_without_report_seconds(cli, tiny_gmdrit_run, tmp_path):
    """benchmark_problem accepts a row without report_seconds (r.get), then charts.benchmark_chart reads
    r["report_seconds"]: KeyError traceback."""
    run = _run_with_benchmark(tiny_gmdrit_run, tmp_path, '{"resolution": 108, "label": "x", "median": 1.5}')
    _report_leaves_out_or_says_one_line(cli, run, tmp_path / "report", "benchmark.json")


def test_a_cached_domain_classifier_with_a_damaged_summary_is_retrained_or_one_line(cli, tiny_gmdrit_run, tmp_path):
    base, _ = tiny_gmdrit_run
    cache = tmp_path / "cache"
    args = (
        "eval",
        base / "run",
        "--metrics",
        "domain_accuracy",
        "--max-inputs",
        "1",
        "--samples-per-input",
        "2",
        "--no-reference",
        "--classifier-cache",
        cache,
    )
    first = cli(*args, "--out", tmp_path / "e1")
    assert first.returncode == 0, first.stderr
    (record,) = cache.rglob("domain_classifier.json")
    data = json.loads(record.read_text())
    data["test"] = None  # also: {"per_domain": [1]}, a to_target of "abc" or of 400 digits, "junk": 5
    record.write_text(json.dumps(data))
    proc = _cli(cli, *args, "--out", tmp_path / "e2")
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-2000:]
    if proc.returncode != 0:
        assert_one_line_error(proc, "domain_classifier")


def test_a_run_lock_naming_a_pid_no_process_can_have_is_one_line_or_stale(cli, tiny_gmdrit_run, tmp_path):
    base, _ = tiny_gmdrit_run
    run = tmp_path / "run"
    shutil.copytree(base / "run", run)
    (run / ".lock").write_text(json.dumps({"host": "vm", "pid": 2**40, "started": 1764750000.0, "token": "ab"}))
    proc = _cli(cli, "resume", run, "--set", "train.max_iters=3")
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-2000:]
    if proc.returncode != 0:
        assert_one_line_error(proc, ".lock")


def test_resume_from_an_earlier_checkpoint_keeps_metrics_lines_it_cannot_read(cli, tiny_gmdrit_run, tmp_path):
    from gmdrit_cli.config.schema import load_config
    from gmdrit_cli.training.trainer import train

    _, root = tiny_gmdrit_run
    run = tmp_path / "run"
    train(load_config("reduced_res", tiny_overrides(root, 4) + ["train.save_every=2"]), run)
    metrics = run / "metrics.jsonl"
    lines = metrics.read_text().splitlines()
    note = '{"note": "lr lowered here by hand"}'
    metrics.write_text("\n".join(lines[:2] + [note] + lines[2:]) + "\n")
    proc = cli("resume", run / "checkpoints" / "iter_0000002", "--set", "train.max_iters=3")
    assert proc.returncode == 0, proc.stderr
    kept = "".join(p.read_text() for p in run.glob("metrics*.jsonl"))
    assert note in kept, "the line the user added to metrics.jsonl is gone"


def _tiny_train_args(root, run) -> list:
    return [
        "train",
        "--preset",
        "reduced_res",
        "--run-dir",
        run,
        *[a for v in tiny_overrides(root, 1) for a in ("--set", v)],
    ]


def test_torchrun_variables_that_are_not_numbers_are_one_line(cli, tiny_gmdrit_run, tmp_path):
    _, root = tiny_gmdrit_run
    try:
        proc = cli(*_tiny_train_args(root, tmp_path / "run"), env={"RANK": "abc", "WORLD_SIZE": "2"})
    except ValueError:
        proc = subprocess.CompletedProcess([], 1, "", "Traceback ...\nValueError: invalid literal for int()")
    assert_one_line_error(proc, "RANK")


def test_a_local_world_size_that_is_not_a_number_is_one_line_or_ignored(cli, tiny_gmdrit_run, tmp_path):
    _, root = tiny_gmdrit_run
    try:
        proc = cli(*_tiny_train_args(root, tmp_path / "run"), env={"LOCAL_WORLD_SIZE": "abc"})
    except ValueError:
        proc = subprocess.CompletedProcess([], 1, "", "Traceback ...\nValueError: invalid literal for int()")
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-2000:]
    if proc.returncode != 0:
        assert_one_line_error(proc, "LOCAL_WORLD_SIZE")


def test_a_stray_rank_without_world_size_does_not_silence_errors(cli, tmp_path):
    missing = str(tmp_path / "missing_run")
    alone = cli("export", missing, "--out", tmp_path / "e", env={"RANK": "1"})
    assert_one_line_error(alone, "missing_run")
    in_group = cli("export", missing, "--out", tmp_path / "e", env={"RANK": "1", "WORLD_SIZE": "2"})
    assert in_group.returncode != 0 and in_group.stderr.strip() == ""  # rank 0 of the group says it


def test_a_meta_key_given_twice_is_refused(cli, tiny_gmdrit_run, tmp_path):
    base, _ = tiny_gmdrit_run
    proc = cli("export", base / "run", "--out", tmp_path / "e", "--meta", "note=a", "--meta", "note=b")
    assert_one_line_error(proc, "'note' given twice")
    assert not (tmp_path / "e").exists()


def test_report_of_a_checkpoint_latest_or_eval_folder_reports_its_run(run_dir, tmp_path):
    """`gmdrit report RUN/checkpoints/latest` was refused and `report RUN/eval` gave an empty report."""
    from gmdrit_cli.reporting.report import build_report

    run_dir = Path(shutil.copytree(run_dir, tmp_path / "run", symlinks=True))
    latest = run_dir / "checkpoints" / "latest"
    checkpoint = sorted((run_dir / "checkpoints").glob("iter_*"))[-1]
    (run_dir / "eval").mkdir(exist_ok=True)
    result = build_report([latest, checkpoint, run_dir / "eval", run_dir / "checkpoints"], tmp_path / "report")
    assert [r.path.resolve() for r in result.runs] == [run_dir.resolve()] and result.runs[0].metrics
    assert result.runs[0].label == run_dir.resolve().name


def test_a_val_sweep_of_a_run_that_cannot_be_written_is_refused_before_it_runs(cli, tiny_gmdrit_run, tmp_path):
    """The sweep evaluated every temperature, then failed to store its choice in the read-only run."""
    _, root = tiny_gmdrit_run
    run = _copy_of_run(tiny_gmdrit_run, tmp_path)
    if subprocess.run(["chattr", "+i", str(run)], capture_output=True).returncode != 0:
        pytest.skip("chattr +i is not available here (needs root on a file system that has it)")
    try:
        proc = cli("eval", run, "--data", root, "--split", "val", "--temperature", "0.5,1", "--out", tmp_path / "s")
    finally:
        subprocess.run(["chattr", "-i", str(run)], check=True)
    assert_one_line_error(proc, "cannot be written", "sampling.json")
    assert not (tmp_path / "s").exists()


def test_a_full_disk_while_writing_a_report_names_the_report(run_dir, tmp_path, monkeypatch):
    """The line was "cannot read or write a file: no space left on the device", with no path."""
    import errno

    from gmdrit_cli import atomic
    from gmdrit_cli.errors import ReportError
    from gmdrit_cli.reporting.report import build_report

    write_text = atomic.write_text

    def no_space_for_the_page(path, *args, **kwargs):  # the disk fills up once the pictures are written
        if path.name == "index.html":
            raise OSError(errno.ENOSPC, "No space left on device")
        return write_text(path, *args, **kwargs)

    monkeypatch.setattr(atomic, "write_text", no_space_for_the_page)
    with pytest.raises(ReportError, match=f"cannot make the report in {tmp_path / 'report'}.*space"):
        build_report([run_dir], tmp_path / "report")
