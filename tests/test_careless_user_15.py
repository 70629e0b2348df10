"""Fifteenth probe (paths, environment and exports of exports): what a careless user broke.

A path that starts with `~NAME/` for a user this machine does not have (a typo, `~jonh/runs`, or a path copied
from a colleague's shell, `~alice/data`) is a RuntimeError traceback ("Could not determine home directory", from
pathlib's Path.expanduser) at every command that expands `~` in what it is given: `--out` of translate, export,
eval, mixture, report, interpolate and benchmark, the RUN or `--checkpoint` argument of translate, export, eval,
mixture and report, `--data`, `--classifier-cache`, `--inception-weights`, `--sweep`, `train --run-dir`,
`--set data.root=...` and `data download --to`. The same value in the environment variable GMDRIT_CACHE is the
same traceback at `gmdrit eval --metrics domain_accuracy` (domain_classifier.cache_root). A path that cannot be
expanded is a user error: one line naming it.

Lost: `gmdrit export SRC --out DIR --force` refuses, even with --force, to export a model onto itself (it would drop
what the export's metadata records: the training command given with --meta, int8, the iteration chosen) by
comparing the folder of SRC's weights with DIR. A SRC folder whose model.safetensors and config.yaml are symlinks to
DIR's files (the usual way to give a model a second name without copying it) passes that check: DIR's export is
replaced by a copy of itself that lost its `--meta` record (trained_with=...) and its int8 form (written back as
fp32, four times the size).

An export whose model.safetensors metadata `iteration` is a damaged, huge integer (all digits, so the loader's
isdigit() check takes it): 5,000 digits is a ValueError traceback ("Exceeds the limit (4300 digits) for integer
string conversion") at every command that loads it (translate, eval, export, interpolate); 400 digits loads, but
`gmdrit export --format onnx` writes it into onnx.json, reads that back with the 64-bit bound of gmdrit_cli/jsonfile
and is a ValueError traceback ("integer of 400 digits: outside the 64-bit range").
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from conftest import assert_one_line_error, input_image

#: a home folder no user of this machine has: `~` + a user name that does not exist
NO_SUCH_HOME = "~no_such_user_gmdrit_probe15"


def _cli(cli, *args, **kwargs):
    """``cli(*args)``, an uncaught exception reported as the traceback a user would see."""
    try:
        return cli(*args, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the point of the test: nothing may escape the CLI
        pytest.fail(f"gmdrit {' '.join(map(str, args))}: traceback ({type(exc).__name__}: {exc})")


@pytest.mark.parametrize(
    "command",
    [
        "translate --out",
        "translate --checkpoint",
        "export --out",
        "export RUN",
        "eval RUN",
        "eval --out",
        "mixture RUN",
        "report --out",
        "train --run-dir",
        "train data.root",
        "data download --to",
    ],
)
def test_a_path_under_a_home_no_user_has_is_one_line(cli, tiny_gmdrit_run, tmp_path, command):
    """Every such path was a RuntimeError traceback (Could not determine home directory)."""
    base, root = tiny_gmdrit_run
    run, image, bad = base / "run", input_image(root), f"{NO_SUCH_HOME}/x"
    args = {
        "translate --out": ["translate", image, "--domain", "orange", "--checkpoint", run, "--out", bad],
        "translate --checkpoint": ["translate", image, "--domain", "orange", "--checkpoint", bad],
        "export --out": ["export", run, "--out", bad],
        "export RUN": ["export", bad, "--out", tmp_path / "export"],
        "eval RUN": ["eval", bad, "--metrics", "checkerboard"],
        "eval --out": ["eval", run, "--metrics", "checkerboard", "--out", bad],
        "mixture RUN": ["mixture", bad],
        "report --out": ["report", run, "--out", bad],
        "train --run-dir": ["train", "--preset", "quickstart", "--run-dir", bad, "--set", f"data.root={root}"],
        "train data.root": [
            "train",
            "--preset",
            "quickstart",
            "--run-dir",
            tmp_path / "new_run",
            "--set",
            f"data.root={bad}",
            "--set",
            "train.max_iters=1",
        ],
        "data download --to": ["data", "download", "apple2orange", "--to", bad],
    }[command]
    proc = _cli(cli, *args, cwd=tmp_path)
    assert_one_line_error(proc, NO_SUCH_HOME)
    assert not (tmp_path / "export").exists() and not (tmp_path / "new_run" / "checkpoints").exists()


def test_a_gmdrit_cache_under_a_home_no_user_has_is_one_line(cli, tiny_gmdrit_run, tmp_path):
    """GMDRIT_CACHE=~nouser/cache was a RuntimeError traceback at `gmdrit eval --metrics domain_accuracy`."""
    base, root = tiny_gmdrit_run
    proc = _cli(
        cli,
        "eval",
        base / "run",
        "--data",
        root,
        "--metrics",
        "domain_accuracy",
        "--samples-per-input",
        "1",
        "--no-reference",
        "--out",
        tmp_path / "eval",
        env={"GMDRIT_CACHE": f"{NO_SUCH_HOME}/cache"},
    )
    assert proc.returncode != 0
    assert "Traceback" not in proc.stdout + proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and ("GMDRIT_CACHE" in lines[0] or NO_SUCH_HOME in lines[0]), proc.stderr


def test_an_export_onto_itself_through_symlinked_files_is_refused(cli, tiny_gmdrit_run, tmp_path):
    """A folder of symlinks to an export's files, exported with --force onto that export, replaced it with a copy
    of itself without its --meta record and int8 form (the direct `export DIR --out DIR --force` is refused)."""
    from safetensors import safe_open

    base, _ = tiny_gmdrit_run
    export = tmp_path / "export"
    made = cli("export", base / "run", "--out", export, "--int8", "--meta", "trained_with=gmdrit train --preset x")
    assert made.returncode == 0, made.stderr
    weights = export / "model.safetensors"
    before = weights.read_bytes()
    alias = tmp_path / "alias"
    alias.mkdir()
    for name in ("model.safetensors", "config.yaml"):
        os.symlink(export / name, alias / name)

    proc = _cli(cli, "export", alias, "--out", export, "--force")

    with safe_open(str(weights), framework="pt") as f:
        metadata = f.metadata()
    assert metadata.get("trained_with") == "gmdrit train --preset x", metadata
    assert weights.read_bytes() == before
    assert_one_line_error(proc, "onto itself")


def _export_with_iteration(cli, tiny_gmdrit_run, tmp_path, digits: int):
    """An export of the tiny run whose weights' metadata says iteration 99...9 (``digits`` nines)."""
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    base, _ = tiny_gmdrit_run
    export = tmp_path / "export"
    made = cli("export", base / "run", "--out", export)
    assert made.returncode == 0, made.stderr
    weights = export / "model.safetensors"
    with safe_open(str(weights), framework="pt") as f:
        metadata = f.metadata()
    save_file(load_file(str(weights)), str(weights), metadata={**metadata, "iteration": "9" * digits})
    return export


def test_an_export_whose_iteration_no_int_conversion_takes_is_one_line(cli, tiny_gmdrit_run, tmp_path):
    """metadata iteration of 5,000 digits: ValueError (Exceeds the limit (4300 digits)) traceback at translate."""
    _, root = tiny_gmdrit_run
    export = _export_with_iteration(cli, tiny_gmdrit_run, tmp_path, 5000)
    image, out = input_image(root), tmp_path / "t"
    proc = _cli(cli, "translate", image, "--domain", "orange", "--checkpoint", export, "--out", out)
    assert_one_line_error(proc)
    assert not (tmp_path / "t").exists()


def test_an_onnx_export_of_an_export_whose_iteration_no_int64_holds_is_one_line(cli, tiny_gmdrit_run, tmp_path):
    """metadata iteration of 400 digits: ValueError (outside the 64-bit range) traceback at export --format onnx."""
    export = _export_with_iteration(cli, tiny_gmdrit_run, tmp_path, 400)
    proc = _cli(cli, "export", export, "--out", tmp_path / "onnx", "--format", "onnx")
    assert_one_line_error(proc)
    assert not (tmp_path / "onnx" / "onnx.json").exists()


def test_an_fp32_export_of_an_int8_export_exports_again(cli, tiny_gmdrit_run, tmp_path):
    """Fixed after the probe (its misleading list): `export e8 -> e9`, then `export e9` said "weights ... do not
    fit their config" (e9 keeps the `omitted` record of the heads int8 left out, which was honoured only with
    `quantized`)."""
    base, _ = tiny_gmdrit_run
    for source, out, extra in (
        (base / "run", tmp_path / "e8", ["--int8"]),
        (tmp_path / "e8", tmp_path / "e9", []),
        (tmp_path / "e9", tmp_path / "e10", []),
    ):
        proc = _cli(cli, "export", source, "--out", out, *extra)
        assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "e10" / "model.safetensors").is_file()


@pytest.mark.parametrize("chosen_for", [True, "2", 2.0, [2]])
def test_a_sampling_json_whose_iteration_is_not_a_whole_number_is_damaged(cli, tiny_gmdrit_run, tmp_path, chosen_for):
    """Fixed after the probe (its misleading list): such a choice was applied to every checkpoint, and `true`
    printed "chosen for iteration True"."""
    import json
    import shutil

    base, root = tiny_gmdrit_run
    run = Path(shutil.copytree(base / "run", tmp_path / "run", symlinks=True))
    record = {"sample_temperature": 0.5, "model": {"iteration": chosen_for}}
    (run / "sampling.json").write_text(json.dumps(record))
    proc = _cli(cli, "translate", input_image(root), "-d", "orange", "--run", run, "-o", tmp_path / "t")
    assert_one_line_error(proc, "sampling.json is damaged", "model.iteration")


def test_an_empty_mapping_for_a_number_is_refused_and_an_empty_section_allowed():
    """Fixed after the probe (its misleading list): `keep_plain: {}` in an export's config.yaml was taken as the
    default, 0, without a word (an empty mapping vanished when the config was flattened)."""
    from gmdrit_cli.config.schema import build_config, load_config
    from gmdrit_cli.errors import ConfigError

    with pytest.raises(ConfigError, match=r"model.keep_plain: expected a number, got \{\}"):
        load_config("gmdrit_128", ["model.keep_plain={}"])
    assert build_config({"model": {}, "train": {"seed": 3}}).train.seed == 3
