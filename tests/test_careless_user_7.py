"""Issue 25, seventh probe (by someone who did not write the earlier fixes): what a careless user still broke. A YAML
value that PyYAML reads as a date that does not exist (`--set data.root=2024-13-45`, a `seed:` written as a date in
a preset), an integer of more than 4,300 digits, or an explicit tag on a value it does not fit (`!!timestamp x`) was
a traceback (ValueError, AttributeError) out of the config reader. `gmdrit export X --out X --force` exported a
model onto itself: the package's int8 pretrained model became a 14 MB fp32 copy without its `iteration_chosen` and
training command. A JSON file nested deeper than Python's recursion limit (a damaged or hand-made state.json,
sampling.json, onnx.json, metrics.jsonl line, eval.json, lock or cache record) was a RecursionError traceback
wherever it was read. The app's request function, which promises "never an exception", raised TypeError or
ValueError on a number field left empty (None), NaN or text (seed, samples, temperature, component, steps). `data
edges SRC SRC/x` wrote its pairs (and its temporary folder) among the user's photos. `gmdrit resume
RUN/after-iter_N` (the checkpoints and grids kept aside when the run was resumed from an earlier checkpoint) resumed
that folder in place: its training pruned the kept-aside checkpoints and mixed new grids with the old ones. A full
disk while `train` wrote its lock left an empty `.lock` behind, and every later command in that folder refused it as
damaged. `data download --url` with a letter outside ASCII in the path (a mirror's `données/`) was a
UnicodeEncodeError traceback. Misleading: `RUN/checkpoints/latest`, which resume took for the run, was "not a model
file" for translate, interpolate, eval, export, app and `train.init_from`, and "not a run folder" for mixture.
`train` into a run that `resume` was writing failed with "cannot read weights .../iter_0000095: No such file" (the
writer had pruned the checkpoint it picked before taking the lock) instead of naming the writer. A first checkpoint
that could not be written said "the previous checkpoint is intact" when there was none."""

from __future__ import annotations

import shutil

import pytest

from conftest import assert_one_line_error, input_image
from gmdrit_cli.config.schema import load_config
from gmdrit_cli.errors import ConfigError

# -- config: PyYAML's own types fail outside the YAML syntax ---------------------------------------------------------


@pytest.mark.parametrize(
    "override, fragment",
    [
        ("data.root=2024-13-45", "month must be in 1..12"),  # was ValueError
        ("data.root=2024-02-30", "day is out of range"),
        ("train.seed=" + "9" * 5000, "4300 digits"),  # was ValueError (Python's int digits limit)
        ("data.root=!!timestamp x", "groupdict"),  # was AttributeError
    ],
)
def test_a_yaml_value_python_cannot_build_is_a_config_error(override, fragment):
    with pytest.raises(ConfigError, match="cannot read one of its values") as info:
        load_config("quickstart", [override])
    assert fragment in str(info.value)


def test_a_preset_file_with_an_impossible_date_is_one_line(cli, tmp_path):
    preset = tmp_path / "mine.yaml"
    preset.write_text("name: mine\ntrain:\n  seed: 2024-13-45\n")
    proc = cli("train", "--preset", preset, "--dry-run")
    assert_one_line_error(proc, f"config file {preset}: cannot read one of its values (month must be in 1..12)")


# -- export: never onto the model it reads ---------------------------------------------------------------------------


def test_export_refuses_to_export_a_model_onto_itself_even_with_force(cli, run_dir, tmp_path):
    model = tmp_path / "model"
    assert cli("export", run_dir, "--out", model, "--int8").returncode == 0
    before = {p.name: p.read_bytes() for p in model.iterdir()}
    for source in (model, model / "model.safetensors"):
        proc = cli("export", source, "--out", model, "--force")  # was: replaced by an fp32 copy of itself
        assert_one_line_error(proc, "holds the model being exported", "choose another --out")
    assert {p.name: p.read_bytes() for p in model.iterdir()} == before
    proc = cli("export", model, "--out", tmp_path / "other")  # into another folder it still works
    assert proc.returncode == 0, proc.stderr


# -- RUN/checkpoints/latest names the run wherever a model is asked for ----------------------------------------------


def test_latest_names_the_run_for_every_command_that_takes_a_model(cli, run_dir, tmp_path):
    latest = run_dir / "checkpoints" / "latest"
    image = input_image(run_dir.parent / "data")
    for args in (
        ["translate", image, "-d", "orange", "-c", latest, "-o", tmp_path / "t", "-n", "1"],
        ["translate", image, "-d", "orange", "--run", latest, "-o", tmp_path / "t2", "-n", "1"],
        ["interpolate", image, "-d", "orange", "-c", latest, "-o", tmp_path / "i", "--steps", "2"],
        ["export", latest, "--out", tmp_path / "e"],
        ["eval", latest, "--metrics", "checkerboard", "--device", "cpu", "--out", tmp_path / "ev"],
    ):
        proc = cli(*args)  # each was "... latest is not a model file"
        assert proc.returncode == 0, (args[0], proc.stderr)


def test_mixture_takes_the_latest_pointer_for_its_run(cli, tiny_gmdrit_run, tmp_path):
    base, root = tiny_gmdrit_run
    run = tmp_path / "run"
    shutil.copytree(base / "run", run)
    proc = cli("mixture", run / "checkpoints" / "latest", "--data", root, "--device", "cpu", "--skip-curve")
    assert proc.returncode == 0, proc.stderr  # was "is not a run folder (no checkpoints/ in it)"
    assert (run / "eval" / "mixture" / "components.json").is_file()


# -- JSON nested past Python's recursion limit is damage, not a traceback -------------------------------------------

DEEP = "[" * 100_000 + "]" * 100_000


def test_a_state_json_nested_too_deep_is_a_damaged_checkpoint(cli, run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (state_file,) = (run / "checkpoints").glob("iter_*/state.json")
    state_file.write_text(DEEP)
    image = input_image(run_dir.parent / "data")
    for args in (
        ["resume", run, "--set", "train.max_iters=3"],  # each was RecursionError
        ["translate", image, "-d", "orange", "--run", run, "-o", tmp_path / "t"],
        ["export", run, "--out", tmp_path / "e"],
    ):
        assert_one_line_error(cli(*args), "has a damaged state.json", "maximum recursion depth")


def test_other_json_files_nested_too_deep_are_damage(cli, run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (run / "eval" / "x").mkdir(parents=True)
    (run / "eval" / "x" / "eval.json").write_text(DEEP)
    with (run / "metrics.jsonl").open("a") as f:
        f.write(DEEP + "\n")
    proc = cli("report", run, "--out", tmp_path / "page")  # was RecursionError (eval.json, then metrics.jsonl)
    assert proc.returncode == 0, proc.stderr
    assert "eval.json: not valid JSON" in proc.stdout + proc.stderr
    (run / ".lock").write_text(DEEP)
    assert_one_line_error(cli("resume", run, "--set", "train.max_iters=3"), "lock file", "is damaged")
    (run / ".lock").unlink()
    (run / "sampling.json").write_text(DEEP)
    image = input_image(run_dir.parent / "data")
    proc = cli("translate", image, "-d", "orange", "--run", run, "-o", tmp_path / "t")
    assert_one_line_error(proc, "sampling.json is damaged")


# -- a full disk: no empty lock left behind, no "previous checkpoint" that does not exist ---------------------------


def _no_space(*args, **kwargs):
    import errno

    raise OSError(errno.ENOSPC, "No space left on device")


def test_a_lock_that_cannot_be_written_is_not_left_behind_empty(tmp_path, monkeypatch):
    from gmdrit_cli.errors import CheckpointError
    from gmdrit_cli.training import runlock

    run = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(runlock.json, "dump", _no_space)
        with pytest.raises(CheckpointError, match="cannot write the run folder .*no space left"):
            runlock.RunLock(run).acquire()
    # was: an empty .lock, and every later command "its lock file ... is damaged (it names no process)"
    assert not (run / runlock.LOCK_FILE).exists()
    lock = runlock.RunLock(run)
    lock.acquire()
    lock.release()


def test_a_first_checkpoint_that_cannot_be_written_names_no_previous_one(cli, tiny_data, tmp_path, monkeypatch):
    from conftest import set_args, tiny_overrides
    from gmdrit_cli.training import checkpoint

    monkeypatch.setattr(checkpoint, "save_file", _no_space)
    proc = cli("train", "--preset", "quickstart", *set_args(tiny_overrides(tiny_data, 1)), "--run-dir", tmp_path / "r")
    assert_one_line_error(proc, "could not write checkpoint", "this run has no checkpoint yet")
    assert "previous checkpoint is intact" not in proc.stderr  # there was none


# -- data download: a mirror's URL with letters outside ASCII ---------------------------------------------------------


def test_a_url_with_letters_outside_ascii_is_sent_percent_encoded(cli, tmp_path):
    from conftest import free_port
    from gmdrit_cli.data.download import check_url

    assert check_url("http://host/données/a b.zip?v=é") == "http://host/donn%C3%A9es/a%20b.zip?v=%C3%A9"
    assert check_url("http://host/x%20y.zip") == "http://host/x%20y.zip"  # already encoded: left as is
    url = f"http://127.0.0.1:{free_port()}/données/facades.zip"
    proc = cli("data", "download", "facades", "--to", tmp_path / "data", "--url", url)
    assert_one_line_error(proc, "cannot reach http://127.0.0.1:", "/donn%C3%A9es/facades.zip")  # was UnicodeEncodeError
    # bytes that are not UTF-8 (a shell passes them as surrogates) and a host IDNA cannot encode: one line
    proc = cli("data", "download", "facades", "--to", tmp_path / "data", "--url", "http://127.0.0.1:1/caf\udce9")
    assert_one_line_error(proc, "is not a valid URL", "surrogates not allowed")
    proc = cli("data", "download", "facades", "--to", tmp_path / "data", "--url", "http://" + "a" * 70 + ".com/x.zip")
    assert_one_line_error(proc, "is not a valid URL", "idna")


# -- the app's request function: any value of a number field is a message ------------------------------------------


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("seed", None, "seed: give a whole number (got None)"),  # an emptied seed box: was TypeError
        ("seed", float("nan"), "seed: give a whole number"),  # was ValueError
        ("samples", None, "samples: give a whole number"),
        ("samples", 2.5, "samples: give a whole number"),  # was 2 samples, silently
        ("temperature", "hot", "temperature: give a number (got 'hot')"),  # was ValueError
        ("steps", float("nan"), "steps: give a whole number"),  # was ValueError (with interpolate)
    ],
)
def test_an_app_request_with_a_number_field_of_another_kind_is_a_message(run_dir, tmp_path, field, value, fragment):
    from gmdrit_cli.inference.webapp import Request, load_app_model, run_request

    model = load_app_model(run_dir)
    image = str(input_image(run_dir.parent / "data"))
    request = Request(image, "orange", randomize=False, interpolate=True, **{field: value})
    response = run_request(model, request, tmp_path)  # "never an exception", its docstring says
    assert not response.ok and response.message.startswith("error: ") and fragment in response.message
    assert response.seed == 0 and list(tmp_path.iterdir()) == []
    assert run_request(model, Request(image, "orange", samples=2, seed="7", randomize=False), tmp_path).ok


# -- data edges: never into the source folder ------------------------------------------------------------------------


def test_data_edges_refuses_a_destination_inside_its_source(cli, tiny_data):
    before = sorted(p.relative_to(tiny_data) for p in tiny_data.rglob("*"))
    for src, dst in ((tiny_data / "trainB", tiny_data / "trainB" / "edges"), (tiny_data, tiny_data / "edges")):
        proc = cli("data", "edges", src, dst, "--size", "32")  # was: the pairs written among the photos
        assert_one_line_error(proc, "is inside the source folder", "pass a DST outside it")
    assert sorted(p.relative_to(tiny_data) for p in tiny_data.rglob("*")) == before


# -- train or resume of a run another process is writing: the writer is named, not a pruned file ------------------


def test_a_checkpoint_pruned_by_the_runs_writer_names_the_writer(cli, run_dir, tmp_path, monkeypatch):
    from conftest import set_args, tiny_overrides
    from gmdrit_cli.errors import CheckpointError
    from gmdrit_cli.training import trainer
    from gmdrit_cli.training.runlock import RunLock

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)

    def pruned_meanwhile(self, folder, state):  # the writer pruned it between find_checkpoint and the read
        raise CheckpointError(f"cannot read weights {folder}: No such file or directory")

    monkeypatch.setattr(trainer.Run, "restore", pruned_meanwhile)
    overrides = tiny_overrides(run_dir.parent / "data", 3) + ["data.domains=[apple,orange]"]
    train = ["train", "--preset", "mdmm_baseline", *set_args(overrides), "--run-dir", run]
    assert_one_line_error(cli(*train), "cannot read weights")  # nobody writes it: the read error itself
    writer = RunLock(run)  # a live writer (this process)
    writer.acquire()
    try:
        assert_one_line_error(cli(*train), "is being written by PID")  # was "cannot read weights ...: No such file"
        assert_one_line_error(cli("resume", run, "--set", "train.max_iters=3"), "is being written by PID")
    finally:
        writer.release()


# -- a run's after-iter_N/ folder holds earlier results: never resumed or trained in place -------------------------


def test_the_folder_of_checkpoints_kept_aside_is_not_resumed_in_place(cli, run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    assert cli("resume", run, "--set", "train.max_iters=4", "--set", "train.save_every=1").returncode == 0
    (older,) = [p for p in (run / "checkpoints").iterdir() if p.name == "iter_0000002"]
    proc = cli("resume", older, "--set", "train.max_iters=3")  # keeps iterations 3 and 4 aside
    assert proc.returncode == 0, proc.stderr
    aside = run / "after-iter_0000002"
    kept = sorted(p.name for p in (aside / "checkpoints").iterdir())
    assert kept == ["iter_0000003", "iter_0000004"]
    for args in (
        ["resume", aside, "--set", "train.max_iters=9", "--set", "train.keep_last=1"],  # was: resumed in place,
        ["resume", aside / "checkpoints" / "iter_0000004", "--set", "train.max_iters=9"],  # pruning what it kept
        ["train", "--preset", "mdmm_baseline", "--run-dir", aside],
    ):
        assert_one_line_error(cli(*args), "is inside", "kept aside", "gmdrit does not write there")
    assert sorted(p.name for p in (aside / "checkpoints").iterdir()) == kept
    assert not (aside / "metrics.jsonl").exists()
