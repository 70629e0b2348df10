"""The validation split (data.val_fraction), `gmdrit eval --split val` and the temperature sweep whose choice is
stored with the model."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
import torch

from conftest import assert_one_line_error, make_dataset, tiny_overrides
from gmdrit_cli.cli.app import console
from gmdrit_cli.cli.eval import render
from gmdrit_cli.config.schema import load_config
from gmdrit_cli.data.unpaired import UnpairedImageFolders, hold_out
from gmdrit_cli.errors import DataError
from gmdrit_cli.evaluation.evaluate import EvalOptions
from gmdrit_cli.evaluation.temperature_sweep import choose_temperature, parse_temperatures, sweep
from gmdrit_cli.inference.model_files import export_model, load_for_inference
from gmdrit_cli.training.trainer import resume_run, train

torch.set_num_threads(1)


def test_hold_out_is_chosen_by_name_alone():
    files = [Path(f"dir/{i:04d}.jpg") for i in range(200)]
    train_a, val_a = hold_out(files, 0.1)
    shuffled = list(files)
    random.Random(3).shuffle(shuffled)
    train_b, val_b = hold_out(shuffled, 0.1)
    assert len(val_a) == 20 and set(val_a) == set(val_b) and set(train_a) == set(train_b)
    assert not set(train_a) & set(val_a) and set(train_a) | set(val_a) == set(files)
    # the folder does not matter, only the name; a new file moves no other file between the splits
    moved = hold_out([Path("elsewhere") / p.name for p in files], 0.1)[1]
    assert {p.name for p in moved} == {p.name for p in val_a}
    grown = hold_out(files + [Path("dir/new.jpg")], 0.1)[1]
    assert set(val_a) - set(grown) == set() or len(set(val_a) - set(grown)) <= 1
    assert hold_out(files, 0.0) == (files, []) and len(hold_out(files[:3], 0.01)[1]) == 1


def test_train_and_val_are_disjoint_and_cover_the_training_folders(tmp_path):
    root = make_dataset(tmp_path / "data", per_domain=10)
    kwargs = dict(resize=36, crop=32, flip=False, val_fraction=0.2)
    train_set = UnpairedImageFolders(root, ["a", "b"], "train", **kwargs)
    val_set = UnpairedImageFolders(root, ["a", "b"], "val", **kwargs)
    everything = UnpairedImageFolders(root, ["a", "b"], "train", resize=36, crop=32, flip=False)
    for d in range(2):
        assert len(val_set.files[d]) == 2 and len(train_set.files[d]) == 8
        assert not set(val_set.files[d]) & set(train_set.files[d])
        assert set(val_set.files[d]) | set(train_set.files[d]) == set(everything.files[d])
        assert train_set.held_out[d] == val_set.files[d]
    # the sampler only ever draws training files
    drawn = {row[1] for _ in range(200) for row in [train_set._plan_row()]}
    assert drawn <= set(train_set.files[0]) | set(train_set.files[1])
    with pytest.raises(DataError, match="no validation split"):
        UnpairedImageFolders(root, ["a", "b"], "val", resize=36, crop=32, flip=False)


@pytest.fixture(scope="module")
def val_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("val")
    root = make_dataset(base / "data", per_domain=6)
    cfg = load_config("reduced_res", tiny_overrides(root, 2) + ["data.val_fraction=0.34"])
    train(cfg, base / "run")
    return base, root


def test_the_run_records_its_split_and_keeps_it_across_a_resume(val_run):
    base, root = val_run
    record = json.loads((base / "run" / "splits.json").read_text())
    assert record["val_fraction"] == 0.34
    val = {name: d["val_files"] for name, d in record["domains"].items()}
    expected = {
        name: [p.name for p in hold_out(sorted((root / f"train{x}").glob("*.png")), 0.34)[1]]
        for name, x in (("apple", "A"), ("orange", "B"))
    }
    assert val == expected and all(len(v) == 2 for v in val.values())
    run = resume_run(base / "run", ["train.max_iters=3"])
    assert [[p.name for p in f] for f in run.dataset.held_out] == list(val.values())
    trained_on = {p.name for f in run.dataset.candidates for p in f}
    assert not trained_on & {n for v in val.values() for n in v}


def test_parse_temperatures():
    assert parse_temperatures("0.7, 0.8,0.8,1") == [0.7, 0.8, 1.0]
    for bad, message in (
        ("inf", "finite"),
        ("0", "above 0"),
        ("nan", "finite"),
        ("a", "not a number"),
        (",".join(str(i + 1) for i in range(21)), "at most 20"),
    ):
        with pytest.raises(Exception, match=message):
            parse_temperatures(bad)


def test_the_rule_takes_the_highest_temperature_that_stays_in_the_target_domain():
    rows = [(0.7, [0.97, 0.95]), (0.8, [0.95, 0.91]), (0.9, [0.93, 0.88]), (1.0, [0.9, 0.8])]
    assert choose_temperature(rows, 0.9)[0] == 0.8
    assert choose_temperature(rows, 0.5)[0] == 1.0
    chosen, why = choose_temperature(rows, 0.99)
    assert chosen == 0.7 and "no temperature" in why


def test_a_sweep_on_val_prints_one_row_per_value_and_stores_the_choice(cli, val_run, tmp_path, monkeypatch):
    base, root = val_run
    run = base / "run"
    monkeypatch.setenv("GMDRIT_CACHE", str(tmp_path / "cache"))
    proc = cli(
        "eval",
        run,
        "--split",
        "val",
        "--temperature",
        "0.5,2",
        "--metrics",
        "domain_accuracy,checkerboard",
        "--samples-per-input",
        "2",
        "--min-accuracy",
        "0.01",
        "--out",
        tmp_path / "sweep",
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert sum(1 for line in lines if line.strip("│ ").startswith(("0.5", "2 "))) == 2
    record = json.loads((tmp_path / "sweep" / "sweep.json").read_text())
    assert [r["temperature"] for r in record["rows"]] == [0.5, 2.0]
    for r in record["rows"]:
        report = json.loads(Path(r["eval"]).read_text())
        assert report["settings"]["split"] == "val" and report["settings"]["temperature"] == r["temperature"]
        assert report["data"]["val_images"] == {"apple": 2, "orange": 2}  # the held-out files, not the test ones
        with console.capture() as shown:
            render(report)
        assert "real orange: val vs train" in shown.get() and "test vs train" not in shown.get()
    stored = json.loads((run / "sampling.json").read_text())
    assert stored["split"] == "val" and stored["sample_temperature"] == record["sample_temperature"]
    chosen = stored["sample_temperature"]
    assert f"chosen: temperature {chosen:g}" in proc.stdout
    # every later use of the run samples at the chosen value, an export carries it and how it was chosen
    cfg, model = load_for_inference(run)
    assert cfg.model.sample_temperature == chosen and model.source.sampling["split"] == "val"
    export_model(run, tmp_path / "export")
    cfg2, model2 = load_for_inference(tmp_path / "export")
    assert cfg2.model.sample_temperature == chosen and model2.source.sampling["rule"] == stored["rule"]
    # the sweep.json it wrote is accepted by export --sweep for these weights (its recorded fingerprint)
    export_model(run, tmp_path / "export2", temperature=2.0, sweep=tmp_path / "sweep" / "sweep.json")
    assert load_for_inference(tmp_path / "export2")[1].source.sampling["split"] == "val"


def test_a_sweep_on_test_is_not_stored_and_val_without_a_split_is_refused(cli, tiny_gmdrit_run, tmp_path, monkeypatch):
    base, root = tiny_gmdrit_run
    monkeypatch.setenv("GMDRIT_CACHE", str(tmp_path / "cache"))
    result = sweep(
        EvalOptions(
            run=base / "run",
            data=str(root),
            metrics="checkerboard",
            samples_per_input=1,
            out=tmp_path / "s",
            device="cpu",
            split="test",
        ),
        [0.5, 1.0],
    )
    assert result.chosen is None and not (base / "run" / "sampling.json").exists()
    proc = cli(
        "eval",
        base / "run",
        "--split",
        "val",
        "--metrics",
        "checkerboard",
        "--samples-per-input",
        "1",
        "--out",
        tmp_path / "v",
    )
    assert_one_line_error(proc, "no validation split")


def test_a_stored_temperature_applies_only_to_the_weights_it_was_chosen_for(cli, tiny_gmdrit_run, tmp_path):
    import shutil

    base, _ = tiny_gmdrit_run
    run = tmp_path / "run"
    shutil.copytree(base / "run", run)
    default = load_for_inference(run)[0].model.sample_temperature
    iteration = load_for_inference(run)[1].source.iteration
    for chosen_for, expected in ((iteration, 0.5), (iteration + 100, default)):
        record = {"sample_temperature": 0.5, "rule": "r", "split": "val", "model": {"iteration": chosen_for}}
        (run / "sampling.json").write_text(json.dumps(record))
        cfg, model = load_for_inference(run)
        assert cfg.model.sample_temperature == expected
        said = model.source.describe()
        assert ("chosen for iteration" in said) == (chosen_for != iteration)
    # translate names it: the user sees which temperature it samples at and why
    proc = cli("translate", str(base / "data" / "testA"), "--domain", "orange", "--run", run, "--out", tmp_path / "o")
    assert proc.returncode == 0, proc.stderr
    assert f"0.5 in sampling.json was chosen for iteration {iteration + 100}" in " ".join(proc.stdout.split())


def test_export_refit_advises_a_sweep_the_run_can_do(cli, val_run, tiny_gmdrit_run, tmp_path):
    for run, expected, absent in (
        (val_run[0] / "run", "--split val --temperature", "HELD_OUT"),
        (tiny_gmdrit_run[0] / "run", "its run kept no validation split", "--split val"),
    ):
        proc = cli("export", run, "--refit-prior", "--data", tiny_gmdrit_run[1], "--out", tmp_path / run.parent.name)
        said = " ".join(proc.stdout.split())
        assert proc.returncode == 0, proc.stderr
        assert expected in said and absent not in said
