"""`gmdrit export --format onnx --int8` and the pretrained model's packaged int8 ONNX copy, which `gmdrit translate`
without --run/--checkpoint runs on onnxruntime (no torch imported) when onnxruntime is installed and the copy was
made from the pretrained weights shipped beside it (--engine auto); --engine torch / onnx choose.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_one_line_error, family_overrides, make_dataset, modules_after_cli

ort = pytest.importorskip("onnxruntime", reason="the onnx extra: pip install 'gmdrit[onnx]'")
onnx = pytest.importorskip("onnx", reason="the onnx extra: pip install 'gmdrit[onnx]'")

from gmdrit_cli.config.schema import load_config  # noqa: E402
from gmdrit_cli.inference import onnx_translate  # noqa: E402
from gmdrit_cli.inference.model_files import PRETRAINED, load_for_inference  # noqa: E402
from gmdrit_cli.inference.onnx_export import TOLERANCE, export_onnx  # noqa: E402
from gmdrit_cli.inference.quantize import dequantize_tensors, quantize_tensors  # noqa: E402
from gmdrit_cli.plain import keep_plain  # noqa: E402
from gmdrit_cli.training.trainer import train  # noqa: E402

SAMPLE = Path(__file__).resolve().parents[1] / "gmdrit_cli" / "sample_data" / "apple2orange"
APPLE = SAMPLE / "testA" / "n07740461_10011.jpg"
COPY = onnx_translate.PRETRAINED_ONNX
GRAPHS = ("model.onnx", "prior.onnx", "reference.onnx")


def _graph_bytes(folder: Path) -> int:
    return sum((folder / name).stat().st_size for name in GRAPHS)


def _int8_initializers(path: Path) -> tuple[int, int]:
    """(int8 initializers, DequantizeLinear nodes) of one graph."""
    graph = onnx.load(str(path)).graph
    int8 = sum(i.data_type == onnx.TensorProto.INT8 for i in graph.initializer)
    return int8, sum(n.op_type == "DequantizeLinear" for n in graph.node)


# -- export --format onnx --int8 ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def fp32_run(tmp_path_factory):
    """A GM-DRIT run with fp32 weights wide enough (width 32) that its convolutions are quantised, one step."""
    base = tmp_path_factory.mktemp("int8onnx")
    data = make_dataset(base / "data")
    cfg = load_config("quickstart", family_overrides("gmdrit", data, 1) + ["model.width=32"])
    train(cfg, base / "run")
    return base / "run"


@pytest.mark.slow
def test_int8_onnx_export_is_a_quarter_of_the_size_and_matches_torch_with_the_int8_weights(fp32_run, tmp_path):
    fp32 = export_onnx(fp32_run, tmp_path / "fp32")
    int8 = export_onnx(fp32_run, tmp_path / "int8", int8=True)
    assert fp32.int8 is None and int8.int8["tensors"] > 0 and int8.int8["large_fp32_tensors_left"] == 0
    assert _graph_bytes(tmp_path / "int8") < 0.35 * _graph_bytes(tmp_path / "fp32")
    meta = json.loads((tmp_path / "int8" / "onnx.json").read_text())
    assert meta["int8"]["format"].startswith("int8") and meta["checked"]["max_abs_difference"] <= TOLERANCE
    int8_count, dq_count = _int8_initializers(tmp_path / "int8" / "model.onnx")
    assert int8_count == dq_count > 0
    # the torch model with the weights the int8 safetensors export loads as (quantised, then dequantised)
    cfg, model = load_for_inference(fp32_run)
    _, plain = load_for_inference(fp32_run)
    with torch.no_grad():
        for net in model.networks.values():
            state = net.state_dict()
            for key, value in dequantize_tensors(quantize_tensors(state)).items():
                state[key].copy_(value)
    session = ort.InferenceSession(str(tmp_path / "int8" / "model.onnx"), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(2)
    z, condition = model.sample_attributes(1, 3, None, g)
    image = torch.rand(1, 3, 32, 32, generator=g) * 2 - 1
    (got,) = session.run(None, {"image": image.numpy(), "z": z.numpy(), "condition": condition.numpy()})
    with torch.no_grad():
        want = model.translate(image, 1, (z, condition)).numpy()
        unquantised = plain.translate(image, 1, (z, condition)).numpy()
    assert np.abs(got - want).max() <= TOLERANCE
    assert np.abs(got - unquantised).max() > TOLERANCE  # the graph holds the int8 weights, not the fp32 ones


# -- the packaged copy --------------------------------------------------------------------------------------


def test_the_packaged_onnx_copy_was_made_from_the_packaged_pretrained_weights():
    """Fails when the pretrained model.safetensors is replaced without `make pretrained-onnx` (translate would
    then quietly fall back to torch)."""
    meta = json.loads((COPY / "onnx.json").read_text())
    weights = PRETRAINED / "model.safetensors"
    assert onnx_translate.PRETRAINED_WEIGHTS == weights
    assert meta["source_sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest(), (
        f"the ONNX copy is stale: {onnx_translate.REGENERATE}"
    )
    assert meta["int8"]["tensors"] > 0 and meta["int8"]["large_fp32_tensors_left"] == 0
    assert meta["checked"]["max_abs_difference"] <= TOLERANCE
    assert _graph_bytes(COPY) <= 1.2 * weights.stat().st_size  # int8 as the safetensors export is
    assert onnx_translate.packaged_onnx() == (COPY, "")


def test_the_packaged_copy_translates_as_the_torch_pretrained_model():
    cfg, model = load_for_inference(None)
    session = ort.InferenceSession(str(COPY / "model.onnx"), providers=["CPUExecutionProvider"])
    g = torch.Generator().manual_seed(0)
    z, condition = model.sample_attributes(1, 2, None, g)
    image = torch.rand(1, 3, cfg.data.crop, cfg.data.crop, generator=g) * 2 - 1
    (got,) = session.run(None, {"image": image.numpy(), "z": z.numpy(), "condition": condition.numpy()})
    got = keep_plain(image.numpy(), got, cfg.model.keep_plain)  # as the ONNX path composites the graph's output
    with torch.no_grad():
        want = model.translate(image, 1, (z, condition)).numpy()
    assert np.abs(got - want).max() <= TOLERANCE


# -- translate without a model: which engine ----------------------------------------------------------------


def test_auto_runs_the_packaged_copy_without_importing_torch(tmp_path):
    proc, loaded = modules_after_cli(
        "translate", str(APPLE), "--domain", "orange", "--samples", "5", "--out", str(tmp_path / "o")
    )
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime" in loaded
    assert not {name.split(".")[0] for name in loaded} & {"torch", "torchvision", "safetensors", "scipy"}
    text = " ".join(proc.stdout.split())
    assert "embedded pretrained gmdrit model apple/orange" in text and "onnxruntime (CPU, no torch)" in text
    assert len(list((tmp_path / "o").iterdir())) == 6  # 5 samples and the grid


def test_engine_torch_runs_the_torch_model_and_references_agree_with_onnx(cli, tmp_path):
    """Reference-guided outputs (no random draw) of both engines agree within a grey level; --engine torch says
    torch, auto says onnxruntime."""
    refs = [a for r in sorted((SAMPLE / "testB").iterdir())[:2] for a in ("--reference", str(r))]
    a = cli("translate", APPLE, "--domain", "orange", *refs, "--engine", "torch", "--out", tmp_path / "torch")
    b = cli("translate", APPLE, "--domain", "orange", *refs, "--out", tmp_path / "auto")
    assert a.returncode == 0, a.stderr
    assert b.returncode == 0, b.stderr
    assert "with torch" in " ".join(a.stdout.split()) and "onnxruntime" not in a.stdout
    assert "onnxruntime (CPU, no torch)" in " ".join(b.stdout.split())
    names = sorted(p.name for p in (tmp_path / "torch").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "auto").iterdir()) and len(names) == 3
    for name in names:
        x, y = (np.asarray(Image.open(tmp_path / d / name), dtype=np.int16) for d in ("torch", "auto"))
        assert np.abs(x - y).max() <= 1


@pytest.fixture
def stale_copy(tmp_path, monkeypatch):
    """The packaged copy in a temporary folder whose onnx.json names other weights, put where translate looks."""
    copy = tmp_path / "apple2orange-onnx"
    shutil.copytree(COPY, copy)
    meta = json.loads((copy / "onnx.json").read_text())
    meta["source_sha256"] = hashlib.sha256(b"an earlier pretrained model").hexdigest()
    (copy / "onnx.json").write_text(json.dumps(meta))
    monkeypatch.setattr(onnx_translate, "PRETRAINED_ONNX", copy)
    return copy


def test_a_stale_copy_is_never_used(cli, stale_copy, tmp_path):
    """auto falls back to torch; --engine onnx refuses in one line naming the command that makes it again."""
    proc = cli("translate", APPLE, "--domain", "orange", "--samples", "2", "--out", tmp_path / "a")
    assert proc.returncode == 0, proc.stderr
    assert "with torch" in " ".join(proc.stdout.split()) and str(stale_copy) not in proc.stdout
    assert len(list((tmp_path / "a").iterdir())) == 3
    proc = cli("translate", APPLE, "--domain", "orange", "--engine", "onnx", "--out", tmp_path / "b")
    assert_one_line_error(proc, "--engine onnx", "stale", "make pretrained-onnx")
    assert not (tmp_path / "b").exists()


def test_engine_onnx_refuses_without_onnxruntime_or_a_copy(cli, tmp_path, monkeypatch):
    import importlib.util

    monkeypatch.setattr(onnx_translate, "PRETRAINED_ONNX", tmp_path / "none")
    assert_one_line_error(
        cli("translate", APPLE, "--domain", "orange", "--engine", "onnx", "--out", tmp_path / "b"),
        "--engine onnx",
        "no ONNX copy",
    )
    monkeypatch.setattr(onnx_translate, "PRETRAINED_ONNX", COPY)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "onnxruntime" else find_spec(name, *a)
    )
    assert_one_line_error(
        cli("translate", APPLE, "--domain", "orange", "--engine", "onnx", "--out", tmp_path / "b"),
        "onnxruntime is not installed",
    )
    proc = cli("translate", APPLE, "--domain", "orange", "--samples", "1", "--out", tmp_path / "c")
    assert proc.returncode == 0, proc.stderr
    assert "with torch" in " ".join(proc.stdout.split())
    assert not (tmp_path / "b").exists()


def test_engine_with_a_given_model(cli, fp32_run, tmp_path):
    """A run is torch's and an ONNX export onnxruntime's: --engine naming the other one is one line."""
    export_onnx(fp32_run, tmp_path / "x")
    image = str(sorted((fp32_run.parent / "data" / "testA").iterdir())[0])
    assert_one_line_error(
        cli("translate", image, "--domain", "orange", "--run", fp32_run, "--engine", "onnx"),
        "--engine onnx",
        "not an ONNX export",
    )
    assert_one_line_error(
        cli(
            "translate", image, "--domain", "orange", "--checkpoint", tmp_path / "x" / "model.onnx", "--engine", "torch"
        ),
        "--engine torch",
        "onnxruntime only",
    )
