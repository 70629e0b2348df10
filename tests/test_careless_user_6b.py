"""Issue 25, what the fifth and sixth probes left misleading, fixed after them.

`resume RUN/checkpoints/latest` said the run had "no checkpoint to resume", `mixture --checkpoint latest` "no such
checkpoint"; `data download --url file:///a/folder` blamed the network and left the empty --to behind; a folder or a
pipe where a file goes was named by gmdrit's temporary file (`.model.safetensors.tmp-479`); `data cache` printed
shutil's raw list of error tuples for a named pipe, and said the cache folder "lies inside the data folder" when the
copy would have been the data folder itself; `train` into a folder holding someone's `samples/` moved their file
aside; `export --meta format=x` replaced the key that marks an export; `optim.lr_eg=1e308` and
`train.max_iters=10**12` were accepted; `train --json` without --dry-run was ignored and trained; a folder named
metrics.jsonl stopped the whole report; a folder named config.yaml beside an export was "no config.yaml"."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

import gmdrit_cli
from conftest import assert_one_line_error
from gmdrit_cli import atomic
from gmdrit_cli.config.schema import load_config
from gmdrit_cli.errors import ConfigError


def test_latest_names_the_newest_checkpoint_for_resume_and_mixture(cli, run_dir, tmp_path):
    from gmdrit_cli.families.gmdrit.mixture_report import _pick_checkpoint
    from gmdrit_cli.training.checkpoint import find_checkpoint

    assert _pick_checkpoint(run_dir, "latest") == find_checkpoint(run_dir)[0]
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    proc = cli("resume", run / "checkpoints" / "latest", "--set", "train.max_iters=3")
    assert proc.returncode == 0, proc.stderr
    assert (run / "checkpoints" / "iter_0000003" / "state.json").is_file()


def test_a_file_url_that_is_a_folder_is_not_a_network_problem_and_leaves_no_folder(cli, tmp_path):
    to = tmp_path / "new" / "data"
    proc = cli("data", "download", "facades", "--to", to, "--url", tmp_path.as_uri())
    assert_one_line_error(proc, "cannot read", "the archive file itself")
    assert "network" not in proc.stderr
    assert not (tmp_path / "new").exists()  # both folders it made, empty, are gone


def test_a_folder_where_a_file_goes_is_named_not_the_temporary_file(tmp_path):
    (tmp_path / "model.safetensors").mkdir()
    with pytest.raises(OSError) as failed:
        atomic.write_text(tmp_path / "model.safetensors", "x")
    assert failed.value.filename == str(tmp_path / "model.safetensors")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model.safetensors"]  # no temporary file left


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_data_cache_names_a_pipe_in_one_line_and_refuses_caching_onto_the_source(cli, tmp_path):
    src = tmp_path / "src"
    (src / "trainA").mkdir(parents=True)
    (src / "trainA" / "a.jpg").write_bytes(b"x")
    os.mkfifo(src / "trainA" / "pipe.jpg")
    proc = cli("data", "cache", src, "--to", tmp_path / "cache")
    assert_one_line_error(proc, "pipe.jpg", "is a named pipe", "not a plain file")
    assert "[(" not in proc.stderr
    (src / "trainA" / "pipe.jpg").unlink()
    proc = cli("data", "cache", src, "--to", tmp_path)
    assert_one_line_error(proc, "the data folder itself")
    assert (src / "trainA" / "a.jpg").read_bytes() == b"x"


def test_train_never_moves_the_samples_of_a_folder_that_is_not_a_run(cli, tiny_data, tmp_path):
    mine = tmp_path / "project" / "samples" / "iter_0000002.png"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my picture")
    proc = cli("train", "--preset", "quickstart", "--run-dir", tmp_path / "project", "--set", f"data.root={tiny_data}")
    assert_one_line_error(proc, "is not a gmdrit run folder", "samples/")
    assert mine.read_bytes() == b"my picture"
    assert sorted(p.name for p in (tmp_path / "project").iterdir()) == ["samples"]


def test_export_keeps_its_own_metadata_keys(cli, tmp_path):
    pretrained = Path(gmdrit_cli.__file__).parent / "pretrained" / "apple2orange"
    proc = cli("export", pretrained, "--out", tmp_path / "x", "--meta", "format=mine")
    assert_one_line_error(proc, "metadata key 'format'", "another key")
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "override, bound",
    [("optim.lr_eg=1e308", "<= 1 (Adam"), ("optim.lr_dis=2", "<= 1"), ("train.max_iters=1000000000000", "9,999,999")],
)
def test_learning_rates_and_iterations_have_bounds_with_reasons(override, bound):
    with pytest.raises(ConfigError, match=bound.replace("(", r"\(")):
        load_config("quickstart", [override])


def test_train_json_without_dry_run_is_refused_before_anything_trains(cli, tmp_path):
    proc = cli("train", "--json", "--run-dir", tmp_path / "run")  # was ignored: a whole training started
    assert_one_line_error(proc, "--json", "--dry-run")
    assert not (tmp_path / "run").exists()


def test_report_of_a_run_whose_metrics_file_is_a_folder_leaves_the_losses_out(cli, run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "metrics.jsonl").unlink()
    (run / "metrics.jsonl").mkdir()  # was "cannot write ... choose another path" for the whole report
    proc = cli("report", run, "--out", tmp_path / "page")
    assert proc.returncode == 0, proc.stderr
    assert "metrics.jsonl is not a file" in proc.stdout
    assert (tmp_path / "page" / "index.html").is_file()


def test_an_export_whose_config_is_a_folder_is_named_so(cli, tmp_path):
    export = tmp_path / "export"
    export.mkdir()
    shutil.copy(Path(gmdrit_cli.__file__).parent / "pretrained" / "apple2orange" / "model.safetensors", export)
    (export / "config.yaml").mkdir()  # was "has no config.yaml beside it"
    proc = cli("export", export, "--out", tmp_path / "again")
    assert_one_line_error(proc, "config.yaml is not a file")
