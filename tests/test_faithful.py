"""Paired evaluation: faithfulness to the ground truth, realism by the domain classifier, whether outputs differ at
all, the use of z, and which split of a paired dataset `--split` reads."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_BICYCLEGAN, make_paired_dataset
from gmdrit_cli.config.schema import load_config
from gmdrit_cli.evaluation.evaluate import EvalOptions, evaluate
from gmdrit_cli.evaluation.metrics import MetricError
from gmdrit_cli.evaluation.metrics.eval_diversity import MSSSIMScores
from gmdrit_cli.evaluation.metrics.eval_faithful import Z_STEPS, ZSensitivityScores
from gmdrit_cli.evaluation.metrics.evaluator import EvalContext
from gmdrit_cli.evaluation.metrics.images import quantise
from gmdrit_cli.inference.model_files import load_for_inference
from gmdrit_cli.training.trainer import train

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def paired_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("faithful")
    root = make_paired_dataset(base / "data", per_split=4, size=32)
    train(load_config("bicyclegan_quickstart", [f"data.root={root}", *TINY_BICYCLEGAN]), base / "run")
    return base, root


def halves(path) -> tuple[np.ndarray, np.ndarray]:
    arr = np.asarray(Image.open(path).convert("RGB"))
    return arr[:, :32], arr[:, 32:]


def test_faithfulness_realism_and_distinct_outputs_on_the_test_pairs(paired_run, tmp_path, monkeypatch):
    base, root = paired_run
    monkeypatch.setenv("GMDRIT_CACHE", str(tmp_path / "cache"))
    report = evaluate(
        EvalOptions(
            run=base / "run",
            metrics="paired_l1,paired_msssim,domain_accuracy,diversity_msssim",
            samples_per_input=2,
            out=tmp_path / "out",
            device="cpu",
        )
    ).report
    task = report["tasks"][0]
    # recomputed: the model with the ground truth's encoded z, L1 by numpy, on the test pairs (not val)
    _, model = load_for_inference(base / "run")
    pairs = [halves(root / "test" / f"{i}.png") for i in range(4)]
    a = torch.from_numpy(np.stack([p[0] for p in pairs])).permute(0, 3, 1, 2).float() / 127.5 - 1
    b = torch.from_numpy(np.stack([p[1] for p in pairs])).permute(0, 3, 1, 2).float() / 127.5 - 1
    out = quantise(model.translate(a, 1, model.encode_reference(b, torch.ones(4, dtype=torch.long)))).numpy()
    truth = np.stack([p[1] for p in pairs]).transpose(0, 3, 1, 2)
    assert task["paired_l1"]["mean"] == pytest.approx(
        np.abs(out.astype(float) - truth).mean() / 255, abs=5e-6
    )  # a pixel or two may round apart
    assert 0 < task["paired_msssim"]["mean"] < 1
    # the real line: the input edge map itself (read as grayscale, data.input_channels 1) against the truth
    grey = np.stack([np.asarray(Image.fromarray(p[0]).convert("L"), dtype=float) for p in pairs])[:, None]
    assert report["reference"]["photos"]["paired_l1"]["mean"] == pytest.approx(
        np.abs(grey - truth).mean() / 255, rel=1e-6
    )
    # realism: the classifier trained on the two sides of the training pairs scores the outputs
    assert 0 <= task["domain_accuracy"]["to_target"] <= 1
    assert report["protocols"]["domain_accuracy"]["classifier_protocol"]["domains"] == ["edges", "photos"]
    assert task["diversity_msssim"]["inputs_with_distinct_outputs"] in (0.0, 0.25, 0.5, 0.75, 1.0)


def test_val_reads_the_val_pairs_and_unpaired_models_refuse_paired_metrics(paired_run, tiny_gmdrit_run, tmp_path):
    base, root = paired_run
    report = evaluate(
        EvalOptions(
            run=base / "run", metrics="paired_l1", samples_per_input=1, split="val", out=tmp_path / "val", device="cpu"
        )
    ).report
    assert report["data"]["val_images"] == {"edges": 4, "photos": 4} and report["settings"]["split"] == "val"
    unpaired, data = tiny_gmdrit_run
    with pytest.raises(MetricError, match="only paired"):
        evaluate(
            EvalOptions(
                run=unpaired / "run",
                data=str(data),
                metrics="paired_l1",
                samples_per_input=1,
                out=tmp_path / "u",
                device="cpu",
            )
        )


class _LinearInZ:
    """A stand-in model whose output is the first attribute coordinate times ``gain``, everywhere."""

    def __init__(self, gain: float):
        self.gain = gain

    def sample_attributes(self, target, n, component, generator, temperature):
        z = torch.zeros(n, 4)
        z[:, 0] = torch.tensor([-0.8, 0.8])[:n]
        return z, torch.zeros(n, 2)

    def translate(self, images, target, attributes):
        z, _ = attributes
        return (self.gain * z[:, 0]).view(-1, 1, 1, 1).expand(len(z), 3, 8, 8)


@pytest.mark.parametrize("gain", [0.0, 0.5, 1.0])
def test_z_sensitivity_is_the_output_change_per_unit_of_z(gain):
    images = torch.zeros(3, 3, 8, 8, dtype=torch.uint8)
    options = EvalOptions(run=None, seed=0, temperature=1.0)
    ctx = EvalContext(
        options,
        ["z_sensitivity"],
        _LinearInZ(gain),
        torch.device("cpu"),
        ["a", "b"],
        ".",
        lambda *a: None,
        test_images=[images, images],
    )
    ev = ZSensitivityScores(ctx, ["z_sensitivity"])
    ev.start_task(0, 1)
    result = ev.task_result()["z_sensitivity"]
    # output in [-1, 1] -> 8 bit -> /255: half of the change in [-1, 1] units; rounding to 8 bit adds < 1/255/step
    step = 1.6 / Z_STEPS
    assert result["inputs"] == 3 and result["mean"] == pytest.approx(gain / 2, abs=1 / 255 / step)


def test_inputs_whose_outputs_all_coincide_are_counted():
    ev = MSSSIMScores.__new__(MSSSIMScores)
    ev._diversity = lambda outputs: 0.0
    ev.options = EvalOptions(run=None, samples_per_input=2)
    ev.start_task(0, 1)
    same = torch.zeros(2, 3, 8, 8, dtype=torch.uint8)
    differ = same.clone()
    differ[1, 0, 0, 0] = 1
    ev.update(torch.cat([same, differ, same]), 2)
    assert ev.task_result()["diversity_msssim"]["inputs_with_distinct_outputs"] == pytest.approx(1 / 3)
