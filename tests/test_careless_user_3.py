"""Issue 25, third probe (by someone who did not write the earlier fixes): what a careless user still broke.

Each test fails on the code before its fix; the commands run in this process (the ``cli`` fixture of
conftest.py)."""

from __future__ import annotations

import pytest

from conftest import assert_one_line_error

# -- an empty value is never read as the current folder --------------------------------------------------


@pytest.mark.parametrize(
    "args, where",
    [
        (["translate", "in.png", "--domain", "orange", "--out", ""], "after --out"),
        (["interpolate", "in.png", "--domain", "orange", "-o", ""], "after -o"),
        (["export", "RUN", "--out="], "in --out="),
        (["report", "RUN", "--out", ""], "after --out"),
        (["eval", "RUN", "--out", ""], "after --out"),
        (["train", "--preset", "quickstart", "--run-dir", "", "--set", "train.max_iters=1"], "after --run-dir"),
        (["resume", ""], "after resume"),
        (["data", "cache", "", "--to", "x"], "after cache"),
    ],
)
def test_an_empty_value_is_refused_not_read_as_the_current_folder(cli, tmp_path_factory, args, where):
    """`--out "$OUT"` with OUT unset wrote into the current folder (`train --run-dir ''` trained there)."""
    from conftest import make_dataset, set_args, tiny_overrides

    data = make_dataset(tmp_path_factory.mktemp("data"))
    tmp_path = tmp_path_factory.mktemp("cwd")
    extra = set_args(tiny_overrides(data, 1)) if args[0] == "train" else []
    proc = cli(*args, *extra, cwd=tmp_path)
    assert_one_line_error(proc, f"an empty value ('') {where}", "for the current folder write .")
    assert list(tmp_path.iterdir()) == []


# -- a link does not open a run's checkpoints to other commands ------------------------------------------


def test_a_link_to_a_runs_checkpoints_is_still_its_checkpoints(cli, run_dir, tmp_path):
    """`ln -s RUN/checkpoints ck; gmdrit export RUN --out ck/x` wrote an export into the run's checkpoints."""
    (tmp_path / "ck").symlink_to(run_dir / "checkpoints")
    (tmp_path / "one").symlink_to(next((run_dir / "checkpoints").glob("iter_*")))
    before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    for out in ("ck/x", "ck", "one"):
        proc = cli("export", run_dir, "--out", tmp_path / out)
        assert_one_line_error(proc, "a run's checkpoints", "choose another --out")
    proc = cli("report", run_dir, "--out", tmp_path / "ck" / "report")
    assert_one_line_error(proc, "a run's checkpoints")
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before


# -- translate and interpolate replace only their own earlier outputs ------------------------------------


def test_translate_and_interpolate_never_replace_a_file_they_did_not_write(cli, tmp_path):
    """A user's own file (or an output they edited and saved) of an output's name was silently replaced."""
    from PIL import Image

    image = tmp_path / "apple.png"
    Image.new("RGB", (40, 40), (200, 30, 30)).save(image)
    out = tmp_path / "out"
    out.mkdir()
    (out / "apple_to_orange_2.png").write_bytes(b"the user's own file")
    Image.new("RGB", (8, 8)).save(out / "apple_to_orange_random.gif")  # a GIF of theirs, not gmdrit's
    proc = cli("translate", image, "--domain", "orange", "--out", out, "--seed", "1")
    assert_one_line_error(proc, "apple_to_orange_2.png already exists", "not an output of gmdrit", "another --out")
    assert (out / "apple_to_orange_2.png").read_bytes() == b"the user's own file"
    proc = cli("interpolate", image, "--domain", "orange", "--out", out, "--steps", "2")
    assert_one_line_error(proc, "apple_to_orange_random.gif already exists")
    assert Image.open(out / "apple_to_orange_random.gif").size == (8, 8)
    (out / "apple_to_orange_2.png").unlink()
    (out / "apple_to_orange_random.gif").unlink()
    for _ in range(2):  # their own earlier outputs are replaced, as docs/files.md says
        assert cli("translate", image, "--domain", "orange", "--out", out, "--seed", "1").returncode == 0
        assert cli("interpolate", image, "--domain", "orange", "--out", out, "--steps", "2").returncode == 0


# -- every size-like option has a limit with its reason --------------------------------------------------


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["benchmark", "--iters", "100000000"], "--iters 100000000: give at most 10000 (each is a full training"),
        (["benchmark", "--warmup", "1000000000"], "--warmup 1000000000: give at most 10000"),
        (["eval", "--batch-size", "100000000"], "--batch-size 100000000: give at most 4096 (generated images"),
    ],
)
def test_benchmark_iterations_and_eval_batch_size_are_bounded(cli, tmp_path, args, fragment):
    """`benchmark --iters 100000000` (or --warmup) timed for days; `eval --batch-size` had no bound."""
    assert_one_line_error(cli(*args, "--out", tmp_path / "out"), fragment)
    assert not (tmp_path / "out").exists()


def test_an_empty_data_root_is_refused_not_read_as_the_current_folder():
    """`--set data.root=$DATA` with DATA unset trained on (or reported the folder as) '.'."""
    from gmdrit_cli.config.schema import ConfigError, load_config

    for value in ("", "''", " "):
        with pytest.raises(ConfigError, match=r"data.root: empty; give the dataset folder"):
            load_config("quickstart", [f"data.root={value}"])
    assert load_config("quickstart", ["data.root=."]).data.root == "."
