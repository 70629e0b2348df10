"""Issue 25, eighth probe (by someone who did not write the earlier fixes): what a careless user still broke.
`gmdrit train --run-dir PROJECT`, where PROJECT is another project that keeps its own `checkpoints/` and `samples/`
folders beside its `config.yaml` and `metrics.jsonl`, took the folder for a gmdrit run (those two folders were the
whole test) and replaced both files. `gmdrit report RUN` whose `checkpoints/latest` pointer held bytes that are not
UTF-8 was a UnicodeDecodeError traceback. Misleading: a folder or a pipe named like a sample grid
(`samples/iter_N.png`) stopped the whole report instead of being left out with a note."""

from __future__ import annotations

import os
import shutil

import pytest

from conftest import assert_one_line_error, set_args, tiny_overrides

# -- train: checkpoints/ and samples/ alone do not make a folder a gmdrit run ----------------------------------------


def test_train_never_replaces_the_config_of_a_project_with_its_own_checkpoints_and_samples(cli, tiny_data, tmp_path):
    project = tmp_path / "project"
    (project / "checkpoints").mkdir(parents=True)
    (project / "samples").mkdir()
    (project / "checkpoints" / "model_epoch10.pt").write_bytes(b"their weights")
    (project / "config.yaml").write_text("lr: 0.1  # their project\n")
    (project / "metrics.jsonl").write_text('{"their": 1}\n')
    proc = cli("train", "--preset", "quickstart", "--run-dir", project, *set_args(tiny_overrides(tiny_data, 1)))
    assert_one_line_error(proc, "is not a gmdrit run folder", "config.yaml", "metrics.jsonl")
    assert (project / "config.yaml").read_text() == "lr: 0.1  # their project\n"  # was the run's config
    assert (project / "metrics.jsonl").read_text() == '{"their": 1}\n'  # was the run's metrics
    assert sorted(p.name for p in project.iterdir()) == ["checkpoints", "config.yaml", "metrics.jsonl", "samples"]


def test_a_gmdrit_run_stopped_before_its_first_checkpoint_still_continues(cli, tiny_data, tmp_path):
    run = tmp_path / "run"
    args = ("train", "--preset", "quickstart", "--run-dir", run, *set_args(tiny_overrides(tiny_data, 1)))
    assert cli(*args).returncode == 0
    shutil.rmtree(run / "checkpoints")  # as if stopped before it saved: its config.yaml and metrics are gmdrit's
    (run / "checkpoints").mkdir()
    proc = cli(*args)
    assert proc.returncode == 0, proc.stderr
    assert (run / "checkpoints" / "latest").is_file()


# -- report: a damaged pointer or an odd sample entry is left out, not a traceback or a stop -------------------------


def test_report_of_a_run_whose_latest_pointer_is_not_utf8_marks_no_checkpoint(cli, run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "checkpoints" / "latest").write_bytes(b"\xff\xfe\x00garbage")  # was UnicodeDecodeError
    proc = cli("report", run, "--out", tmp_path / "page")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    assert (tmp_path / "page" / "index.html").is_file()


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_report_leaves_out_a_folder_or_pipe_named_like_a_sample_grid(cli, run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "samples").mkdir(exist_ok=True)
    (run / "samples" / "iter_0000001.png").mkdir()  # was "it is a folder; choose another path", no report
    os.mkfifo(run / "samples" / "iter_0000003.png")
    proc = cli("report", run, "--out", tmp_path / "page")
    assert proc.returncode == 0, proc.stderr
    assert "iter_0000001.png is not a file: left out of the sample grids" in proc.stdout
    assert "iter_0000003.png is not a file" in proc.stdout
    assert (tmp_path / "page" / "index.html").is_file()
