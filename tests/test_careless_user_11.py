"""Eleventh probe (multi-step stories by someone who did not write the earlier fixes): what a careless user still broke.
Two `gmdrit eval RUN` started at once (two terminals, or `&` in a loop over seeds) both chose the free
`RUN/eval/iter_N-latent` before either had written anything there: the second's translations replaced the first's
PNGs and its eval.json replaced the first's, while both commands printed that their results were in that folder.
The same held for two temperature sweeps, two `gmdrit mixture` reports and two `gmdrit benchmark` runs of one
`--out` (a benchmark chooses its folder minutes before it writes). A numbered output folder is now claimed (a hidden
file made exclusively) from the moment it is chosen until the command ends, so a second command takes the next one.
`make clean` ran `rm -rf .venv runs *.egg-info`: every training in the default runs/ folder, checkpoints and all.
Misleading (work lost): a kill or a full disk between a checkpoint's rename and the update of `checkpoints/latest`
left the pointer naming the checkpoint before; resume, which tried the pointer first, retrained from it (the newer
checkpoint set aside, though the full-disk message said it "is complete") and translate and eval ran the older model.
`gmdrit eval RUN/checkpoints/latest` (the pointer every command takes for the run) made its default folder beside
the pointer, inside checkpoints/, and was refused with "choose another --out" for an --out the user never gave; a
validation sweep of it did not store its choice in the run. `gmdrit resume RUN/checkpoints` (tab completion) and
`gmdrit resume RUN/checkpoints/iter_N/model.safetensors` said the run "has no checkpoint to resume; start it with
`gmdrit train`". `GMDRIT_CACHE=RUN/checkpoints` put the domain classifier inside a run's checkpoints, where
`--classifier-cache RUN/checkpoints` was refused. A checkpoint's model.safetensors given to translate, eval or export
was "no config.yaml beside it; export models with `gmdrit export`". Found by the probe, fixed after it: domain names
containing "2" (a, b2c, a2b, c) gave two eval tasks one `<source>2<target>` folder, the second removing the first's
PNGs; `make demo` ran `rm -rf runs/demo/train`, losing a demo run resumed since (now moved aside)."""

from __future__ import annotations

import json
import shutil

from conftest import assert_one_line_error, set_args, tiny_overrides
from gmdrit_cli import outputs

# -- two evals at once never write into the same folder ----------------------------------------------------------------

EVAL_ARGS = ("--metrics", "ndb,jsd", "--ndb-bins", "2", "--no-reference", "--device", "cpu")


def test_two_evals_at_once_never_share_a_folder(cli, run_dir, tmp_path, monkeypatch):
    """The second eval starts while the first has chosen its folder but not yet written into it."""
    from gmdrit_cli.evaluation import evaluate

    load = evaluate._load_test_images
    second: list = []

    def load_then_start_another(*args, **kwargs):
        if not second:  # the first eval has its folder: a second one starts now
            second.append(None)
            second[0] = cli("eval", run_dir, *EVAL_ARGS, "--samples-per-input", "2", "--out", tmp_path / "ev")
        return load(*args, **kwargs)

    monkeypatch.setattr(evaluate, "_load_test_images", load_then_start_another)
    first = cli("eval", run_dir, *EVAL_ARGS, "--samples-per-input", "1", "--out", tmp_path / "ev")
    assert first.returncode == 0 and second[0].returncode == 0, first.stderr + second[0].stderr
    # each eval's results are where it says they are (the first's were replaced by the second's)
    assert f"outputs in {tmp_path / 'ev'};" in first.stdout
    assert f"outputs in {tmp_path / 'ev-2'};" in second[0].stdout
    for folder, samples in (("ev", 1), ("ev-2", 2)):
        report = json.loads((tmp_path / folder / "eval.json").read_text())
        assert report["settings"]["samples_per_input"] == samples
        assert len(list((tmp_path / folder / "apple2orange").glob("*.png"))) == 4 * samples
        assert not [p for p in (tmp_path / folder).iterdir() if p.name.startswith(".")]  # claim released at the end


def test_a_benchmark_holds_its_folder_while_it_times(cli, tmp_path, monkeypatch):
    """A benchmark chooses its folder before minutes of timing; one started meanwhile replaced its figures."""
    from gmdrit_cli.training import benchmark

    started: list = []
    calls = []

    def timed(rows, **kwargs):
        calls.append(len(calls) + 1)
        which = calls[-1]
        if not started:  # a second benchmark of the same --out starts while the first times its rows
            started.append(None)
            started[0] = cli("benchmark", "--rows", "mdmm", "--out", tmp_path / "bench")
        env = {"device": "cpu", "machine": "test", "torch": "x", "threads": 1}
        return benchmark.BenchmarkResult(env, {"which": which}, [])

    monkeypatch.setattr(benchmark, "run_benchmark", timed)
    first = cli("benchmark", "--rows", "mdmm", "--out", tmp_path / "bench")
    assert first.returncode == 0 and started[0].returncode == 0, first.stderr + started[0].stderr
    for folder, which in (("bench", 1), ("bench-2", 2)):  # the second went to bench-2 (was: bench, then replaced)
        assert json.loads((tmp_path / folder / "benchmark.json").read_text())["settings"] == {"which": which}
        assert not [p for p in (tmp_path / folder).iterdir() if p.name.startswith(".")]


def test_a_claimed_folder_is_taken_and_an_unused_one_goes(tmp_path):
    """What the claim means for any numbered output folder (eval, sweep, mixture, benchmark)."""
    names = ("benchmark.json",)
    with outputs.claimed_folder(tmp_path / "b", names) as held:
        assert held == tmp_path / "b" and (held / outputs.CLAIM_FILE).is_file()
        assert outputs.numbered_folder(tmp_path / "b", names) == tmp_path / "b-2"  # taken while held
        with outputs.claimed_folder(tmp_path / "b", names) as other:
            assert other == tmp_path / "b-2"
    assert not (tmp_path / "b").exists() and not (tmp_path / "b-2").exists()  # nothing written: no empty folder left
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("the user's")
    with outputs.claimed_folder(tmp_path / "mine", names) as held:  # other files do not matter, and stay
        assert held == tmp_path / "mine"
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]


# -- a pointer left behind by a kill or a full disk never sends resume back -------------------------------------------


def test_a_stale_latest_pointer_never_resumes_an_older_checkpoint(cli, tiny_data, tmp_path):
    """The pointer is written after the checkpoint is renamed into place: killed (or out of disk) in between, it still
    named the one before, and resume retrained from there (the newer one set aside) while translate and eval ran the
    older model; the message of a full disk even said the newer checkpoint "is complete"."""
    run = tmp_path / "run"
    overrides = tiny_overrides(tiny_data, 3) + ["train.save_every=1", "data.domains=[apple,orange]"]
    assert cli("train", "--preset", "mdmm_baseline", *set_args(overrides), "--run-dir", run).returncode == 0
    (run / "checkpoints" / "latest").write_text("iter_0000002\n")  # as a kill before its update leaves it
    image = tiny_data / "testA" / "0.png"
    proc = cli("translate", image, "--run", run, "--domain", "orange", "--out", tmp_path / "t", "--samples", "1")
    assert proc.returncode == 0, proc.stderr
    assert "iteration 3" in proc.stdout and "iter_0000003" in proc.stderr  # was iteration 2, silently
    proc = cli("resume", run, "--set", "train.max_iters=4")
    assert proc.returncode == 0, proc.stderr
    assert not list(run.glob("after-*")) and not list(run.glob("metrics.after-*"))  # nothing was set aside
    assert (run / "checkpoints" / "latest").read_text().strip() == "iter_0000004"
    assert [json.loads(line)["iter"] for line in (run / "metrics.jsonl").read_text().splitlines()] == [1, 2, 3, 4]


# -- eval of RUN/checkpoints/latest writes into the run's eval folder --------------------------------------------------


def test_eval_of_the_latest_pointer_writes_into_the_runs_eval_folder(cli, run_dir, tmp_path):
    """`RUN/checkpoints/latest` names the run for every command, but eval's default folder was made beside the pointer,
    inside checkpoints/, and refused: "choose another --out" for an --out the user never gave."""

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    proc = cli("eval", run / "checkpoints" / "latest", *EVAL_ARGS, "--samples-per-input", "1")
    assert proc.returncode == 0, proc.stderr
    assert (run / "eval" / "iter_0000002-latent" / "eval.json").is_file()
    assert not (run / "checkpoints" / "eval").exists()


# -- resume RUN/checkpoints (or a checkpoint's model.safetensors) resumes it -------------------------------------------


def test_resume_of_the_checkpoints_folder_or_a_checkpoint_file_resumes(cli, run_dir, tmp_path):
    """Both said "has no checkpoint to resume; start it with `gmdrit train`" of a run that holds checkpoints."""

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    proc = cli("resume", run / "checkpoints", "--set", "train.max_iters=3")
    assert proc.returncode == 0, proc.stderr
    assert (run / "checkpoints" / "latest").read_text().strip() == "iter_0000003"
    proc = cli("resume", run / "checkpoints" / "iter_0000003" / "model.safetensors", "--set", "train.max_iters=4")
    assert proc.returncode == 0, proc.stderr
    assert (run / "checkpoints" / "latest").read_text().strip() == "iter_0000004"
    (tmp_path / "notes.txt").write_text("x")
    assert_one_line_error(cli("resume", tmp_path / "notes.txt"), "is a file, not a run folder")


# -- make clean removes build artefacts, never the runs ----------------------------------------------------------------


def test_make_clean_never_deletes_the_runs():
    """`make clean` (a careless way to free space, or to reinstall) ran `rm -rf .venv runs *.egg-info`: every
    training in the default runs/ folder, checkpoints and all."""
    from pathlib import Path

    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    recipe = makefile.split("\nclean:\n", 1)[1].split("\n\n", 1)[0]
    assert "rm -rf $(VENV)" in recipe
    assert "runs" not in recipe.split()


def test_make_demo_moves_an_earlier_demo_training_aside(tmp_path):
    """`make demo` ran `rm -rf runs/demo/train`: a demo run the user had resumed to train longer was lost."""
    import subprocess
    from pathlib import Path

    makefile = (Path(__file__).resolve().parents[1] / "Makefile").read_text()
    recipe = makefile.split("\ndemo: install\n", 1)[1].split("\n\n", 1)[0]
    assert "rm -rf" not in recipe
    (line,) = [x.strip().lstrip("@") for x in recipe.splitlines() if "runs/demo/train" in x and "mv " in x]
    kept = tmp_path / "runs" / "demo" / "train" / "checkpoints" / "latest"
    kept.parent.mkdir(parents=True)
    kept.write_text("iter_0000300")
    done = subprocess.run(["bash", "-c", line.replace("$$", "$")], cwd=tmp_path, capture_output=True, text=True)
    assert done.returncode == 0 and "moved to" in done.stdout
    (moved,) = (tmp_path / "runs" / "demo").glob("train.prev-*")
    assert (moved / "checkpoints" / "latest").read_text() == "iter_0000300"
    assert not (tmp_path / "runs" / "demo" / "train").exists()


# -- GMDRIT_CACHE is held to the rule --classifier-cache is ----------------------------------------------------------


def test_a_gmdrit_cache_inside_a_runs_checkpoints_is_refused(cli, run_dir, tmp_path):
    """`--classifier-cache RUN/checkpoints` was refused, but GMDRIT_CACHE=RUN/checkpoints wrote the classifier there."""

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    proc = cli(
        "eval",
        run,
        "--metrics",
        "domain_accuracy",
        "--samples-per-input",
        "1",
        "--device",
        "cpu",
        env={"GMDRIT_CACHE": str(run / "checkpoints")},
    )
    assert_one_line_error(proc, "(GMDRIT_CACHE) is inside a run's checkpoints", "set GMDRIT_CACHE elsewhere")
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["iter_0000002", "latest"]


def test_a_checkpoints_model_file_is_that_checkpoint_for_translate_and_export(cli, run_dir, tmp_path):
    """It was "has no config.yaml beside it; export models with `gmdrit export`": the checkpoint's config is in its
    state.json, and the folder itself was taken."""
    weights = run_dir / "checkpoints" / "iter_0000002" / "model.safetensors"
    image = tmp_path / "in.png"
    shutil.copy(run_dir.parent / "data" / "testA" / "0.png", image)
    proc = cli("translate", image, "--checkpoint", weights, "--domain", "orange", "--out", tmp_path / "t", "-n", "1")
    assert proc.returncode == 0, proc.stderr
    assert cli("export", weights, "--out", tmp_path / "e").returncode == 0
    assert (tmp_path / "e" / "model.safetensors").is_file()


# -- domain names that give two eval tasks one folder are refused before any work --------------------------------------


def test_domain_names_that_make_two_tasks_share_a_folder_are_refused():
    import pytest

    from gmdrit_cli.evaluation.evaluate import _check_task_folders
    from gmdrit_cli.evaluation.metrics import MetricError

    domains = ["a", "b2c", "a2b", "c"]
    pairs = [(s, t) for s in range(4) for t in range(4) if s != t]
    with pytest.raises(MetricError, match=r"a -> b2c and a2b -> c would share the output folder a2b2c/"):
        _check_task_folders(domains, pairs)  # was: the second task removed the first one's PNGs
    _check_task_folders(["apple", "orange", "pear2"], [(s, t) for s in range(3) for t in range(3) if s != t])


# -- items the eleventh probe left open, fixed later ----------------------------------------------------------------


def test_domain_names_equal_but_for_case_are_refused(cli):
    """`data.domains=[Apple,apple]` was accepted: on a case-insensitive disk both name one test/ and output folder."""
    proc = cli("train", "--preset", "quickstart", "--set", "data.domains=[Apple,apple]", "--dry-run")
    assert_one_line_error(proc, "data.domains", "upper/lower case")


def test_a_dataset_part_that_is_a_file_is_named_as_such(tmp_path):
    """`data download` said "no trainA/" of a folder whose trainA was a file (the user looks and sees trainA)."""
    from gmdrit_cli.data.download import DATASETS, missing_parts

    spec = DATASETS["apple2orange"]
    folder = tmp_path / "apple2orange"
    folder.mkdir()
    (folder / spec.folders[0]).write_text("not a folder")
    problems = missing_parts(spec, folder)
    assert problems[0] == f"{spec.folders[0]} is a file, not a folder"
    assert problems[1] == f"no {spec.folders[1]}/"


def test_a_hand_edited_max_iters_says_how_resume_takes_it(cli, run_dir, tmp_path):
    """train.max_iters edited in config.yaml was ignored without a word on resume (resume takes it from --set)."""
    import re

    run = tmp_path / "run"
    shutil.copytree(run_dir, run)
    text = (run / "config.yaml").read_text()
    (run / "config.yaml").write_text(re.sub(r"max_iters: \d+", "max_iters: 3", text))
    proc = cli("resume", run)
    assert proc.returncode == 0, proc.stderr
    said = " ".join(proc.stderr.split())
    assert "was edited (train.max_iters)" in said and "--set train.max_iters=3" in said
    assert not (run / "checkpoints" / "iter_0000003").exists()  # the checkpoint's config went on (2 iterations)
    proc = cli("resume", run, "--set", "train.max_iters=3")  # as the message says
    assert proc.returncode == 0 and "was edited" not in proc.stderr, proc.stderr
    assert (run / "checkpoints" / "iter_0000003").is_dir()
