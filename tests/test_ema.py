"""The EMA copy of the test-time networks (train.ema_beta): its values, checkpoints, exports and test time."""

import logging

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import assert_same_run, tiny_overrides
from gmdrit_cli.config.schema import load_config
from gmdrit_cli.errors import InferenceError
from gmdrit_cli.inference import model_files as mf
from gmdrit_cli.training.checkpoint import list_checkpoints
from gmdrit_cli.training.trainer import Run, resume_run, train

BETA = 0.75  # far from 1, so that three iterations move the copy visibly


def ema_cfg(root, iters, *extra):
    return load_config("mdmm_baseline", tiny_overrides(root, iters) + [f"train.ema_beta={BETA}", *extra])


def test_ema_matches_an_independent_moving_average(tiny_data, tmp_path):
    """ema_0 = initial weights, ema_k = beta * ema_(k-1) + (1 - beta) * weights_k, recomputed in float64
    from the raw weights saved after every iteration."""
    cfg = ema_cfg(tiny_data, 3, "train.save_every=1", "train.keep_last=10")
    initial = {
        f"{n}.{k}": v.detach().double().clone()
        for n, net in Run(cfg, tmp_path / "unused").model.networks.items()
        for k, v in net.state_dict().items()
    }
    train(cfg, tmp_path / "r")
    expected = {
        k: v for k, v in initial.items() if k.startswith(("content_encoder.", "attribute_encoder.", "generator."))
    }
    assert expected
    for folder in reversed(list_checkpoints(tmp_path / "r" / "checkpoints")):  # iterations 1, 2, 3
        saved = load_file(str(folder / "model.safetensors"))
        for key in expected:
            expected[key] = BETA * expected[key] + (1 - BETA) * saved[key].double()
            assert torch.allclose(saved["ema." + key].double(), expected[key], atol=1e-6), (folder.name, key)
        # only the test-time networks have a copy, and it moved away from the raw weights
        assert not any(k.startswith("ema.dis_") for k in saved)
        key = next(k for k in expected if k.startswith("generator.") and k.endswith("weight"))
        assert not torch.equal(saved["ema." + key], saved[key])


def test_ema_off_writes_no_copy(tiny_data, tmp_path):
    train(load_config("mdmm_baseline", tiny_overrides(tiny_data, 1)), tmp_path / "r")
    folder = list_checkpoints(tmp_path / "r" / "checkpoints")[0]
    assert not any(k.startswith("ema.") for k in load_file(str(folder / "model.safetensors")))


@pytest.mark.slow  # trains a run twice (straight, then stopped and resumed) and compares them bitwise
def test_resume_with_ema_is_bitwise(tiny_data, tmp_path):
    train(ema_cfg(tiny_data, 4), tmp_path / "straight")
    train(ema_cfg(tiny_data, 2), tmp_path / "split")
    assert resume_run(tmp_path / "split", ["train.max_iters=4"]).fit().iterations == 4
    assert_same_run(tmp_path / "straight", tmp_path / "split")  # every tensor, the ema.* copy included


def test_turning_ema_on_when_resuming_starts_from_the_weights(tiny_data, tmp_path, caplog):
    train(load_config("mdmm_baseline", tiny_overrides(tiny_data, 1)), tmp_path / "r")
    with caplog.at_level(logging.WARNING, logger="gmdrit"):
        run = resume_run(tmp_path / "r", ["train.max_iters=2", f"train.ema_beta={BETA}"])
    assert "no EMA copy" in caplog.text
    weight = run.model.networks["generator"].state_dict()
    assert all(torch.equal(run.engine.ema[f"generator.{k}"], v) for k, v in weight.items())


def _weights_of(model, name="generator"):
    return model.networks[name].state_dict()


def test_test_time_uses_the_ema_copy_unless_told_not_to(tiny_data, tmp_path):
    train(ema_cfg(tiny_data, 3), tmp_path / "r")
    folder = list_checkpoints(tmp_path / "r" / "checkpoints")[0]
    saved = load_file(str(folder / "model.safetensors"))
    _, model = mf.load_for_inference(tmp_path / "r")
    assert model.source.ema and "EMA weights" in model.source.describe()
    for key, value in _weights_of(model).items():
        assert torch.equal(value, saved[f"ema.generator.{key}"]), key
    _, raw = mf.load_for_inference(tmp_path / "r", ema=False)
    assert not raw.source.ema
    for key, value in _weights_of(raw).items():
        assert torch.equal(value, saved[f"generator.{key}"]), key
    # and the translations differ accordingly
    x = torch.zeros(1, 3, 32, 32)
    g = lambda: torch.Generator().manual_seed(0)  # noqa: E731
    assert not torch.equal(model.translate(x, 1, generator=g()), raw.translate(x, 1, generator=g()))


def test_exports_carry_the_ema_weights(tiny_data, tmp_path):
    train(ema_cfg(tiny_data, 3), tmp_path / "r")
    folder = list_checkpoints(tmp_path / "r" / "checkpoints")[0]
    saved = load_file(str(folder / "model.safetensors"))
    mf.export_model(tmp_path / "r", tmp_path / "exp")
    exported = load_file(str(tmp_path / "exp" / "model.safetensors"))
    assert exported.keys() == {k[len("ema.") :] for k in saved if k.startswith("ema.")}
    assert all(torch.equal(v, saved["ema." + k]) for k, v in exported.items())
    with safe_open(str(tmp_path / "exp" / "model.safetensors"), framework="pt") as f:
        assert f.metadata()["weights"] == "ema" and float(f.metadata()["ema_beta"]) == BETA
    _, model = mf.load_for_inference(tmp_path / "exp")
    assert model.source.ema
    with pytest.raises(InferenceError, match="--no-ema"):
        mf.load_for_inference(tmp_path / "exp", ema=False)
    mf.export_model(tmp_path / "r", tmp_path / "raw", ema=False)
    raw = load_file(str(tmp_path / "raw" / "model.safetensors"))
    assert all(torch.equal(v, saved[k]) for k, v in raw.items())
