"""Issue 25: what a careless user does to every command gives one line and a non-zero exit (or the right output)
and loses nothing. One test per class of case: files gmdrit must not replace, eval folders, limits, finite
numbers, the time budget, damaged run-folder files, OS errors, permissions, torchrun ranks, signals.

The commands run in this process (``cli``), so that a case costs no torch import."""

from __future__ import annotations

import json
import math
import os
import shutil
import signal
from pathlib import Path

import pytest
from PIL import Image

from conftest import assert_one_line_error, make_dataset, tiny_overrides
from gmdrit_cli import outputs
from gmdrit_cli.config.schema import ConfigError, load_config, parse_duration
from gmdrit_cli.errors import CheckpointError, GmdritError


def image(tmp_path: Path) -> Path:
    path = tmp_path / "good.png"
    Image.new("RGB", (40, 30), (200, 90, 10)).save(path)
    return path


# -- files gmdrit writes ----------------------------------------------------------------------------


def test_export_never_writes_into_checkpoints_nor_replaces_without_force(cli, run_dir, tmp_path):
    ckpt = next((run_dir / "checkpoints").glob("iter_*"))
    before = (ckpt / "model.safetensors").read_bytes()
    assert_one_line_error(cli("export", run_dir, "--out", ckpt), "checkpoints", "choose another --out")
    assert_one_line_error(cli("export", run_dir, "--out", run_dir / "checkpoints"), "checkpoints")
    assert_one_line_error(cli("export", run_dir, "--out", run_dir), "run folder")
    assert (ckpt / "model.safetensors").read_bytes() == before
    assert cli("export", run_dir, "--out", tmp_path / "exp").returncode == 0
    first = (tmp_path / "exp" / "model.safetensors").read_bytes()
    assert_one_line_error(cli("export", run_dir, "--int8", "--out", tmp_path / "exp"), "already exists", "--force")
    assert (tmp_path / "exp" / "model.safetensors").read_bytes() == first
    assert cli("export", run_dir, "--int8", "--out", tmp_path / "exp", "--force").returncode == 0
    assert (tmp_path / "exp" / "model.safetensors").read_bytes() != first
    for command in (
        ("translate", image(tmp_path), "--domain", "orange"),
        ("interpolate", image(tmp_path), "--domain", "orange"),
    ):
        assert_one_line_error(cli(*command, "--run", run_dir, "--out", ckpt / "x"), "checkpoints")
    assert_one_line_error(
        cli("train", "--preset", "mdmm_baseline", "--run-dir", run_dir / "checkpoints"), "checkpoints"
    )


def test_a_second_eval_goes_to_a_new_folder_and_keeps_the_first(cli, run_dir, tmp_path):
    shared = (
        "--metrics",
        "ndb,jsd",
        "--ndb-bins",
        "2",
        "--samples-per-input",
        "1",
        "--no-reference",
        "--device",
        "cpu",
    )
    assert cli("eval", run_dir, *shared, "--out", tmp_path / "ev").returncode == 0
    first = (tmp_path / "ev" / "eval.json").read_text()
    proc = cli("eval", run_dir, "--metrics", "jsd", *shared[2:], "--out", tmp_path / "ev")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "ev" / "eval.json").read_text() == first  # the first eval's results are all there
    second = json.loads((tmp_path / "ev-2" / "eval.json").read_text())
    assert second["settings"]["metrics"] == ["jsd"] and f"{tmp_path / 'ev-2'}" in proc.stdout
    assert outputs.numbered_folder(tmp_path / "ev") == tmp_path / "ev-3"


def test_download_keeps_an_archive_it_did_not_fetch_and_checks_url_and_folder(cli, tmp_path):
    own = tmp_path / "man" / "facades.zip"
    own.parent.mkdir()
    own.write_bytes(b"the user's own archive")
    proc = cli("data", "download", "facades", "--to", own.parent, "--url", "http://127.0.0.1:9/f.zip")
    assert_one_line_error(proc, "was already there", "left as it was")
    assert own.read_bytes() == b"the user's own archive"
    for url in ("", "notaurl", "http://[::1", "ftp://host/x.zip", "http://host:port/x.zip"):
        assert_one_line_error(cli("data", "download", "facades", "--to", tmp_path / "d", "--url", url), "--url")
    (tmp_path / "afile").write_text("x")
    assert_one_line_error(cli("data", "download", "facades", "--to", tmp_path / "afile"), "is a file")
    assert_one_line_error(cli("data", "download", "facades", "--to", tmp_path, "--timeout", "inf"), "--timeout")


# -- limits and finite numbers ----------------------------------------------------------------------


def test_size_like_options_have_limits_with_reasons(cli, run_dir, tmp_path):
    good = image(tmp_path)
    model = ("--run", run_dir, "--out", tmp_path / "o")
    cases = [
        (("translate", good, "--domain", "orange", "--size", "100000", *model), "--size 100000", "memory"),
        (("translate", good, "--domain", "orange", "--samples", "100000", *model), "--samples", "at most"),
        (("interpolate", good, "--domain", "orange", "--steps", "100000", *model), "--steps", "frame"),
        (("interpolate", good, "--domain", "orange", "--fps", "inf", *model), "--fps", "finite"),
        (("interpolate", good, "--domain", "orange", "--loop", "100000", *model), "--loop", "16 bits"),
        (("data", "edges", good.parent, tmp_path / "e1", "--size", "64", "--sigma", "1e6"), "--sigma", "quarter"),
        (("data", "edges", good.parent, tmp_path / "e2", "--size", "64", "--sigma", "inf"), "--sigma", "finite"),
        (("data", "edges", good.parent, tmp_path / "e3", "--size", "100000"), "--size", "square"),
        (("data", "edges", good.parent, tmp_path / "e4", "--seed", "-3"), "--seed -3"),
        (("translate", good, "--domain", "orange", "--seed", str(2**70), *model), "--seed", "32-bit"),
    ]
    for temperature in ("inf", "nan", "1e300"):
        cases.append(
            (("translate", good, "--domain", "orange", "--temperature", temperature, *model), "--temperature", "")
        )
    for args, *fragments in cases:
        assert_one_line_error(cli(*args), *fragments)
    assert not (tmp_path / "o").exists() and not list(tmp_path.glob(".e*"))


def test_eval_numbers_are_finite_and_bounded():
    from gmdrit_cli.evaluation.evaluate import EvalOptions, check_eval_numbers

    for bad in (
        {"temperature": math.inf},
        {"temperature": math.nan},
        {"samples_per_input": 100000},
        {"ndb_alpha": math.nan},
        {"seed": -5},
        {"ndb_size": 100000},
        {"kid_subsets": 10**8},
    ):
        with pytest.raises(GmdritError):
            check_eval_numbers(EvalOptions(run=None, **{"samples_per_input": 2, **bad}))


def test_config_refuses_nan_sections_as_values_empty_presets_and_folders(tmp_path):
    for value in ("nan", ".inf", "-inf"):
        with pytest.raises(ConfigError, match="optim.lr_eg: .* not a finite number"):
            load_config("quickstart", [f"optim.lr_eg={value}"])
    preset = tmp_path / "p.yaml"
    preset.write_text("train: 5\n")
    with pytest.raises(ConfigError, match=r"train: a section, it takes keys \(e.g. train.max_iters"):
        load_config(str(preset))
    preset.write_text("# nothing yet\n")
    with pytest.raises(ConfigError, match="is empty"):
        load_config(str(preset))
    with pytest.raises(ConfigError, match="is a folder"):
        load_config(str(tmp_path))


# -- the time budget belongs to one invocation -------------------------------------------------------


def test_time_budget_reads_hours_and_minutes_and_is_never_stored(run_dir, tmp_path):
    assert parse_duration("3h50") == 3 * 3600 + 50 * 60 and parse_duration("0h8") == 8 * 60
    assert parse_duration("1m30") == 90 and parse_duration("3600") == 3600
    for text in ("0", "0s", "h"):
        with pytest.raises(ValueError):
            parse_duration(text)
    from gmdrit_cli.training.checkpoint import find_checkpoint
    from gmdrit_cli.training.trainer import open_run, resume_run

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    cfg = load_config(str(copy / "config.yaml"), ["train.max_iters=3", "train.time_budget=1h"])
    run = open_run(cfg, copy)
    assert run.time_budget == 3600
    run.fit()
    folder, state = find_checkpoint(copy)
    assert state["config"]["train"]["time_budget"] == ""
    assert "time_budget: ''" in (copy / "config.yaml").read_text()
    state["config"]["train"]["time_budget"] = "0h1"  # as an older version stored it
    (folder / "state.json").write_text(json.dumps(state))
    assert resume_run(copy, ["train.max_iters=4"]).time_budget is None
    assert resume_run(copy, ["train.max_iters=4", "train.time_budget=2m"]).time_budget == 120


# -- damaged run-folder files ------------------------------------------------------------------------


@pytest.mark.parametrize("content", ["null", "", "[1,2]", '{"host": "h", "pid": 1, "started": "x"}', "\xff"])
def test_a_damaged_lock_is_damage_with_one_line(tmp_path, content):
    from gmdrit_cli.training.runlock import RunLock

    lock = tmp_path / ".lock"
    lock.write_text(content, encoding="latin-1")
    os.utime(lock, (0, 0))
    with pytest.raises(CheckpointError, match=r"lock file .*\.lock is damaged .*delete that file"):
        RunLock(tmp_path).acquire()
    assert lock.read_text(encoding="latin-1") == content  # damage is reported, not repaired silently


def test_a_locked_folder_is_refused_before_anything_is_printed(cli, run_dir, tmp_path):
    from gmdrit_cli.training.runlock import RunLock

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    with RunLock(copy):
        proc = cli("resume", copy)
    assert_one_line_error(proc, "is being written by")
    assert proc.stdout == ""


@pytest.mark.slow  # three reports drawn
def test_report_treats_damaged_files_as_damage(cli, run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    with open(copy / "metrics.jsonl", "ab") as f:
        f.write(b'{"iter": 9\xff\xfe}\n')
    (copy / "config.yaml").write_text("model: [unclosed\n")
    for name, content in (
        ("a", '{"tasks": 5}'),
        ("b", "[1, 2, 3]"),
        ("c", '{"tasks": [{"x": 1}], "settings": {}, "model": {}}'),
    ):
        (copy / "eval" / name).mkdir(parents=True)
        (copy / "eval" / name / "eval.json").write_text(content)
    proc = cli("report", copy, "--out", tmp_path / "rep")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr and (tmp_path / "rep" / "index.html").is_file()
    for fragment in ("1 damaged line", "config.yaml: not a YAML mapping", "a/eval.json", "b/eval.json", "c/eval.json"):
        assert fragment in proc.stdout
    (tmp_path / "file.html").write_text("x")
    assert_one_line_error(cli("report", copy, "--out", tmp_path / "file.html"), "is a file")
    (tmp_path / "site").mkdir()
    (tmp_path / "site" / "index.html").write_text("<html>my page</html>")
    assert_one_line_error(cli("report", copy, "--out", tmp_path / "site"), "not a gmdrit report")
    assert (tmp_path / "site" / "index.html").read_text() == "<html>my page</html>"
    assert cli("report", copy, "--out", tmp_path / "rep").returncode == 0  # its own earlier page: replaced


def test_every_checkpoint_damaged_names_the_train_command(cli, run_dir, tmp_path):
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    for state in copy.glob("checkpoints/iter_*/state.json"):
        state.write_text("[1]")
    assert_one_line_error(
        cli("translate", image(tmp_path), "--domain", "orange", "--run", copy), "gmdrit train --fresh"
    )


def test_weights_that_are_not_a_pytorch_file_are_named_so(tmp_path):
    from gmdrit_cli.evaluation.metrics.fid import WeightsError, load_state_dict_safely

    text = tmp_path / "text.jpg"
    text.write_text("hello")
    with pytest.raises(WeightsError, match="is not a PyTorch weights file"):
        load_state_dict_safely(text, "AlexNet", "--lpips-backbone-weights")


def test_reconstruction_metrics_refuse_a_one_direction_model():
    from types import SimpleNamespace

    from gmdrit_cli.evaluation.metrics import MetricError
    from gmdrit_cli.evaluation.metrics.eval_reconstruction import ReconstructionScores
    from gmdrit_cli.families.base import Capabilities

    model = SimpleNamespace(
        capabilities=Capabilities(translation_tasks=((0, 1),)),
        cfg=SimpleNamespace(model=SimpleNamespace(family="bicyclegan")),
    )
    ctx = SimpleNamespace(model=model, domains=["edges", "apples"], options=None)
    with pytest.raises(MetricError, match="translates into 'apples' only"):
        ReconstructionScores(ctx, ["recon_mse"])


# -- OS errors, permissions, ranks, signals -----------------------------------------------------------


def test_os_errors_are_one_line_naming_the_path(cli, run_dir, tmp_path, monkeypatch):
    from safetensors import SafetensorError

    from gmdrit_cli.training import checkpoint

    (tmp_path / "afile").write_text("x")
    assert_one_line_error(cli("train", "--preset", "mdmm_baseline", "--run-dir", tmp_path / "afile"), "is a file")
    assert_one_line_error(
        cli("translate", image(tmp_path), "--domain", "orange", "--run", run_dir, "--out", tmp_path / "afile"),
        "is a file",
    )
    photos = tmp_path / "photos"  # not tmp_path itself: a DST inside the source folder is refused first
    photos.mkdir()
    image(photos)
    assert_one_line_error(cli("data", "edges", photos, tmp_path / "afile" / "x"), "cannot create", "afile")

    def full(*args, **kwargs):
        raise SafetensorError(
            'Error while serializing: IoError(Os { code: 28, kind: StorageFull, message: "No space left on device" })'
        )

    monkeypatch.setattr(checkpoint, "save_file", full)
    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    assert_one_line_error(
        cli("resume", copy, "--set", "train.max_iters=3"),
        "could not write checkpoint",
        "no space left",
        "previous checkpoint is intact",
    )
    assert not (copy / ".lock").exists()
    monkeypatch.setattr(outputs, "_writable", lambda folder: False)  # a read-only folder (root may write anyway)
    assert_one_line_error(
        cli("translate", image(tmp_path), "--domain", "orange", "--run", run_dir, "--out", tmp_path / "ro"),
        "permission denied",
        str(tmp_path / "ro"),
    )


def test_permissions_follow_the_umask(run_dir, tmp_path):
    from gmdrit_cli.data.edges import make_edges_dataset
    from gmdrit_cli.training.trainer import resume_run

    old = os.umask(0o002)
    try:
        copy = tmp_path / "run"
        shutil.copytree(run_dir, copy)
        resume_run(copy, ["train.max_iters=3"]).fit()
        files = list((copy / "checkpoints" / "iter_0000003").iterdir())
        assert files and all(f.stat().st_mode & 0o777 == 0o664 for f in files)
        folders = [tmp_path / "src"]
        folders[0].mkdir()
        for i in range(3):
            Image.new("RGB", (20, 20), (40 * i, 90, 10)).save(folders[0] / f"{i}.png")
        make_edges_dataset(folders[0], tmp_path / "edges", size=16, val=0.0, test=0.0)
        assert (tmp_path / "edges").stat().st_mode & 0o777 == 0o775
    finally:
        os.umask(old)


def test_under_torchrun_only_rank_0_prints_an_error(cli, monkeypatch):
    from gmdrit_cli.errors import speaks
    from gmdrit_cli.training.distributed import ProcessSetupError

    monkeypatch.setenv("RANK", "1")
    monkeypatch.setenv("WORLD_SIZE", "2")  # as torchrun sets both (RANK alone is no group: it speaks)
    proc = cli("train", "--set", "optim.lr_eg=nan", "--dry-run")
    assert proc.returncode == 1 and proc.stderr == ""
    monkeypatch.setenv("RANK", "0")
    assert_one_line_error(cli("train", "--set", "optim.lr_eg=nan", "--dry-run"), "optim.lr_eg")
    assert speaks(ProcessSetupError("process 1 ..."), 1) and not speaks(GmdritError("x"), 1)


def test_sigterm_removes_temporary_files(tmp_path):
    """The CLI's SIGTERM handler unwinds like an exception: the half-built dataset folder goes."""
    from gmdrit_cli.cli.main import _terminate
    from gmdrit_cli.data.edges import make_edges_dataset

    src = tmp_path / "src"
    src.mkdir()
    for i in range(4):
        Image.new("RGB", (20, 20), (40 * i, 90, 10)).save(src / f"{i}.png")
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        with pytest.raises(SystemExit) as stopped:
            make_edges_dataset(
                src, tmp_path / "dst", size=16, progress=lambda done, total: os.kill(os.getpid(), signal.SIGTERM)
            )
    finally:
        signal.signal(signal.SIGTERM, previous)
    assert stopped.value.code == 128 + signal.SIGTERM
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_translating_with_a_vae_stopped_in_phase_1_warns(cli, tmp_path):
    from gmdrit_cli.training.trainer import train

    root = make_dataset(tmp_path / "data")
    overrides = tiny_overrides(root, 3) + ["vae.epochs_shared=2", "vae.epochs_decoder=2", "data.domains=[apple,orange]"]
    train(load_config("vae_quickstart", overrides), tmp_path / "vae")
    proc = cli("translate", image(tmp_path), "--domain", "orange", "--run", tmp_path / "vae", "--out", tmp_path / "t")
    assert proc.returncode == 0, proc.stderr
    assert "note: " in proc.stderr and "decoder_y (into 'orange') is not trained yet" in proc.stderr
