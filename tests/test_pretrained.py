"""The pretrained GM-DRIT apple <-> orange model inside the package: the default of translate / interpolate / eval."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image
from safetensors import safe_open

from gmdrit_cli.model_files import PRETRAINED, load_for_inference, resolve_model

SAMPLE = Path(__file__).resolve().parents[1] / "gmdrit_cli" / "sample_data" / "apple2orange"
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def gmdrit(*args, cwd):
    return subprocess.run([sys.executable, "-m", "gmdrit_cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=ENV, timeout=300)


def test_the_pretrained_model_is_small_int8_and_names_its_training_command():
    weights = PRETRAINED / "model.safetensors"
    assert weights.stat().st_size <= 4 * 1024 * 1024
    with safe_open(str(weights), framework="pt") as f:
        meta = f.metadata()
    assert meta["family"] == "gmdrit" and meta["quantized"].startswith("int8")
    assert meta["trained_with"].startswith("gmdrit train --preset ")
    source = resolve_model(None)
    assert source.kind == "pretrained" and source.cfg.data.domains == ["apple", "orange"]
    assert "pretrained" in source.describe()
    cfg, model = load_for_inference(None)
    assert cfg.model.family == "gmdrit" and model.source.kind == "pretrained"


def test_translate_without_a_model_uses_the_pretrained_one(tmp_path):
    apple = sorted((SAMPLE / "testA").iterdir())[0]
    proc = gmdrit("translate", str(apple), "--domain", "orange", "--samples", "5", "--seed", "0", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "embedded pretrained gmdrit model apple/orange" in proc.stdout.replace("\n", " ")
    assert "at temperature 0.89 (the model's default)" in proc.stdout.replace("\n", " ")
    outs = sorted((tmp_path / "translations").glob(f"{apple.stem}_to_orange_[0-9].png"))
    assert len(outs) == 5
    pixels = [np.asarray(Image.open(p), dtype=np.float32) for p in outs]
    assert min(np.abs(a - b).mean() for i, a in enumerate(pixels) for b in pixels[i + 1:]) > 0.5  # 5 different outputs


def test_eval_without_a_model_writes_into_runs_pretrained(tmp_path):
    proc = gmdrit("eval", "--data", str(SAMPLE), "--metrics", "ndb,jsd", "--samples-per-input", "1", "--device", "cpu",
                  cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    reports = list((tmp_path / "runs" / "pretrained" / "eval").glob("*/eval.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    assert report["model"]["path"] == "pretrained" and report["model"]["family"] == "gmdrit"
    assert report["settings"]["temperature"] == 0.89  # the model's sample_temperature


def test_the_default_temperature_is_the_models_sample_temperature(tmp_path):
    """The pretrained model samples at 0.89 (the setting that meets the accuracy and diversity targets) unless
    --temperature says otherwise: the default gives the bytes of an explicit 0.89, not those of 1."""
    from gmdrit_cli.inference import translate

    cfg, model = load_for_inference(None)
    assert cfg.model.sample_temperature == 0.89
    apple = sorted((SAMPLE / "testA").iterdir())[0]
    pixels = {}
    for name, t in (("default", None), ("0.89", 0.89), ("1", 1.0)):
        result = translate(model, [apple], domain="orange", samples=2, temperature=t, seed=3, out=tmp_path / name)
        pixels[name] = [np.asarray(Image.open(p)) for p in result.items[0].outputs]
    assert all(np.array_equal(a, b) for a, b in zip(pixels["default"], pixels["0.89"]))
    assert not np.array_equal(pixels["default"][0], pixels["1"][0])
