"""speed.amp auto per GPU compute capability, speed.tf32, cuDNN autotuning, and fp16 with loss scaling for every
family (issue 26: Colab's T4 must not train in emulated bf16)."""

import json

import pytest
import torch

from conftest import PRESET_OF_FAMILY, make_paired_dataset, tiny_overrides
from gmdrit_cli.config.schema import load_config
from gmdrit_cli.data.unpaired import Batch
from gmdrit_cli.families import MODEL_FAMILIES, build_for_training
from gmdrit_cli.training import speed

CUDA = torch.device("cuda")


@pytest.fixture
def capability(monkeypatch):
    """Pretend the CUDA device has compute capability (major, minor): the device query replaced."""

    def set_capability(major: int, minor: int) -> None:
        monkeypatch.setattr(torch.cuda, "get_device_capability", lambda device=None: (major, minor))

    return set_capability


@pytest.fixture
def restore_backends():
    """Leave TF32 and cuDNN autotuning as they were (the switches are process-wide)."""
    saved = (
        torch.backends.cuda.matmul.fp32_precision,
        torch.backends.cudnn.conv.fp32_precision,
        torch.backends.cudnn.benchmark,
    )
    yield
    torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision = saved[:2]
    torch.backends.cudnn.benchmark = saved[2]


@pytest.mark.parametrize(
    "cc,dtype,words",
    [
        ((6, 1), None, "no bf16 hardware"),  # GTX 10xx, P40
        ((7, 0), torch.float16, "no bf16 hardware"),  # V100
        ((7, 5), torch.float16, "no bf16 hardware"),  # T4 (Colab)
        ((8, 0), torch.bfloat16, "native bf16"),  # A100
        ((9, 0), torch.bfloat16, "native bf16"),
    ],
)  # H100 / H200
def test_amp_auto_follows_the_compute_capability(capability, monkeypatch, cc, dtype, words):
    """bf16 only where the GPU has it; a T4 gets fp16 even though is_bf16_supported() says True there."""
    capability(*cc)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda including_emulation=True: True)  # what a T4 says
    chosen, reason = speed.amp_choice("auto", CUDA)
    assert chosen == dtype
    assert f"compute capability {cc[0]}.{cc[1]}" in reason and words in reason
    assert ("loss scaling" in reason) == (dtype == torch.float16)
    for setting, forced in (("off", None), ("bf16", torch.bfloat16), ("fp16", torch.float16)):
        assert speed.amp_dtype(setting, CUDA) == forced  # an explicit setting is obeyed on every GPU


@pytest.mark.parametrize("cc,auto_on", [((7, 5), False), ((8, 0), True), ((9, 0), True)])
def test_tf32_auto_from_ampere_and_explicit_settings(capability, restore_backends, cc, auto_on):
    capability(*cc)
    assert speed.use_tf32("auto", CUDA) is auto_on
    want = "tf32" if auto_on else "ieee"
    assert (torch.backends.cuda.matmul.fp32_precision, torch.backends.cudnn.conv.fp32_precision) == (want, want)
    assert speed.use_tf32("off", CUDA) is False and torch.backends.cuda.matmul.fp32_precision == "ieee"
    assert speed.use_tf32("on", CUDA) is True and torch.backends.cudnn.conv.fp32_precision == "tf32"
    assert speed.use_tf32("on", torch.device("cpu")) is False  # nothing to switch on the CPU


def test_cudnn_benchmark_on_for_cuda_only(restore_backends):
    torch.backends.cudnn.benchmark = False
    assert speed.use_cudnn_benchmark("auto", torch.device("cpu")) is False
    assert torch.backends.cudnn.benchmark is False
    assert speed.use_cudnn_benchmark("auto", CUDA) is True and torch.backends.cudnn.benchmark is True
    assert speed.use_cudnn_benchmark("off", CUDA) is False and torch.backends.cudnn.benchmark is False


def test_loss_scaler_skips_overflow_halves_and_grows():
    scaler = speed.LossScaler(scale=8.0, growth_interval=2)
    grads = [torch.tensor([8.0, 16.0]), None]
    assert scaler.unscale(grads) and torch.equal(grads[0], torch.tensor([1.0, 2.0])) and scaler.scale == 8.0
    scaler.update()
    assert not scaler.unscale([torch.tensor([float("inf"), 1.0])])  # the update is skipped ...
    assert scaler.scale == 4.0 and scaler.clean_steps == 0  # ... the scale halved, the clean count restarted
    scaler.update()
    scaler.update()
    assert scaler.scale == 8.0  # grown after growth_interval clean updates
    restored = speed.LossScaler()
    restored.load_state_dict(scaler.state_dict())
    assert restored.state_dict() == {"scale": 8.0, "clean_steps": 2}


def _train(family, root, amp, steps=4):
    """Losses of ``steps`` iterations of a tiny ``family`` model on fixed batches, and the engine."""
    cfg = load_config(
        PRESET_OF_FAMILY[family],
        tiny_overrides(root)
        + list(MODEL_FAMILIES[family].tiny_overrides)
        + [f"speed.amp={amp}", "speed.channels_last=off", "train.batch_size=4"],
    )
    torch.manual_seed(0)
    model, engine = build_for_training(cfg, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    first = {k: v.detach().clone() for k, v in model.networks.state_dict().items()}
    out = []
    for i in range(steps):
        images = torch.rand(4, 3, 32, 32, generator=g) * 2 - 1
        batch = Batch(images, torch.tensor([0, 0, 1, 1]), 1 - images if model.capabilities.paired_data else None)
        out.append({k: float(v) for k, v in model.train_step([batch] * model.batches_per_step(), i, engine).items()})
    moved = any(
        not torch.equal(v, first[k])
        for k, v in model.networks.state_dict().items()
        if v.is_floating_point() and "running" not in k
    )
    return out, engine, moved


@pytest.mark.slow  # fp16 autocast is emulated on the CPU
@pytest.mark.parametrize("family", sorted(MODEL_FAMILIES))
def test_fp16_with_loss_scaling_trains_every_family_close_to_fp32(family, tmp_path):
    """On the CPU (torch's CPU autocast runs fp16): the T4's path, fp16 autocast with dynamic loss scaling,
    gives finite losses within 5% of fp32's and really updates the weights (not every step skipped)."""
    torch.set_num_threads(1)
    root = make_paired_dataset(tmp_path / "pairs")
    reference, _, _ = _train(family, root, "off")
    half, engine, moved = _train(family, root, "fp16")
    assert engine.amp_dtype == torch.float16 and engine.scaler is not None
    assert moved, "every fp16 update was skipped"
    for ref, got in zip(reference, half):
        assert ref.keys() == got.keys()
        for k in ref:
            assert torch.isfinite(torch.tensor(got[k])), (family, k)
            assert got[k] == pytest.approx(ref[k], rel=0.05, abs=0.05), (family, k)


def test_the_choice_and_its_reason_are_recorded_in_the_run_folder(tiny_data, tmp_path):
    from gmdrit_cli.training.trainer import train

    cfg = load_config(
        "reduced_res", tiny_overrides(tiny_data, 1) + ["speed.amp=off", "speed.prefetch=1", "speed.loader_threads=2"]
    )
    train(cfg, tmp_path / "run")
    record = json.loads((tmp_path / "run" / "speed.json").read_text())
    assert record["precision"] == "fp32" and record["precision_reason"] == "speed.amp=off"
    assert record["tf32"] is False and record["cudnn_benchmark"] is False  # the CPU: neither applies
    assert (record["prefetch"], record["loader_threads"]) == (1, 2)
    assert record["data_root"] == str(tiny_data) and record["loss_scaling"] is False
