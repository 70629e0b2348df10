"""Issue 25, sixth probe (by someone who did not write the earlier fixes): what a careless user still broke.

`gmdrit report` into a folder whose `assets/` held the user's own pictures replaced them (assets/loss_totals.png ...),
since only index.html was checked. A preset whose `name:` was '../../x' (or '.', from a file named '..yaml') put the
default run folder outside runs/ (or in runs/ itself). A hand-edited state.json (its own checksum is not recorded)
whose config was not a mapping, or whose rng, sampler or optimizer fields had another shape, was a traceback at
`resume`; an iteration of -5 was resumed as is. `export --meta` with bytes that are not UTF-8 was a traceback.
Misleading: exporting an int8 export again (the pretrained model) said its weights "do not fit their config"; an ONNX
export given to interpolate or eval was "not a run folder", /dev/null as a reference "no such file"; `train.ema_beta=1`
was accepted (the EMA copy, used by translate and eval, never left the initial weights); resume silently rewrote a
hand-edited config.yaml."""

from __future__ import annotations

import json
import shutil

import pytest

from conftest import assert_one_line_error, input_image

# -- report: an assets/ folder the user made is not a report's ------------------------------------------------------


def test_report_never_replaces_the_pictures_of_an_assets_folder_it_did_not_make(cli, run_dir, tmp_path):
    mine = tmp_path / "page" / "assets" / "loss_totals.png"
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"my own picture")  # no index.html: was replaced by the report's loss chart
    proc = cli("report", run_dir, "--out", tmp_path / "page")
    assert_one_line_error(proc, "assets holds files that no gmdrit report wrote", "choose another --out")
    assert mine.read_bytes() == b"my own picture"

    # a report stopped before its page (assets/ made and marked, no index.html) is continued by the next one
    out = tmp_path / "again"
    assert cli("report", run_dir, "--out", out).returncode == 0
    (out / "index.html").unlink()
    proc = cli("report", run_dir, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "index.html").is_file()


# -- config: a preset's name names the default run folder ------------------------------------------------------------


@pytest.mark.parametrize("name", ["../../escape", "a/b", ".", ""])
def test_a_preset_name_that_is_a_path_is_refused(cli, tiny_data, tmp_path, name):
    preset = tmp_path / "mine.yaml"
    preset.write_text(json.dumps({"name": name, "model": {"family": "mdmm"}, "data": {"root": str(tiny_data)}}))
    work = tmp_path / "work"
    work.mkdir()
    proc = cli("train", "--preset", preset, "--set", "train.max_iters=1", cwd=work)
    assert_one_line_error(proc, "name: ", "cannot name a run")
    assert list(work.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["data", "mine.yaml", "work"]


def test_ema_beta_of_1_is_refused():
    from gmdrit_cli.config.schema import load_config
    from gmdrit_cli.errors import ConfigError

    with pytest.raises(ConfigError, match="train.ema_beta: 1.0 must be < 1 .*never leaves the initial weights"):
        load_config("quickstart", ["train.ema_beta=1"])
    assert load_config("quickstart", ["train.ema_beta=0.999"]).train.ema_beta == 0.999


# -- resume: state.json is data to check ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "field, value, fragment",
    [
        ("config", "nope", "its config is not a mapping"),  # was AttributeError
        ("iteration", -5, "iteration -5"),  # was resumed, its later metrics kept aside as 'after-iter_-000005'
        ("rng", "garbage", "damaged state.json (TypeError"),  # was TypeError
        ("sampler", [1], "damaged state.json (TypeError"),
        ("optimizers", {"x": 1}, "damaged state.json (KeyError"),
        ("processes", "many", "damaged state.json (ValueError"),
    ],
)
def test_a_hand_edited_state_json_is_damage_in_one_line(cli, run_dir, tmp_path, field, value, fragment):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    (state_file,) = (run / "checkpoints").glob("iter_*/state.json")
    state = json.loads(state_file.read_text())
    state[field] = value
    state_file.write_text(json.dumps(state))
    proc = cli("resume", run, "--set", "train.max_iters=3")
    assert_one_line_error(proc, fragment)
    assert not (run / "checkpoints" / "iter_0000003").exists()


def test_resume_names_a_hand_edited_config_yaml_before_rewriting_it(cli, run_dir, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    proc = cli("resume", run, "--set", "train.max_iters=3")
    assert proc.returncode == 0 and "was edited" not in proc.stderr, proc.stderr
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(text.replace("width: 8", "width: 64"))
    proc = cli("resume", run, "--set", "train.max_iters=4")
    assert proc.returncode == 0, proc.stderr
    assert "config.yaml was edited (model.width)" in " ".join(proc.stderr.split())


# -- export: metadata and int8 exports -----------------------------------------------------------------------------


def test_export_meta_that_is_not_utf8_is_one_line(cli, run_dir, tmp_path):
    # a shell passes bytes that are not UTF-8 (a file name in Latin-1) as surrogates: was a UnicodeEncodeError
    proc = cli("export", run_dir, "--out", tmp_path / "model", "--meta", "source=caf\udce9")
    assert_one_line_error(proc, "--meta", "not UTF-8 text")
    assert not (tmp_path / "model" / "model.safetensors").exists()


def test_an_int8_export_exports_again_in_either_format(cli, run_dir, tmp_path):
    image = input_image(run_dir.parent / "data")
    assert cli("export", run_dir, "--out", tmp_path / "int8", "--int8").returncode == 0
    for name, extra in (("again", ["--int8"]), ("fp32", [])):
        proc = cli("export", tmp_path / "int8", "--out", tmp_path / name, *extra)  # was "do not fit their config"
        assert proc.returncode == 0, proc.stderr
    outputs = []
    for name in ("int8", "again", "fp32"):
        proc = cli(
            "translate",
            image,
            "-d",
            "orange",
            "-c",
            tmp_path / name,
            "-o",
            tmp_path / f"t-{name}",
            "-n",
            "1",
            "--seed",
            "0",
        )
        assert proc.returncode == 0, proc.stderr
        outputs.append(next((tmp_path / f"t-{name}").glob("*_1.png")).read_bytes())
    assert outputs[0] == outputs[1] == outputs[2]


def test_an_onnx_export_given_to_interpolate_or_eval_is_named(cli, run_dir, tmp_path):
    folder = tmp_path / "onnx"
    folder.mkdir()
    (folder / "model.onnx").write_bytes(b"graph")
    image = input_image(run_dir.parent / "data")
    proc = cli("interpolate", image, "-d", "orange", "-c", folder, "-o", tmp_path / "out")
    assert_one_line_error(proc, "is an ONNX export, which only `gmdrit translate` and `gmdrit app` run")
    proc = cli("eval", folder, "--out", tmp_path / "eval")
    assert_one_line_error(proc, "is an ONNX export")


# -- a device or a pipe is not "missing" ---------------------------------------------------------------------------


def test_a_device_given_as_reference_or_preset_is_named_not_missing(cli, run_dir, tmp_path):
    image = input_image(run_dir.parent / "data")
    proc = cli("translate", image, "-d", "orange", "--run", run_dir, "-o", tmp_path / "out", "-r", "/dev/null")
    assert_one_line_error(proc, "reference /dev/null: not a regular file")  # was "no such file"
    proc = cli("train", "--preset", "/dev/null", "--dry-run")
    assert_one_line_error(proc, "preset file /dev/null is not a regular file")  # was "does not exist"
