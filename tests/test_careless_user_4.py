"""Issue 25, fourth probe (by someone who did not write the earlier fixes): what a careless user still broke.

A checkpoint folder resumed outside its run wrote a run into the folder above it (replacing the user's config.yaml,
dropping their metrics.jsonl); a second `gmdrit mixture` replaced the first's files (or the user's); a deeply nested
YAML preset or --set value was a RecursionError and a huge one ran for minutes; `--rows` that named nothing timed the
whole table, or wrote an empty one; `eval --min-accuracy` without a sweep was silently ignored; an interrupted
`data cache` left its hidden partial copy."""

from __future__ import annotations

import shutil

import pytest

from conftest import assert_one_line_error
from gmdrit_cli.errors import ConfigError, DataError, GmdritError

# -- resume continues a run, never makes one out of the folder above a loose checkpoint ----------------------


def test_resume_refuses_a_checkpoint_folder_outside_a_runs_checkpoints(cli, run_dir, tmp_path):
    from gmdrit_cli.training.checkpoint import find_checkpoint

    folder, _ = find_checkpoint(run_dir)
    home = tmp_path / "home"
    (home / "downloads").mkdir(parents=True)
    shutil.copytree(folder, home / "downloads" / folder.name)
    (home / "config.yaml").write_text("my: notes\n")
    (home / "metrics.jsonl").write_text("my own log\n")
    before = sorted(p.name for p in home.iterdir())

    proc = cli("resume", home / "downloads" / folder.name, "--set", "train.max_iters=3")
    assert_one_line_error(proc, "outside a run's checkpoints/", "train.init_from=")
    # a folder named checkpoints/ in a folder that is not a run: the files above it are the user's
    shutil.copytree(folder, home / "checkpoints" / folder.name)
    proc = cli("resume", home / "checkpoints" / folder.name, "--set", "train.max_iters=3")
    assert_one_line_error(proc, "not a gmdrit run folder", "config.yaml, metrics.jsonl")

    assert (home / "config.yaml").read_text() == "my: notes\n"
    assert (home / "metrics.jsonl").read_text() == "my own log\n"
    assert sorted(p.name for p in home.iterdir()) == sorted(before + ["checkpoints"])
    assert sorted(p.name for p in (home / "checkpoints").iterdir()) == [folder.name]


# -- one reader of every YAML config: bounded size and depth, no key twice --------------------------------------


def test_yaml_configs_are_bounded_in_size_and_depth_and_give_no_key_twice(cli, tmp_path):
    from gmdrit_cli.config.schema import load_config, parse_overrides

    deep = tmp_path / "deep.yaml"
    deep.write_text("[" * 5000 + "\n")  # was a RecursionError traceback
    assert_one_line_error(cli("train", "--preset", deep, "--dry-run"), "nests lists or mappings")
    proc = cli("train", "--preset", "quickstart", "--set", "model.width=" + "[" * 5000, "--dry-run")
    assert_one_line_error(proc, "--set model.width nests")

    huge = tmp_path / "huge.yaml"
    huge.write_text("description: '" + "x" * (2 << 20) + "'\n")  # read in full, then parsed for minutes
    with pytest.raises(ConfigError, match="larger than a config ever is"):
        load_config(str(huge))

    twice = tmp_path / "twice.yaml"
    twice.write_text("model:\n  width: 8\nmodel:\n  width: 16\n")  # the second silently won
    with pytest.raises(ConfigError, match="'model' is given twice"):
        load_config(str(twice))

    values, errors = parse_overrides(["model.width=8", "data.domains=[a, b]"])  # ordinary values still read
    assert values == {"model.width": 8, "data.domains": ["a", "b"]} and not errors


def test_report_leaves_out_a_config_yaml_too_deep_or_too_large(cli, run_dir, tmp_path):
    for name, text in (("deep", "[" * 5000 + "\n"), ("huge", "a: '" + "x" * (2 << 20) + "'\n")):
        copy = tmp_path / name
        shutil.copytree(run_dir, copy)
        (copy / "config.yaml").write_text(text)
        proc = cli("report", copy, "--out", tmp_path / f"report-{name}")
        assert proc.returncode == 0, proc.stderr
        assert "config.yaml" in proc.stdout and "Traceback" not in proc.stderr


# -- mixture: a second report goes to a new folder, as eval's results do ---------------------------------------


def test_a_second_mixture_report_keeps_the_first_and_the_users_files(cli, tiny_gmdrit_run, tmp_path):
    base, root = tiny_gmdrit_run
    out = tmp_path / "mine"
    out.mkdir()
    (out / "components.json").write_text('{"my": "data"}\n')  # replaced silently before
    args = ("mixture", base / "run", "--data", root, "--max-inputs", "1", "--skip-curve", "--device", "cpu")
    proc = cli(*args, "--out", out)
    assert proc.returncode == 0, proc.stderr
    assert (out / "components.json").read_text() == '{"my": "data"}\n'
    assert (tmp_path / "mine-2" / "components.json").is_file()
    assert "this report went to" in proc.stdout
    first = (tmp_path / "mine-2" / "components.json").read_bytes()
    assert cli(*args, "--out", out).returncode == 0
    assert (tmp_path / "mine-2" / "components.json").read_bytes() == first
    assert (tmp_path / "mine-3" / "components.json").is_file()


# -- options that select nothing, or apply to nothing, are refused --------------------------------------------


def test_benchmark_rows_that_select_nothing_are_refused_before_timing(cli, tmp_path):
    from gmdrit_cli.training.benchmark import select_rows

    with pytest.raises(ConfigError, match="names no row"):
        select_rows([], [108])
    with pytest.raises(ConfigError, match="no row at --resolution 128"):
        select_rows(["gmdrit"], [128])  # wrote an empty benchmark with exit code 0
    assert_one_line_error(cli("benchmark", "--rows", " , ", "--out", tmp_path / "b"), "--rows names no row")
    assert not (tmp_path / "b").exists()


def test_min_accuracy_without_a_sweep_is_refused_not_ignored(cli, run_dir, tmp_path):
    from gmdrit_cli.evaluation.temperature_sweep import MIN_ACCURACY, sweep_threshold

    proc = cli("eval", run_dir, "--metrics", "recon_mse", "--min-accuracy", "0.5", "--out", tmp_path / "e")
    assert_one_line_error(proc, "--min-accuracy", "several --temperature values")
    assert not (tmp_path / "e").exists()
    assert sweep_threshold(None, [0.5]) == MIN_ACCURACY
    for bad in (float("nan"), 2.0, 0.0):
        with pytest.raises(GmdritError, match="fraction"):
            sweep_threshold(bad, [0.5, 1.0])


# -- temporary files go on signals ---------------------------------------------------------------------------


@pytest.mark.parametrize("interrupt", [KeyboardInterrupt, SystemExit, OSError])
def test_an_interrupted_data_cache_leaves_no_partial_copy(tmp_path, monkeypatch, interrupt):
    import gmdrit_cli.data.cache as cache

    source = tmp_path / "photos"
    source.mkdir()
    for i in range(3):
        (source / f"{i}.png").write_bytes(b"x" * 10)
    calls, real_copy = [], shutil.copy2

    def copy_then_stop(src, dst, **kwargs):
        calls.append(src)
        if len(calls) == 2:
            raise interrupt(143) if interrupt is SystemExit else interrupt()
        return real_copy(src, dst, **kwargs)

    monkeypatch.setattr(cache.shutil, "copy2", copy_then_stop)
    with pytest.raises(DataError if interrupt is OSError else interrupt):
        cache.cache_dataset(source, tmp_path / "cache")
    assert list((tmp_path / "cache").iterdir()) == []  # the hidden .photos.partial-PID went with it


# -- the web page: a bad --host is named as such, before anything is said -----------------------------------


def test_app_names_a_bad_host_or_a_busy_port_before_serving(cli, run_dir):
    import importlib.util
    import socket

    from gmdrit_cli.inference.webapp import check_address

    with pytest.raises(GmdritError, match="--host 999.1.1.1: not an address"):
        check_address("999.1.1.1", 7860)  # the server library blamed the port, after a log line of its own
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        with pytest.raises(GmdritError, match=f"port {port} of 127.0.0.1 is in use"):
            check_address("127.0.0.1", port)
    if importlib.util.find_spec("gradio") is not None:
        proc = cli("app", "--run", run_dir, "--host", "999.1.1.1")
        assert_one_line_error(proc, "--host 999.1.1.1")
        assert proc.stdout == ""  # no "serving ... on http://999.1.1.1" first
