"""model.upsample: the official transposed convolutions and the resize-convolution, in the MDMM and GM-DRIT
generators (shapes, parameter counts, the grid each prints on a flat input, resume, export)."""

from __future__ import annotations

import hashlib
import json

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from conftest import make_dataset, tiny_overrides
from gmdrit_cli.config.schema import load_config
from gmdrit_cli.errors import ConfigError
from gmdrit_cli.families.blocks import ReLUINSConvTranspose2d, ReLUINSResizeConv2d, resize_conv, tile, upsample_block
from gmdrit_cli.families.gmdrit.nets import build_gmdrit_networks
from gmdrit_cli.families.mdmm.nets import Generator
from gmdrit_cli.inference.model_files import export_model, load_for_inference
from gmdrit_cli.training.trainer import resume_run, train

torch.set_num_threads(1)
MODES = ("transposed", "resize_conv")


def test_resize_conv_block_shapes_and_the_tiled_vector_in_closed_form():
    torch.manual_seed(0)
    block = ReLUINSResizeConv2d(12, 5)
    x, vec = torch.randn(3, 8, 6, 7), torch.randn(3, 4)
    out = block(x, vec)
    assert out.shape == (3, 5, 12, 14)
    # the closed form equals convolving the explicitly tiled map
    assert torch.allclose(out, block(torch.cat([x, tile(vec, 6, 7)], 1)), atol=1e-5)
    assert sum(p.numel() for p in block.parameters()) == sum(
        p.numel() for p in ReLUINSConvTranspose2d(12, 5).parameters()
    )
    with pytest.raises(ValueError, match="upsample"):
        upsample_block(4, 4, "bilinear")


def test_the_sub_pixel_form_equals_resizing_then_convolving():
    torch.manual_seed(0)
    x, weight, bias = (
        torch.randn(2, 5, 7, 6, dtype=torch.float64),
        torch.randn(3, 5, 3, 3, dtype=torch.float64),
        torch.randn(3, dtype=torch.float64),
    )
    resized = F.pad(F.interpolate(x, scale_factor=2, mode="nearest"), (1, 1, 1, 1), mode="reflect")
    assert torch.allclose(resize_conv(x, weight, bias), F.conv2d(resized, weight, bias), atol=1e-12)


def test_a_flat_input_gives_a_grid_through_the_transposed_conv_and_a_flat_output_through_resize_conv():
    torch.manual_seed(0)
    flat = torch.ones(1, 4, 8, 8)
    transposed = ReLUINSConvTranspose2d(4, 2).model[0]  # the convolution alone: norm and ReLU only rescale
    resized = ReLUINSResizeConv2d(4, 2).conv
    with torch.no_grad():
        t = transposed(flat)[0, :, 2:-2, 2:-2]  # away from the border
        r = resize_conv(flat, resized.weight, resized.bias)[0]
    # uneven overlap: even and odd output positions receive different sums of kernel taps
    assert (t[:, 0::2, 0::2] - t[:, 1::2, 1::2]).abs().max() > 1e-3
    assert torch.allclose(r, r[:, :1, :1].expand_as(r), atol=1e-6)  # every pixel alike, the border too


@pytest.mark.parametrize("family", ["mdmm", "gmdrit"])
def test_both_upsamplings_have_the_same_parameters_and_output_shape(family):
    counts, shapes = [], []
    for mode in MODES:
        torch.manual_seed(0)
        if family == "mdmm":
            gen = Generator(2, nz=8, width=8, upsample=mode)
            out = gen(torch.randn(2, 32, 8, 8), torch.randn(2, 8), torch.eye(2))
        else:
            gen = build_gmdrit_networks(2, 32, 8, width=8, upsample=mode)["generator"]
            out, _ = gen(torch.randn(2, 32, 8, 8), torch.randn(2, 8), torch.eye(2))
        counts.append(sum(p.numel() for p in gen.parameters()))
        shapes.append(tuple(out.shape))
        kinds = {type(m) for m in gen.modules()}
        assert (ReLUINSResizeConv2d in kinds) == (mode == "resize_conv")
    assert counts[0] == counts[1] and shapes[0] == shapes[1] == (2, 3, 32, 32)


def test_unknown_upsampling_is_refused_with_the_choices():
    with pytest.raises(ConfigError, match="transposed.*resize_conv"):
        load_config("quickstart", ["model.upsample=bilinear"])


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("upsample") / "data")


@pytest.mark.slow  # trains a run twice (straight, then stopped and resumed) and compares them bitwise
@pytest.mark.parametrize("family", ["mdmm", "gmdrit"])
def test_resize_conv_resumes_bitwise_with_ema_and_exports_the_same_outputs(family, data, tmp_path):
    def cfg(iters):
        return load_config(
            "quickstart",
            tiny_overrides(data, iters)
            + [f"model.family={family}", "model.upsample=resize_conv", "train.ema_beta=0.9", "data.val_fraction=0.25"],
        )

    train(cfg(4), tmp_path / "straight")
    train(cfg(2), tmp_path / "split")
    assert resume_run(tmp_path / "split", ["train.max_iters=4"]).fit().iterations == 4
    for name in ("model.safetensors", "optim.safetensors"):
        a = load_file(str(tmp_path / "straight" / "checkpoints" / "iter_0000004" / name))
        b = load_file(str(tmp_path / "split" / "checkpoints" / "iter_0000004" / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), name
    export_model(tmp_path / "straight", tmp_path / "export")
    export_model(tmp_path / "straight", tmp_path / "int8", int8=True)
    outs = []
    for path in (tmp_path / "straight", tmp_path / "export", tmp_path / "int8"):
        loaded_cfg, model = load_for_inference(path)
        assert loaded_cfg.model.upsample == "resize_conv"
        gen = torch.Generator().manual_seed(0)
        z, y = model.sample_attributes(1, 2, None, gen, 1.0)
        with torch.no_grad():
            outs.append(model.translate(torch.zeros(2, 3, 32, 32), 1, (z, y)))
    assert torch.equal(outs[0], outs[1])
    assert not torch.equal(outs[0], outs[2]) and (outs[0] - outs[2]).abs().max() < 0.05  # int8: close, not equal


@pytest.mark.slow  # two trainings
def test_a_new_run_starts_from_another_models_weights_at_another_crop(data, tmp_path):
    """train.init_from: a 32-px run's networks start a 128-px run (progressive training); the tensors sized by the
    crop keep their fresh initialisation; resuming reads the checkpoint, not the init model."""
    base = tiny_overrides(data, 2) + ["model.family=gmdrit", "model.upsample=resize_conv", "train.ema_beta=0.9"]
    train(load_config("quickstart", base), tmp_path / "small")
    small = load_file(str(tmp_path / "small" / "checkpoints" / "iter_0000002" / "model.safetensors"))
    big_cfg = base + ["data.resize=136", "data.crop=128", f"train.init_from={tmp_path / 'small'}", "train.max_iters=1"]
    from gmdrit_cli.training.trainer import open_run

    run = open_run(load_config("quickstart", big_cfg), tmp_path / "big")
    state = {f"{n}.{k}": v for n, net in run.model.networks.items() for k, v in net.state_dict().items()}
    copied = [k for k in state if k in small and small[k].shape == state[k].shape]
    fresh = [k for k in state if k not in copied]
    assert all(torch.equal(state[k], small[k]) for k in copied) and len(copied) > 100
    assert fresh and all(k.startswith(("dis_encoded.head_class", "dis_random.head_class")) for k in fresh)
    assert torch.equal(run.engine.ema["generator.pxz.0.weight"], small["generator.pxz.0.weight"])
    run.fit()
    record = json.loads((tmp_path / "big" / "init.json").read_text())
    weights = tmp_path / "small" / "checkpoints" / "iter_0000002" / "model.safetensors"
    assert record["sha256"] == hashlib.sha256(weights.read_bytes()).hexdigest() and record["iteration"] == 2
    assert record["tensors_fresh"] == len(fresh) and record["crop"] == 32
    with pytest.raises(ConfigError, match="tensors of this model have a match"):
        open_run(
            load_config("quickstart", base + ["model.width=4", f"train.init_from={tmp_path / 'small'}"]),
            tmp_path / "other",
        )
