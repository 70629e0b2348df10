"""Checkpoints and exact resume (issue: runs that survive a session limit)."""

import logging
import random
import signal
import time
from pathlib import Path

import pytest

from conftest import (
    assert_same_run,
    cfg_for,
    data_for,
    set_args,
    start_gmdrit,
    tiny_overrides,
    wait_for_iterations,
)
from gmdrit_cli.errors import CheckpointError, ConfigError
from gmdrit_cli.families import MODEL_FAMILIES
from gmdrit_cli.training.checkpoint import find_checkpoint, list_checkpoints
from gmdrit_cli.training.trainer import Run, open_run, resume_run, train


# trains a run twice (straight, then stopped and resumed) and compares them bitwise; the family contract's
# test_save_resume_is_bitwise_identical_to_a_straight_run does the same in the quick loop
@pytest.mark.slow
@pytest.mark.parametrize("family", sorted(MODEL_FAMILIES))
def test_stop_and_resume_is_bitwise_identical(family, tiny_data, tmp_path):
    n = 6
    tiny_data = data_for(family, tiny_data, tmp_path)
    train(cfg_for(family, tiny_data, n), tmp_path / "straight")
    half = train(cfg_for(family, tiny_data, n // 2), tmp_path / "split")
    assert half.iterations == n // 2
    run = resume_run(tmp_path / "split", [f"train.max_iters={n}"])
    assert run.iteration == n // 2
    assert run.fit().iterations == n
    assert_same_run(tmp_path / "straight", tmp_path / "split")


@pytest.mark.slow  # trains a run twice (straight, then stopped and resumed) and compares them bitwise
@pytest.mark.parametrize("optimizer", ["fused", "foreach"])
def test_resume_is_bitwise_with_channels_last_weights(optimizer, tiny_data, tmp_path):
    """Checkpoints store optimizer state contiguous; restored state must take the channels-last layout
    of its weights, or fused Adam (which walks weight and state memory together) drifts on resume."""
    n, extra = 4, ("speed.channels_last=on", f"speed.optimizer={optimizer}")
    train(cfg_for("gmdrit", tiny_data, n, *extra), tmp_path / "straight")
    train(cfg_for("gmdrit", tiny_data, n // 2, *extra), tmp_path / "split")
    run = resume_run(tmp_path / "split", [f"train.max_iters={n}"])
    weight = next(p for p in run.model.networks["generator"].parameters() if p.dim() == 4)
    state = run.engine.optimizers["generator"].state[weight]
    assert state["exp_avg"].stride() == weight.stride()
    assert run.fit().iterations == n
    assert_same_run(tmp_path / "straight", tmp_path / "split")


def test_train_on_existing_run_continues_and_fresh_never_overwrites(tiny_data, tmp_path):
    train(cfg_for("mdmm", tiny_data, 2), tmp_path / "r")
    run = open_run(cfg_for("mdmm", tiny_data, 4), tmp_path / "r")
    assert run.iteration == 2 and run.resumed_from.name == "iter_0000002"
    fresh = open_run(cfg_for("mdmm", tiny_data, 4), tmp_path / "r", fresh=True)
    assert fresh.run_dir == tmp_path / "r-2" and fresh.iteration == 0
    assert list_checkpoints(tmp_path / "r" / "checkpoints")[0].name == "iter_0000002"


def test_incompatible_config_or_family_is_refused(tiny_data, tmp_path):
    train(cfg_for("mdmm", tiny_data, 2), tmp_path / "r")
    with pytest.raises(CheckpointError, match=r"different config \(model.nz\).*--fresh"):
        open_run(cfg_for("mdmm", tiny_data, 4, "model.nz=4"), tmp_path / "r")
    with pytest.raises(ConfigError, match="cannot change optim.lr_eg when resuming"):
        resume_run(tmp_path / "r", ["optim.lr_eg=1.0e-3", "train.max_iters=5"])
    if "gmdrit" in MODEL_FAMILIES:
        with pytest.raises(CheckpointError, match="holds a 'mdmm' run"):
            open_run(cfg_for("gmdrit", tiny_data, 4), tmp_path / "r")
    folder, state = find_checkpoint(tmp_path / "r")
    other = Run(cfg_for("mdmm", tiny_data, 4, "model.width=4"), tmp_path / "other")
    with pytest.raises(CheckpointError, match="do not fit network"):
        other.restore(folder, state)


@pytest.mark.slow  # 9 iterations, a checkpoint each
def test_retention_keeps_last_n_and_every_mth(tiny_data, tmp_path):
    cfg = cfg_for("mdmm", tiny_data, 9, "train.save_every=1", "train.keep_last=2", "train.keep_every=4")
    train(cfg, tmp_path / "r")
    names = sorted(p.name for p in list_checkpoints(tmp_path / "r" / "checkpoints"))
    assert names == ["iter_0000004", "iter_0000008", "iter_0000009"]
    assert (tmp_path / "r" / "checkpoints" / "latest").read_text().strip() == "iter_0000009"


def test_damaged_latest_falls_back_with_warning(tiny_data, tmp_path, caplog):
    train(cfg_for("mdmm", tiny_data, 3, "train.save_every=1"), tmp_path / "r")
    weights = tmp_path / "r" / "checkpoints" / "iter_0000003" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:1000])  # truncated
    with caplog.at_level(logging.WARNING, logger="gmdrit"):
        folder, state = find_checkpoint(tmp_path / "r")
    assert folder.name == "iter_0000002" and state["iteration"] == 2
    warning = " ".join(r.getMessage() for r in caplog.records)
    assert "iter_0000003" in warning and "iter_0000002" in warning
    with pytest.raises(CheckpointError, match="damaged"):
        find_checkpoint(tmp_path / "r" / "checkpoints" / "iter_0000003")


@pytest.mark.slow  # trains for seconds, by design
def test_time_budget_stops_before_the_budget_with_a_checkpoint(tiny_data, tmp_path):
    cfg = cfg_for("mdmm", tiny_data, 100000, "train.time_budget=8s")
    start = time.perf_counter()
    result = train(cfg, tmp_path / "r")
    assert time.perf_counter() - start < 8
    assert result.stopped == "time budget" and 0 < result.iterations < 100000
    folder, state = find_checkpoint(tmp_path / "r")
    assert state["iteration"] == result.iterations == int(folder.name.split("_")[1])


def test_no_unpickling_in_the_package():
    """Checkpoints are safetensors + JSON; the only torch.load reads third-party .pth metric weights with
    PyTorch's restricted loader (weights_only=True), which builds no arbitrary objects."""
    package = Path(__file__).resolve().parents[1] / "gmdrit_cli"
    files = sorted(package.rglob("*.py"))
    assert package / "training" / "checkpoint.py" in files  # the scan reads the package
    for path in files:
        for line in path.read_text().splitlines():
            for call in ("import pickle", "pickle.load", "weights_only=False", "serialization.load"):
                assert call not in line, f"{path}: {line}"
            if "torch.load(" in line:
                assert "weights_only=True" in line, f"{path}: {line}"


# -- process-level: signals and kills ----------------------------------------------------------------


def start_training(tmp_path, root, iters, *extra):
    overrides = tiny_overrides(root, iters) + list(extra)
    return start_gmdrit(
        "train", "--preset", "mdmm_baseline", "--run-dir", tmp_path / "r", *set_args(overrides), cwd=tmp_path
    )


@pytest.mark.slow
def test_sigterm_saves_and_prints_resume_hint(tiny_data, tmp_path):
    proc = start_training(tmp_path, tiny_data, 100000)
    wait_for_iterations(tmp_path / "r", 3, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert "stopped (SIGTERM)" in out and f"gmdrit resume {tmp_path / 'r'}" in out
    folder, state = find_checkpoint(tmp_path / "r")
    assert folder.name == f"iter_{state['iteration']:07d}" and state["iteration"] >= 3
    assert "Traceback" not in err


@pytest.mark.slow
def test_sigkill_at_random_moments_always_leaves_a_valid_checkpoint(tiny_data, tmp_path):
    """Kill -9 repeatedly (saving every iteration, so many kills land inside a checkpoint write);
    each time a valid checkpoint is found, and the resumed run ends bitwise equal to a straight one."""
    iters = 30
    extra = ("train.save_every=1", "train.keep_last=2")
    rng = random.Random(0)
    proc = start_training(tmp_path, tiny_data, iters, *extra)
    for _ in range(4):
        wait_for_iterations(tmp_path / "r", 1, proc)
        time.sleep(rng.uniform(0.0, 0.6))
        proc.kill()
        proc.wait()
        found = find_checkpoint(tmp_path / "r")
        assert found is not None
        folder, state = found
        assert state["iteration"] >= 1
        proc = start_gmdrit("resume", tmp_path / "r", cwd=tmp_path)
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    train(cfg_for("mdmm", tiny_data, iters, *extra), tmp_path / "straight")
    assert_same_run(tmp_path / "r", tmp_path / "straight")


def test_resuming_an_older_checkpoint_keeps_the_later_ones_and_their_grids_aside(cli, tiny_data, tmp_path):
    """`gmdrit resume RUN/checkpoints/iter_2` of a run at iteration 4: training passes 3 and 4 again and would
    replace their checkpoints and sample grids (with other numbers on a GPU); they move to RUN/after-iter_0000002/."""
    cfg = cfg_for("mdmm", tiny_data, 4, "train.save_every=1", "train.keep_last=5", "train.sample_every=1")
    train(cfg, tmp_path / "r")
    run = tmp_path / "r"
    before = {p.name: p.read_bytes() for p in (run / "checkpoints" / "iter_0000004").iterdir()}
    grid4 = (run / "samples" / "iter_0000004.png").read_bytes()

    proc = cli("resume", run / "checkpoints" / "iter_0000002", "--set", "train.max_iters=3")
    assert proc.returncode == 0, proc.stderr
    aside = run / "after-iter_0000002"
    assert sorted(p.name for p in (aside / "checkpoints").iterdir()) == ["iter_0000003", "iter_0000004"]
    assert {p.name: p.read_bytes() for p in (aside / "checkpoints" / "iter_0000004").iterdir()} == before
    assert (aside / "samples" / "iter_0000004.png").read_bytes() == grid4
    assert [p.name for p in list_checkpoints(run / "checkpoints")][0] == "iter_0000003"  # trained again, to 3
    assert (run / "checkpoints" / "latest").read_text().strip() == "iter_0000003"
