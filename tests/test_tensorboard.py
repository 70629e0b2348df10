"""TensorBoard event files written during training, read back with tensorboard's own event reader."""

import json
import math
from pathlib import Path

import pytest

from conftest import tiny_overrides
from gmdrit_cli.config.schema import load_config
from gmdrit_cli.training.trainer import resume_run, train

pytest.importorskip("tensorboard", reason="the tensorboard package is not installed")
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator  # noqa: E402


def read_events(run_dir: Path) -> EventAccumulator:
    # size_guidance 0 = keep every event (the default keeps a random sample of long series)
    acc = EventAccumulator(str(run_dir / "tensorboard"), size_guidance={"scalars": 0, "images": 0, "tensors": 0})
    acc.Reload()
    return acc


def metrics_lines(run_dir: Path) -> list[dict]:
    return [json.loads(x) for x in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow  # a training and its resume
def test_every_loss_at_every_logged_step_across_a_resume_without_duplicates(tiny_data, tmp_path):
    run_dir = tmp_path / "run"
    lr_eg = 3e-4
    extra = ["train.save_every=3", "train.sample_every=2", f"optim.lr_eg={lr_eg}"]
    train(load_config("reduced_res", tiny_overrides(tiny_data, 6) + extra), run_dir)
    # the first session logged iterations 1-6; continue from the checkpoint at 3 as after a kill that lost
    # the one at 6: iterations 4-6 are logged a second time, and must not appear twice
    run = resume_run(run_dir / "checkpoints" / "iter_0000003", ["train.max_iters=8"])
    assert run.iteration == 3
    run.fit()
    assert len(list((run_dir / "tensorboard").iterdir())) == 2  # one event file per session

    lines = metrics_lines(run_dir)
    assert [r["iter"] for r in lines] == list(range(1, 9))
    acc = read_events(run_dir)
    tags = acc.Tags()["scalars"]
    loss_keys = [k for k in lines[0] if k not in ("iter", "epoch", "lr_factor", "time", "gumbel_tau")]
    assert len(loss_keys) >= 10
    for key in loss_keys:
        matching = [t for t in tags if t.endswith("/" + key) and not t.startswith("learning_rate/")]
        assert len(matching) == 1, (key, matching)
        events = acc.Scalars(matching[0])
        assert [e.step for e in events] == list(range(1, 9)), key
        for e, line in zip(events, lines):
            assert e.value == pytest.approx(line[key], rel=1e-6, abs=1e-7), (key, e.step)

    # GM-DRIT's Gumbel temperature: tau = max(init_temp * exp(-decay_temp_rate * epoch), min_temp) with the
    # defaults 1, 0.013862944 and 0.5, where epoch = (iteration - 1) / (iterations per epoch) is fractional;
    # the epoch length is where metrics.jsonl's whole epoch first turns 1 (its line for iteration n holds
    # the epoch of the step that made it, (n - 1) // length)
    length = min(line["iter"] - 1 for line in lines if line["epoch"] == 1)
    tau = acc.Scalars("schedule/gumbel_temperature")
    assert [e.step for e in tau] == list(range(1, 9))
    for e in tau:
        assert e.value == pytest.approx(max(math.exp(-0.013862944 * (e.step - 1) / length), 0.5), rel=1e-6)
    assert tau[-1].value < tau[0].value == 1.0

    # learning rates: the generator's is lr_eg (the lambda policy keeps factor 1 before epoch 600)
    gen_lr = acc.Scalars("learning_rate/generator")
    assert [e.step for e in gen_lr] == list(range(1, 9))
    assert all(e.value == pytest.approx(lr_eg) for e in gen_lr)

    # the sample grids at iterations 2, 4, 6, 8, once each, with the size of the PNG the run saved
    images = acc.Images("samples")
    assert [e.step for e in images] == [2, 4, 6, 8]
    from PIL import Image

    with Image.open(run_dir / "samples" / "iter_0000008.png") as png:
        assert (images[-1].width, images[-1].height) == png.size

    # the resolved config as text, once per session
    config_events = acc.Tensors("config/text_summary")
    assert [e.step for e in config_events] == [1, 4]
    text = config_events[-1].tensor_proto.string_val[0].decode()
    assert "family: gmdrit" in text and "max_iters: 8" in text


def test_tensorboard_off_writes_no_event_files(tiny_data, tmp_path):
    train(load_config("quickstart", tiny_overrides(tiny_data, 1) + ["train.tensorboard=false"]), tmp_path / "run")
    assert (tmp_path / "run" / "metrics.jsonl").exists()
    assert not (tmp_path / "run" / "tensorboard").exists()
