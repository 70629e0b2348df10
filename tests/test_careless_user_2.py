"""Issue 25, second probe (by someone who did not write the first fixes): what a careless user still broke.

Each test fails on the code before its fix; the commands run in this process (the ``cli`` fixture of
conftest.py) where they can."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import UNPAIRED_LAYOUT, archive_files, free_port, make_zip
from gmdrit_cli.config.schema import ConfigError, load_config

# -- every size-like config key has a bound with its reason -------------------------------------------


@pytest.mark.parametrize(
    "preset, override, reason",
    [
        ("quickstart", "model.width=100000", "parameters grow with its square"),
        ("quickstart", "data.resize=100000", "memory grows with its square"),
        ("quickstart", "model.nz=1000000000", "attribute layers grow"),
        ("quickstart", "train.batch_size=1000000000", "memory grows with it"),
        ("demo_gmdrit", "mixture.components_per_domain=1000000000", "each component"),
        ("demo_gmdrit", "mixture.thumbnail=100000", "thumbnail"),
        ("vae_quickstart", "vae.layers=40", "channels double"),
        ("quickstart", "speed.prefetch=1000000000", "holds its batches in memory"),
        ("quickstart", "speed.loader_threads=100000", "threads beyond the CPU cores"),
        ("quickstart", "train.grid_random=100000", "column of every sample grid"),
        ("quickstart", "train.dist_timeout=1e300", "a stalled process"),
    ],
)
def test_size_like_config_keys_are_bounded_with_a_reason(preset, override, reason):
    key = override.split("=")[0]
    with pytest.raises(ConfigError, match=rf"{key}: .* must be <= .*\(.*{reason}"):
        load_config(preset, [override])


def test_a_refused_value_is_not_checked_again_with_the_default_in_its_place():
    with pytest.raises(ConfigError) as refused:
        load_config("quickstart", ["data.crop=4", "data.resize=4"])
    assert str(refused.value) == "data.crop: 4 must be >= 8"  # not also "data.crop: 216 must be <= ..."


# -- data cache replaces only its own copies -----------------------------------------------------------


def test_data_cache_never_replaces_a_folder_or_file_it_did_not_make(tmp_path):
    from gmdrit_cli.data.cache import cache_dataset
    from gmdrit_cli.errors import DataError

    source = tmp_path / "drive" / "photos"
    source.mkdir(parents=True)
    (source / "a.png").write_bytes(b"png bytes")
    home = tmp_path / "home"
    (home / "photos").mkdir(parents=True)
    (home / "photos" / "holiday.jpg").write_bytes(b"the user's own photo")
    with pytest.raises(DataError, match="not a copy made by gmdrit data cache"):
        cache_dataset(source, home)
    assert (home / "photos" / "holiday.jpg").read_bytes() == b"the user's own photo"
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "photos.json").write_text('{"my": "notes"}')
    with pytest.raises(DataError, match="not a gmdrit data cache record"):
        cache_dataset(source, tmp_path / "elsewhere")
    assert (tmp_path / "elsewhere" / "photos.json").read_text() == '{"my": "notes"}'
    # a folder that holds the source, of the copy's name: the copy would delete the source with it
    nested = tmp_path / "x" / "photos" / "photos"
    nested.mkdir(parents=True)
    (nested / "b.png").write_bytes(b"png")
    with pytest.raises(DataError, match="holds the data folder"):
        cache_dataset(nested, tmp_path / "x")
    assert (nested / "b.png").is_file()
    # its own copies are still refreshed when the source changed
    first = cache_dataset(source, tmp_path / "cache")
    (source / "c.png").write_bytes(b"more")
    again = cache_dataset(source, tmp_path / "cache")
    assert first.copied and again.copied and (again.path / "c.png").is_file()


def test_download_keeps_an_archive_the_user_put_there(tmp_path):
    from gmdrit_cli.data.download import DatasetSpec, download_dataset

    spec = DatasetSpec("tiny", "unpaired", f"http://127.0.0.1:{free_port()}/tiny.zip", "zip", tuple(UNPAIRED_LAYOUT))
    body = make_zip(archive_files(UNPAIRED_LAYOUT, top="tiny"), top="tiny")
    (tmp_path / "tiny.zip").write_bytes(body)
    result = download_dataset(spec, tmp_path)
    assert result.counts == UNPAIRED_LAYOUT and (tmp_path / "tiny.zip").read_bytes() == body


# -- numbered output folders -------------------------------------------------------------------------


def test_numbered_folder_of_the_current_folder_or_root(tmp_path, monkeypatch):
    from gmdrit_cli import outputs
    from gmdrit_cli.errors import OutputError

    work = tmp_path / "work"
    work.mkdir()
    (work / "notes.txt").write_text("x")
    monkeypatch.chdir(work)
    assert outputs.numbered_folder(".") == tmp_path / "work-2"  # was a ValueError traceback (`eval --out .`)
    assert outputs.numbered_folder("..") == tmp_path.parent / f"{tmp_path.name}-2"
    with pytest.raises(OutputError, match="no name to number"):
        outputs.numbered_folder("/")


def test_a_second_benchmark_goes_to_a_new_folder_and_a_bad_out_is_refused_before_timing(tmp_path):
    from gmdrit_cli.errors import OutputError
    from gmdrit_cli.training.benchmark import benchmark_folder

    first = benchmark_folder(tmp_path / "bench")
    assert first == tmp_path / "bench"
    first.mkdir()
    (first / "benchmark.json").write_text("{}")  # the first run's figures
    assert benchmark_folder(tmp_path / "bench") == tmp_path / "bench-2"
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    assert benchmark_folder(tmp_path / "mine") == tmp_path / "mine"  # other files do not matter
    (tmp_path / "afile").write_text("x")
    with pytest.raises(OutputError, match="is a file"):
        benchmark_folder(tmp_path / "afile")


def test_mixture_samples_and_seed_are_bounded():
    from gmdrit_cli.families.gmdrit.mixture_report import MixtureError, MixtureOptions, _check_options

    for bad, fragment in (
        ({"samples": 100000}, "at most 100"),
        ({"seed": -1}, "--seed -1"),
        ({"seed": 2**64}, "32-bit"),
    ):
        with pytest.raises(MixtureError, match=fragment):
            _check_options(MixtureOptions(run="r", **bad))


def test_weights_files_are_read_only_when_regular_and_of_a_bounded_size(tmp_path):
    from gmdrit_cli.evaluation.metrics.fid import MAX_WEIGHTS_BYTES, WeightsError, load_state_dict_safely

    big = tmp_path / "big.pth"
    with open(big, "wb") as f:  # sparse: costs no disk, but read whole it would be 1 GiB of memory
        f.truncate(MAX_WEIGHTS_BYTES + 1)
    with pytest.raises(WeightsError, match="at most 1 GiB"):
        load_state_dict_safely(big, "InceptionV3", "--inception-weights")
    with pytest.raises(WeightsError, match="not a regular file"):
        load_state_dict_safely(tmp_path, "InceptionV3", "--inception-weights")  # /dev/zero would never end


def test_data_list_names_a_file_given_as_to(cli, tmp_path):
    from conftest import assert_one_line_error

    (tmp_path / "afile").write_text("x")
    assert_one_line_error(cli("data", "list", "--to", tmp_path / "afile"), "is a file, not a folder")


# -- a new run never replaces files it did not make -----------------------------------------------------


def test_train_into_a_folder_with_its_own_config_yaml_is_refused(cli, tmp_path, monkeypatch):
    from conftest import assert_one_line_error
    from gmdrit_cli.training.trainer import _unused_folder

    project = tmp_path / "project"
    project.mkdir()
    (project / "config.yaml").write_text("my: own settings\n")
    (project / "metrics.jsonl").write_text("not gmdrit's\n")
    proc = cli("train", "--preset", "quickstart", "--run-dir", project)
    assert_one_line_error(proc, "not a gmdrit run folder", "config.yaml, metrics.jsonl", "choose another --run-dir")
    assert (project / "config.yaml").read_text() == "my: own settings\n"
    assert (project / "metrics.jsonl").read_text() == "not gmdrit's\n"
    assert sorted(p.name for p in project.iterdir()) == ["config.yaml", "metrics.jsonl"]
    monkeypatch.chdir(project)  # `train --fresh --run-dir .` was a ValueError traceback
    assert _unused_folder(Path(".")) == tmp_path / "project-2"


def test_a_run_already_past_max_iters_says_there_is_nothing_to_train(cli, run_dir, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    before = sorted(p.name for p in (copy / "checkpoints").iterdir())
    proc = cli("resume", copy, "--set", "train.max_iters=1")
    assert proc.returncode == 0, proc.stderr
    assert "already at iteration 2" in proc.stdout and "nothing to train" in proc.stdout
    assert "done:" not in proc.stdout  # was "done: iteration 2 ... (checkpoint -)" after a 2/1 progress bar
    assert sorted(p.name for p in (copy / "checkpoints").iterdir()) == before


def test_data_cache_names_a_file_given_as_source_or_cache(tmp_path):
    from gmdrit_cli.data.cache import cache_dataset
    from gmdrit_cli.errors import DataError

    (tmp_path / "afile").write_text("x")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.png").write_bytes(b"png")
    with pytest.raises(DataError, match="is a file, not a folder"):
        cache_dataset(tmp_path / "afile", tmp_path / "cache")
    with pytest.raises(DataError, match="cache folder .* is a file"):
        cache_dataset(tmp_path / "src", tmp_path / "afile")


def test_the_data_cache_never_goes_into_a_runs_checkpoints(run_dir, tmp_path):
    from gmdrit_cli.data.cache import cache_dataset
    from gmdrit_cli.errors import DataError

    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "a.png").write_bytes(b"png")
    before = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    with pytest.raises(DataError, match="a run's checkpoints"):
        cache_dataset(tmp_path / "src", run_dir / "checkpoints")  # `--set speed.data_cache=RUN/checkpoints`
    assert sorted(p.name for p in (run_dir / "checkpoints").iterdir()) == before


def test_a_file_as_data_root_is_named_a_file():
    from gmdrit_cli.data.unpaired import domain_folders
    from gmdrit_cli.errors import DataError

    with pytest.raises(DataError, match="is a file, not a folder"):
        domain_folders(__file__, ["a", "b"], "train")


def test_eval_refuses_a_classifier_cache_that_is_a_file_before_any_work(tmp_path):
    from gmdrit_cli.evaluation.evaluate import EvalOptions
    from gmdrit_cli.evaluation.metrics import MetricError
    from gmdrit_cli.evaluation.metrics.eval_domain import DomainAccuracyScores

    (tmp_path / "afile").write_text("x")
    with pytest.raises(MetricError, match="is a file, not a folder"):  # was found after training the classifier
        DomainAccuracyScores.check_options(
            EvalOptions(run=None, classifier_cache=tmp_path / "afile"), ["domain_accuracy"]
        )
    DomainAccuracyScores.check_options(EvalOptions(run=None, classifier_cache=tmp_path / "new"), ["domain_accuracy"])


def test_a_benchmark_that_fails_leaves_no_empty_folder(tmp_path):
    from gmdrit_cli.training.benchmark import benchmark_folder

    assert benchmark_folder(tmp_path / "b") == tmp_path / "b" and not (tmp_path / "b").exists()


@pytest.mark.slow  # three trainings
def test_resuming_an_older_checkpoint_keeps_the_later_metrics_aside(tmp_path):
    """Going back to an earlier checkpoint retrains the iterations after it: their logged lines leave
    metrics.jsonl (which must describe one history) but are kept in metrics.after-iter_N.jsonl, not lost."""
    import json

    from conftest import make_dataset, tiny_overrides
    from gmdrit_cli.training.trainer import resume_run, train

    root = make_dataset(tmp_path / "data")
    overrides = tiny_overrides(root, 4) + ["train.save_every=2", "train.log_every=1", "train.keep_last=5"]
    run = tmp_path / "run"
    train(load_config("quickstart", overrides), run)
    before = [json.loads(x)["iter"] for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert before == [1, 2, 3, 4]
    resume_run(run / "checkpoints" / "iter_0000002", ["train.max_iters=3"]).fit()
    assert [json.loads(x)["iter"] for x in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3]
    aside = [json.loads(x)["iter"] for x in (run / "metrics.after-iter_0000002.jsonl").read_text().splitlines()]
    assert aside == [3, 4]
    resume_run(run / "checkpoints" / "iter_0000002", ["train.max_iters=3"]).fit()
    assert (run / "metrics.after-iter_0000002-2.jsonl").read_text().count("\n") == 1  # the second branch's line 3
