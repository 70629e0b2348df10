"""Twelfth probe (multi-step stories by someone who did not write the earlier fixes): what a careless user still broke.

A run whose `tensorboard/` folder cannot take a new event file (a full disk, a folder made read-only, a link to a
place nothing can be written) printed a Python traceback from TensorBoard's writer thread ("Exception in thread
Thread-2: Traceback ... PermissionError") above gmdrit's own one-line error, at `gmdrit resume` (and `train`).
`gmdrit app --host ::1` (or `--host ::`, an IPv6 address) was an httpx.InvalidURL traceback out of Gradio's launch
(gmdrit's own check of the address passed it, and it printed the page as `http://::1:7860/`).
Two `gmdrit export` of different models into one `--out` at once (a loop over runs with `&`, two terminals) both
passed the "--out already holds a model, pass --force" check before either wrote: every one printed "wrote
OUT/model.safetensors and OUT/config.yaml", the last writer's weights replaced the others' without --force, and the
folder could end up with one run's weights beside another run's config.yaml (seen: run A's model.safetensors,
run B's config.yaml). Two `gmdrit data edges SRC DST` at once (or anything written into DST while one runs) likewise:
the later one moved the finished dataset aside and deleted it without --overwrite, both saying they wrote DST.
Misleading, fixed after the probe: resume's pruning took a user's `checkpoints/iter_00000008`; `report RUN RUN`
showed one run twice; `GMDRIT_CACHE=' '` made a folder named ' '; `translate DIR --out DIR` run twice translated
its own outputs; `eval --split val` on a dataset changed since training evaluated training images as validation;
a command stopped by SIGTERM said nothing.
"""

from __future__ import annotations

import importlib.util
import json
import shutil
import socket
import subprocess
import sys
import time

import pytest

from conftest import assert_one_line_error, make_dataset, run_gmdrit, start_gmdrit


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


def _export_family(folder):
    """(family in config.yaml, family and iteration in the weights' metadata) of an export folder."""
    import yaml
    from safetensors import safe_open

    cfg = yaml.safe_load((folder / "config.yaml").read_text())
    with safe_open(str(folder / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
    return cfg["model"]["family"], meta["family"]


def test_two_exports_into_one_folder_at_once_never_mix(cli, run_dir, tiny_gmdrit_run, tmp_path, monkeypatch):
    """The second export starts while the first has checked --out but not yet written into it."""
    from gmdrit_cli.inference import model_files

    build = model_files._build_empty
    second: list = []
    out = tmp_path / "exported"

    def build_then_export_another(*args, **kwargs):
        if not second:  # the first export has checked --out: a second one (another run) starts now
            second.append(None)
            second[0] = cli("export", tiny_gmdrit_run[0] / "run", "--out", out)
        return build(*args, **kwargs)

    monkeypatch.setattr(model_files, "_build_empty", build_then_export_another)
    first = cli("export", run_dir, "--out", out)
    said_wrote = [(r, family) for r, family in ((first, "mdmm"), (second[0], "gmdrit")) if r.returncode == 0]
    assert said_wrote, first.stderr + second[0].stderr
    # every export that said it wrote OUT is what OUT holds (was: both said so; mdmm weights, gmdrit config.yaml)
    for proc, family in said_wrote:
        assert f"wrote {out / 'model.safetensors'}" in proc.stdout
        assert _export_family(out) == (family, family), (first.stdout, second[0].stdout)


def test_two_edges_datasets_into_one_folder_at_once_keep_the_first(cli, tmp_path, monkeypatch):
    """The second `data edges` finishes while the first, which found DST empty, is still drawing edges."""
    from gmdrit_cli.data import edges

    sources = {"a": make_dataset(tmp_path / "a", per_domain=2), "b": make_dataset(tmp_path / "b", per_domain=3)}
    pair = edges.edges_pair
    second: list = []
    dst = tmp_path / "pairs"

    def pair_then_run_another(*args, **kwargs):
        if not second:  # the first found DST empty and is writing its pairs: a second one starts now
            second.append(None)
            second[0] = cli("data", "edges", sources["b"], dst, "--size", "32")
        return pair(*args, **kwargs)

    monkeypatch.setattr(edges, "edges_pair", pair_then_run_another)
    first = cli("data", "edges", sources["a"], dst, "--size", "32")
    said_wrote = [(r, name) for r, name in ((first, "a"), (second[0], "b")) if r.returncode == 0]
    assert said_wrote, first.stderr + second[0].stderr
    # every command that said it wrote DST is what DST holds (was: both said so; the second's dataset deleted)
    for proc, name in said_wrote:
        assert f"into {dst}" in proc.stdout
        assert json.loads((dst / "edges.json").read_text())["source"] == str(sources[name]), (
            first.stdout,
            second[0].stdout,
        )


# -- misleading items of the twelfth probe, fixed after it ------------------------------------------------------------


def test_a_folder_named_like_a_checkpoint_but_not_by_gmdrit_survives_pruning(cli, run_dir, tmp_path):
    """Resume's pruning deleted a user's `checkpoints/iter_00000008` (8 digits: a name gmdrit never writes)."""
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    mine = run / "checkpoints" / "iter_00000008"
    mine.mkdir()
    (mine / "notes.txt").write_text("mine")
    proc = cli("resume", run, "--set", "train.max_iters=6", "--set", "train.keep_last=1", "--set", "train.save_every=1")
    assert proc.returncode == 0, proc.stderr
    assert (mine / "notes.txt").read_text() == "mine"
    assert (run / "checkpoints" / "iter_0000006").is_dir() and not (run / "checkpoints" / "iter_0000003").exists()


def test_a_run_given_twice_is_reported_once(run_dir, tmp_path):
    """`gmdrit report runs/g1 runs/g1` showed the same run twice ("2 runs")."""
    from gmdrit_cli.reporting.report import build_report

    result = build_report([run_dir, f"{run_dir}/", run_dir / ".." / run_dir.name], tmp_path / "report")
    assert len(result.runs) == 1


def test_a_blank_gmdrit_cache_is_unset(monkeypatch):
    """`GMDRIT_CACHE=' '` made a folder named ' ' in the current folder for the domain classifier."""
    from pathlib import Path

    from gmdrit_cli.evaluation.metrics.domain_classifier import cache_root

    monkeypatch.setenv("GMDRIT_CACHE", " ")
    assert cache_root() == Path.home() / ".cache" / "gmdrit" / "domain_classifier"


def test_translating_a_folder_into_itself_twice_skips_its_own_outputs(cli, run_dir, tmp_path):
    """`translate DIR --out DIR` run twice translated its own earlier outputs (x_to_orange_1_to_orange_1.png)."""
    folder = make_dataset(tmp_path / "data", per_domain=2, splits=("test",)) / "testA"
    for _ in range(2):
        proc = cli("translate", folder, "--domain", "orange", "--run", run_dir, "--samples", "1", "--out", folder)
        assert proc.returncode == 0, proc.stderr
    names = sorted(p.name for p in folder.iterdir())
    assert not [n for n in names if "_to_orange_1_to_" in n], names
    assert sorted(n for n in names if "_to_" not in n) == ["0.png", "1.png"]


def test_a_validation_split_that_is_not_the_runs_is_refused(cli, tmp_path):
    """`eval RUN --split val --data COPY` (a validation file deleted from the copy) evaluated a training image as
    validation: the split is chosen by file name among the files present, and splits.json was not checked."""
    from conftest import tiny_overrides
    from gmdrit_cli.config.schema import load_config
    from gmdrit_cli.training.trainer import train

    root = make_dataset(tmp_path / "data", per_domain=6)
    train(load_config("reduced_res", tiny_overrides(root, 1) + ["data.val_fraction=0.34"]), tmp_path / "run")
    copy = tmp_path / "copy"
    shutil.copytree(root, copy)
    held = json.loads((tmp_path / "run" / "splits.json").read_text())["domains"]["apple"]["val_files"]
    args = ("--split", "val", "--metrics", "checkerboard", "--samples-per-input", "1", "--device", "cpu")
    proc = cli("eval", tmp_path / "run", "--data", copy, *args, "--out", tmp_path / "ok")
    assert proc.returncode == 0, proc.stderr  # the same files: the run's split
    (copy / "trainA" / held[0]).unlink()
    proc = cli("eval", tmp_path / "run", "--data", copy, *args, "--out", tmp_path / "changed")
    assert_one_line_error(proc, "training images of", "dataset changed")
    assert not (tmp_path / "changed").exists()


def test_a_command_stopped_by_sigterm_says_so(monkeypatch, capsys):
    """`eval` stopped by SIGTERM after start-up printed nothing at all (exit 143, no word why)."""
    import signal

    from gmdrit_cli.cli import main

    monkeypatch.setattr(main, "app", lambda: main._terminate(signal.SIGTERM, None))
    monkeypatch.setattr(sys, "argv", ["gmdrit", "eval"])
    previous = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        assert main._run_app() == 128 + signal.SIGTERM
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
    assert f"stopped by signal {int(signal.SIGTERM)}" in " ".join(capsys.readouterr().err.split())
