"""`model.keep_plain` (gmdrit_cli.plain): translations composited with their input by how colourless each input
pixel is, on the torch path, the ONNX path and through `gmdrit export --keep-plain`."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_one_line_error
from gmdrit_cli.inference.model_files import export_model, load_for_inference
from gmdrit_cli.plain import keep_plain, plain_weight


def _pixel_rows() -> torch.Tensor:
    """1 x 3 x 1 x 4 in [-1, 1]: white, black, a colour of chroma 0.1 (grey-blue) and a saturated orange."""
    rgb = torch.tensor([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [0.5, 0.5, 0.6], [1.0, 0.55, 0.1]])
    return (rgb.T.reshape(1, 3, 1, 4)) * 2 - 1


def test_plain_pixels_are_kept_coloured_ones_untouched_and_both_array_kinds_agree():
    source = _pixel_rows()
    output = torch.full_like(source, 0.3)
    kept = keep_plain(source, output, 1.0)
    assert torch.allclose(kept[..., :2], source[..., :2])  # white and black exactly as they were
    assert torch.allclose(kept[..., 3], output[..., 3])  # the orange: the translation's own pixel
    half = 0.5 * (source[..., 2] + output[..., 2])  # chroma 0.1: halfway to the 0.2 from which nothing is kept
    assert torch.allclose(kept[..., 2], half, atol=1e-6)
    assert torch.allclose(keep_plain(source, output, 0.5)[..., 0], 0.5 * (source[..., 0] + output[..., 0]))
    assert keep_plain(source, output, 0.0) is output
    as_numpy = keep_plain(source.numpy(), output.numpy(), 1.0)
    assert isinstance(as_numpy, np.ndarray) and np.allclose(as_numpy, kept.numpy(), atol=1e-6)
    assert plain_weight(source).flatten().tolist() == pytest.approx([1.0, 1.0, 0.5, 0.0], abs=1e-6)


def _white_background_image(path, size: int = 32):
    """A saturated red square on a white background."""
    image = Image.new("RGB", (size, size), (255, 255, 255))
    image.paste((210, 30, 40), (8, 8, 24, 24))
    image.save(path)
    return path


def test_an_export_with_keep_plain_keeps_the_white_background_of_every_draw(tiny_gmdrit_run, tmp_path):
    base, _ = tiny_gmdrit_run
    export_model(base / "run", tmp_path / "plain")
    export_model(base / "run", tmp_path / "kept", keep_plain=1.0)
    cfg, model = load_for_inference(tmp_path / "kept")
    assert cfg.model.keep_plain == 1.0 and load_for_inference(tmp_path / "plain")[0].model.keep_plain == 0.0
    pixels = np.asarray(Image.open(_white_background_image(tmp_path / "in.png")), dtype=np.float32)
    x = torch.from_numpy(pixels).permute(2, 0, 1)[None] / 127.5 - 1
    z, y = model.sample_attributes(1, 5, None, torch.Generator().manual_seed(0))
    kept = model.translate(x, 1, (z, y))
    free = load_for_inference(tmp_path / "plain")[1].translate(x, 1, (z, y))
    background = torch.ones(32, 32, dtype=torch.bool)
    background[8:24, 8:24] = False
    assert torch.allclose(kept[:, :, background], x[:, :, background].expand(5, -1, -1), atol=1e-5)
    assert (free[:, :, background] - 1).abs().mean() > 0.05  # the untrained generator does change it
    assert torch.allclose(kept[:, :, ~background], free[:, :, ~background])  # the red square: as translated


def test_the_onnx_export_composites_as_torch_does(cli, tiny_gmdrit_run, tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra: pip install 'gmdrit[onnx]'")
    base, root = tiny_gmdrit_run
    export_model(base / "run", tmp_path / "kept", keep_plain=1.0)
    proc = cli("export", tmp_path / "kept", "--format", "onnx", "--out", tmp_path / "onnx")
    assert proc.returncode == 0, proc.stderr
    image = _white_background_image(tmp_path / "in.png")
    reference = root / "testB" / "1.png"  # an encoded attribute: the same on both paths (draws are not)
    for engine, model in (
        ("torch", tmp_path / "kept" / "model.safetensors"),
        ("onnx", tmp_path / "onnx" / "model.onnx"),
    ):
        proc = cli(
            "translate", image, "-d", "orange", "--checkpoint", model, "-r", reference, "--out", tmp_path / engine
        )
        assert proc.returncode == 0, proc.stderr
    torch_out, onnx_out = (
        np.asarray(Image.open(tmp_path / engine / "in_to_orange_ref1.png"), dtype=np.int16)
        for engine in ("torch", "onnx")
    )
    assert np.abs(torch_out - onnx_out).max() <= 1
    assert (onnx_out[:8] == 255).all() and (onnx_out[8:24, 8:24] != 255).any()  # white kept, the square translated


def test_keep_plain_user_errors_are_one_line(cli, tiny_gmdrit_run, tmp_path):
    base, _ = tiny_gmdrit_run
    for extra, fragment in (
        (["--keep-plain", "1.5"], "--keep-plain 1.5: give at most 1"),
        (["--keep-plain", "nan"], "--keep-plain nan"),
        (["--keep-plain", "1", "--format", "onnx"], "belong to a safetensors export"),
    ):
        assert_one_line_error(cli("export", base / "run", "--out", tmp_path / "e", *extra), fragment)
    assert not (tmp_path / "e").exists()
