"""The pretrained GM-DRIT apple <-> orange model inside the package: the default of translate / interpolate / eval."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors import safe_open

from gmdrit_cli.inference.model_files import PRETRAINED, load_for_inference, resolve_model

SAMPLE = Path(__file__).resolve().parents[1] / "gmdrit_cli" / "sample_data" / "apple2orange"


def pretrained_metadata() -> dict:
    with safe_open(str(PRETRAINED / "model.safetensors"), framework="pt") as f:
        return f.metadata()


def test_the_pretrained_model_is_small_int8_and_names_its_training_command():
    weights = PRETRAINED / "model.safetensors"
    assert weights.stat().st_size <= 8 * 1024 * 1024
    meta = pretrained_metadata()
    assert meta["family"] == "gmdrit" and meta["quantized"].startswith("int8")
    assert meta["trained_with"].startswith("gmdrit train --preset ")
    source = resolve_model(None)
    assert source.kind == "pretrained" and source.cfg.data.domains == ["apple", "orange"]
    assert "pretrained" in source.describe()
    cfg, model = load_for_inference(None)
    assert cfg.model.family == "gmdrit" and model.source.kind == "pretrained"


def test_the_pretrained_model_upsamples_without_a_grid_and_its_temperature_was_chosen_on_validation_images():
    """The shipped model uses resize-convolution (no checkerboard of transposed convolutions), and its default
    temperature is the one a sweep chose on the run's held-out validation split, never on the test images."""
    cfg, model = load_for_inference(None)
    assert cfg.model.upsample == "resize_conv" and cfg.data.val_fraction > 0
    chosen = json.loads(pretrained_metadata()["sample_temperature_chosen"])
    assert chosen["split"] == "val" and chosen["sample_temperature"] == cfg.model.sample_temperature
    tried = {row["temperature"]: row["mean"]["domain_accuracy"] for row in chosen["values"]}
    assert cfg.model.sample_temperature in tried and chosen["min_accuracy"] >= 0.9
    assert tried[cfg.model.sample_temperature] >= chosen["min_accuracy"]  # the mean over tasks; the rule is per task
    assert model.source.sampling["split"] == "val"


def test_the_pretrained_model_works_at_128_px_and_its_iteration_was_chosen_on_validation_images(cli, tmp_path):
    """The shipped model is the gmdrit_128 run: a square input gives 128 x 128 outputs, and the metadata says
    which iteration was shipped and that the validation curve chose it (never the test images)."""
    cfg, _ = load_for_inference(None)
    assert cfg.data.crop == 128 and cfg.name == "gmdrit_128"
    meta = pretrained_metadata()
    chosen = json.loads(meta["iteration_chosen"])
    assert chosen["split"] == "val" and chosen["iteration"] == int(meta["iteration"])
    assert str(chosen["iteration"]) in {str(row["iteration"]) for row in chosen["curve"]}
    apple = sorted((SAMPLE / "testA").iterdir())[0]
    proc = cli("translate", str(apple), "--domain", "orange", "--samples", "2", "--square", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    outs = sorted((tmp_path / "translations").glob(f"{apple.stem}_to_orange_[0-9].png"))
    assert [Image.open(p).size for p in outs] == [(128, 128)] * 2


def test_the_pretrained_settings_were_chosen_on_validation_images_and_any_refit_on_training_images():
    """The shipped settings (prior refit or none, keep_plain, temperature) were chosen on the validation split among
    recorded candidates; a refitted prior was fitted on training images (never the validation or test images)."""
    meta = pretrained_metadata()
    chosen = json.loads(meta["refit_chosen"])
    cfg, _ = load_for_inference(None)
    assert chosen["split"] == "val" and chosen["chosen"]["temperature"] == cfg.model.sample_temperature
    assert chosen["chosen"].get("keep_plain", 0) == cfg.model.keep_plain
    assert all(a >= 0.9 for a in chosen["validation"]["domain_accuracy"])
    if not chosen["chosen"]["refit_strength"]:
        assert "prior_refit" not in meta
        return
    refit = json.loads(meta["prior_refit"])
    assert refit["split"].startswith("train") and refit["strength"] == chosen["chosen"]["refit_strength"]
    assert [c["domain"] for c in refit["components"]] == [0, 1]


def test_translate_without_a_model_uses_the_pretrained_one(cli, tmp_path):
    t = load_for_inference(None)[0].model.sample_temperature
    apple = sorted((SAMPLE / "testA").iterdir())[0]
    proc = cli("translate", str(apple), "--domain", "orange", "--samples", "5", "--seed", "0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "embedded pretrained gmdrit model apple/orange" in proc.stdout.replace("\n", " ")
    if t != 1.0:  # the first line names a temperature other than the prior's own
        assert f"at temperature {t:g} (the model's default)" in proc.stdout.replace("\n", " ")
    outs = sorted((tmp_path / "translations").glob(f"{apple.stem}_to_orange_[0-9].png"))
    assert len(outs) == 5
    pixels = [np.asarray(Image.open(p), dtype=np.float32) for p in outs]
    assert min(np.abs(a - b).mean() for i, a in enumerate(pixels) for b in pixels[i + 1 :]) > 0.5  # 5 different outputs


def test_eval_without_a_model_writes_into_runs_pretrained(cli, tmp_path):
    t = load_for_inference(None)[0].model.sample_temperature
    proc = cli(
        "eval",
        "--data",
        str(SAMPLE),
        "--metrics",
        "ndb,jsd",
        "--samples-per-input",
        "1",
        "--device",
        "cpu",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    reports = list((tmp_path / "runs" / "pretrained" / "eval").glob("*/eval.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["model"]["path"] == "pretrained" and report["model"]["family"] == "gmdrit"
    assert report["settings"]["temperature"] == t  # the model's sample_temperature


def test_the_default_temperature_is_the_models_sample_temperature(tmp_path):
    """The pretrained model samples at its stored temperature unless --temperature says otherwise: the default
    gives the bytes of an explicit value equal to it, not those of another temperature."""
    from gmdrit_cli.inference.translate import translate

    cfg, model = load_for_inference(None)
    t = cfg.model.sample_temperature
    other = 1.0 if t != 1.0 else 0.7
    apple = sorted((SAMPLE / "testA").iterdir())[0]
    pixels = {}
    for name, value in (("default", None), ("stored", t), ("other", other)):
        result = translate(model, [apple], domain="orange", samples=2, temperature=value, seed=3, out=tmp_path / name)
        pixels[name] = [np.asarray(Image.open(p)) for p in result.items[0].outputs]
    assert all(np.array_equal(a, b) for a, b in zip(pixels["default"], pixels["stored"]))
    assert not np.array_equal(pixels["default"][0], pixels["other"][0])
