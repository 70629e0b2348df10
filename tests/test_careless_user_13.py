"""Thirteenth probe (multi-step stories by someone who did not write the earlier fixes): what a careless user still broke.

A JSON number too large for a float (an integer of a few hundred digits: a damaged or hand-edited file; Python's json
reads it as an int, which no finite-number check saw) was an OverflowError traceback ("int too large to convert to
float"): in a run's `metrics.jsonl` (a loss value, or the `iter` of a line) at `gmdrit report RUN`, and in the
`temperature` of a row of the `sweep.json` given to `gmdrit export --temperature T --sweep SWEEP`.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import traceback
from pathlib import Path

from conftest import assert_one_line_error

#: an integer JSON number that no float holds (fewer digits than Python's 4,300-digit limit for int())
HUGE = "1" + "0" * 400


def _cli(cli, *args) -> subprocess.CompletedProcess:
    """``cli(*args)``, an exception escaping the command turned into the traceback a user would have seen."""
    try:
        return cli(*args)
    except Exception:  # what `gmdrit` would print as a Python traceback
        return subprocess.CompletedProcess(args, 1, "", traceback.format_exc())


def _run_with_metrics_line(tiny_gmdrit_run, tmp_path: Path, edit) -> Path:
    base, _ = tiny_gmdrit_run
    run = tmp_path / "run"
    shutil.copytree(base / "run", run)
    lines = (run / "metrics.jsonl").read_text().splitlines()
    lines[0] = edit(lines[0])
    (run / "metrics.jsonl").write_text("\n".join(lines) + "\n")
    return run


def _report_leaves_out_or_says_one_line(cli, run: Path, out: Path) -> None:
    proc = _cli(cli, "report", run, "--out", out)
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr[-2000:]
    if proc.returncode != 0:
        assert_one_line_error(proc, "metrics.jsonl")


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
