"""Ninth probe (by someone who did not write the earlier fixes): what a careless user still broke.
A hand-edited or damaged `onnx.json` of an ONNX export (a crop, nz or temperature that is not a number, tasks or
conditions of another shape, domains that are not names) was a ValueError, TypeError, KeyError, IndexError,
AttributeError or MemoryError traceback in `gmdrit translate`. `gmdrit data edges PHOTOS DST --overwrite`, where
DST was a run folder or a folder of runs, deleted the runs with their checkpoints. Misleading: a link given as DST
to `data edges --overwrite` left a hidden `.DST.old-PID` link behind; `export --data/--refit-images/--refit-strength`
without `--refit-prior` were ignored; `model.sample_temperature` (config or sampling.json) took any size, and
translate then named a `--temperature` the user never gave."""

from __future__ import annotations

import json
import os
import shutil

import pytest

from conftest import assert_one_line_error, make_dataset, set_args, tiny_overrides

# -- translate: every onnx.json field translate reads is checked first -----------------------------------------------

DAMAGE = {
    "crop": "abc",  # was ValueError
    "nz": 0,  # was a numpy broadcast ValueError
    "sample_temperature": None,  # was TypeError
    "tasks": [[0, 5]],  # was IndexError
    "conditions": [1, 2],  # was TypeError
    "domains": [1, 2],  # was AttributeError
    "colour_gate": {"domains": [{"domain": 1, "weight": [[1, 2]]}]},  # checked after the graph's nz
}


@pytest.mark.parametrize("key", sorted(DAMAGE))
def test_a_damaged_onnx_json_is_one_line(cli, tmp_path, key):
    pytest.importorskip("onnxruntime")
    from gmdrit_cli.inference.onnx_translate import PRETRAINED_ONNX

    export = tmp_path / "export"
    shutil.copytree(PRETRAINED_ONNX, export)
    meta = json.loads((export / "onnx.json").read_text())
    meta[key] = DAMAGE[key]
    (export / "onnx.json").write_text(json.dumps(meta))
    image = make_dataset(tmp_path / "data", per_domain=1) / "testA" / "0.png"
    proc = cli("translate", image, "--domain", "orange", "--checkpoint", export, "--out", tmp_path / "out")
    assert_one_line_error(proc, "onnx.json is damaged", key, "export the model again")
    assert not (tmp_path / "out").exists()


def test_an_onnx_json_whose_nz_the_graph_does_not_take_is_named(cli, tmp_path):
    pytest.importorskip("onnxruntime")
    from gmdrit_cli.inference.onnx_translate import PRETRAINED_ONNX

    export = tmp_path / "export"
    shutil.copytree(PRETRAINED_ONNX, export)
    meta = json.loads((export / "onnx.json").read_text())
    meta["nz"] += 1  # was a numpy broadcast ValueError
    (export / "onnx.json").write_text(json.dumps(meta))
    image = make_dataset(tmp_path / "data", per_domain=1) / "testA" / "0.png"
    proc = cli("translate", image, "--domain", "orange", "--checkpoint", export, "--out", tmp_path / "out")
    assert_one_line_error(proc, "does not fit its model.onnx", "z ")


# -- data edges --overwrite never deletes a run's checkpoints ----------------------------------------------------------


def test_data_edges_overwrite_never_deletes_a_run_or_a_folder_of_runs(cli, run_dir, tmp_path):
    photos = make_dataset(tmp_path / "photos", per_domain=3)
    runs = tmp_path / "runs"
    shutil.copytree(run_dir, runs / "mine")
    for dst in (runs / "mine", runs):
        proc = cli("data", "edges", photos, dst, "--size", "16", "--overwrite")
        assert_one_line_error(proc, "holds a run's checkpoints", "--overwrite would delete")
    assert (runs / "mine" / "checkpoints" / "latest").is_file()  # the run was deleted, checkpoints and all


def test_data_edges_overwrite_of_a_link_leaves_no_hidden_link(cli, tmp_path):
    photos = make_dataset(tmp_path / "photos", per_domain=3)
    target = tmp_path / "target"
    target.mkdir()
    (target / "theirs.txt").write_text("kept")
    (tmp_path / "link").symlink_to(target)
    proc = cli("data", "edges", photos, tmp_path / "link", "--size", "16", "--overwrite")
    assert proc.returncode == 0, proc.stderr
    assert (target / "theirs.txt").read_text() == "kept"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".")]  # was .link.old-PID


# -- export: the refit options without --refit-prior; the sampling temperature is bounded everywhere ----------------


def test_refit_options_without_refit_prior_are_refused_not_ignored(cli, run_dir, tmp_path):
    for option, value in (("--data", tmp_path), ("--refit-images", "3"), ("--refit-strength", "0.5")):
        proc = cli("export", run_dir, "--out", tmp_path / "out", option, value)
        assert_one_line_error(proc, f"{option} applies to --refit-prior only")
        assert not (tmp_path / "out").exists()


def test_a_sample_temperature_past_the_bound_is_refused_where_it_is_set(cli, tiny_data, tmp_path, run_dir):
    args = set_args(tiny_overrides(tiny_data, 1) + ["model.sample_temperature=1e308"])
    proc = cli("train", "--preset", "quickstart", "--run-dir", tmp_path / "run", *args)
    assert_one_line_error(proc, "model.sample_temperature", "<= 100")
    run = tmp_path / "copy"
    shutil.copytree(run_dir, run)
    (run / "sampling.json").write_text(json.dumps({"sample_temperature": 1e308}))
    image = make_dataset(tmp_path / "data", per_domain=1) / "testA" / "0.png"
    proc = cli("translate", image, "--domain", "orange", "--run", run, "--out", tmp_path / "out")
    assert_one_line_error(proc, "sampling.json is damaged", "at most 100")  # named --temperature, never given


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="named pipes")
def test_a_pipe_given_as_sweep_is_named_not_waited_on(cli, run_dir, tmp_path):
    os.mkfifo(tmp_path / "sweep.json")  # was a wait for a writer that never comes
    proc = cli("export", run_dir, "--out", tmp_path / "out", "--temperature", "1", "--sweep", tmp_path / "sweep.json")
    assert_one_line_error(proc, "is not a regular file")
