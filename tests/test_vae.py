"""The single-encoder VAE family (docs/vae.md) against independent computations: the KL's sign and reduction,
the loss on hand-made images, MS-SSIM against pytorch-msssim, the layer-count rule and the parameter counts
docs/vae.md gives, the phases (frozen encoder, fresh optimizers, the schedule), and
translation / interpolation as D_target(mu_E(x))."""

from __future__ import annotations

import math

import pytest
import torch
from pytorch_msssim import ms_ssim as package_ms_ssim

from conftest import build_on_meta, make_dataset, on_meta, set_args, tiny_overrides
from gmdrit_cli.config.schema import load_config
from gmdrit_cli.errors import ConfigError
from gmdrit_cli.evaluation.metrics.msssim_diversity import ms_ssim as scale_rule_ms_ssim
from gmdrit_cli.families import build_model
from gmdrit_cli.families.vae.losses import gaussian_kl, ms_ssim, vae_loss
from gmdrit_cli.families.vae.nets import VAEDecoder, VAEEncoder
from gmdrit_cli.training.trainer import open_run

CPU = torch.device("cpu")
C1 = 0.01**2  # SSIM's (K1 * data range)^2 with data range 1


def count(module) -> int:
    return sum(p.numel() for p in module.parameters())


# -- the loss ----------------------------------------------------------------------------------------


def test_kl_is_the_positive_half_sum_averaged_over_the_batch():
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    logvar = torch.tensor([[0.0, math.log(4.0)], [0.0, 0.0]])
    # by hand, 1/2 sum_j (sigma^2 + mu^2 - 1 - log sigma^2): row 1 = (1 + (3 - ln 4)) / 2, row 2 = 4 / 2
    by_hand = ((1 + 3 - math.log(4.0)) / 2 + 2.0) / 2
    assert gaussian_kl(mu, logvar).item() == pytest.approx(by_hand, rel=1e-6)
    q = torch.distributions.Normal(mu, (0.5 * logvar).exp())
    p = torch.distributions.Normal(torch.zeros(2, 2), torch.ones(2, 2))
    assert gaussian_kl(mu, logvar).item() == pytest.approx(torch.distributions.kl_divergence(q, p).sum(1).mean().item())
    assert gaussian_kl(torch.zeros(3, 5), torch.zeros(3, 5)).item() == 0.0  # the prior itself
    g = torch.Generator().manual_seed(0)
    assert gaussian_kl(torch.randn(8, 4, generator=g), torch.randn(8, 4, generator=g)).item() > 0


@pytest.mark.parametrize(
    "side,weight",
    [
        (192, 0.1333),  # the package: 5 scales
        (64, 0.3001 / (0.0448 + 0.2856 + 0.3001)),
    ],
)  # 3 scales, renormalised
def test_loss_on_constant_images_by_hand(side, weight):
    """Constant images: every contrast-structure term is 1, so MS-SSIM = luminance^(weight of the coarsest
    scale); MSE = 0.1^2; KL as above."""
    # float64: the window's float32 rounding would show in the variances of constant images
    target = torch.full((2, 3, side, side), 0.2, dtype=torch.float64)
    reconstruction = torch.full((2, 3, side, side), 0.7, dtype=torch.float64)
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64)
    logvar = torch.tensor([[0.0, math.log(4.0)], [0.0, 0.0]], dtype=torch.float64)
    luminance = (2 * 0.2 * 0.7 + C1) / (0.2**2 + 0.7**2 + C1)
    kl = ((1 + 3 - math.log(4.0)) / 2 + 2.0) / 2
    terms = vae_loss(reconstruction, target, mu, logvar, kl_weight=0.25)
    assert terms["mse"].item() == pytest.approx(0.25, rel=1e-9)
    assert terms["msssim"].item() == pytest.approx(1 - luminance**weight, rel=1e-3)
    assert terms["kl"].item() == pytest.approx(kl, rel=1e-9)
    assert terms["loss"].item() == pytest.approx(0.25 + 1 - luminance**weight + 0.25 * kl, rel=1e-4)
    same = vae_loss(
        target, target, torch.zeros(2, 2, dtype=torch.float64), torch.zeros(2, 2, dtype=torch.float64), kl_weight=0.25
    )
    assert same["loss"].item() == pytest.approx(0.0, abs=1e-6)


def test_ms_ssim_term_is_the_package_on_a_known_pair():
    g = torch.Generator().manual_seed(3)
    x = torch.rand(2, 3, 176, 176, generator=g)
    y = (x + 0.2 * torch.randn(2, 3, 176, 176, generator=g)).clamp(0, 1)
    expected = package_ms_ssim(x, y, data_range=1.0, size_average=True)
    assert 0.3 < expected.item() < 0.99
    assert torch.equal(ms_ssim(x, y), expected)
    terms = vae_loss(y, x, torch.zeros(2, 4), torch.zeros(2, 4), 0.00025)
    assert terms["msssim"].item() == pytest.approx(1 - package_ms_ssim(y, x, data_range=1.0).item(), abs=1e-7)
    # the scale-rule path (used below 161 px) with the package's 5 weights is the package's computation
    weights = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]
    rule = scale_rule_ms_ssim(x, y, 5, 11, weights, data_range=1.0).mean()
    assert rule.item() == pytest.approx(expected.item(), abs=1e-6)


# -- the networks -------------------------------------------------------------------------------------


@pytest.mark.parametrize("side,bottleneck", [(64, 2), (128, 4), (256, 8)])
def test_layer_count_rule(side, bottleneck):
    """5 stride-2 layers: the bottleneck is side / 32 (docs/vae.md, Networks); fc inputs 512 * b^2."""
    enc, dec = VAEEncoder(side, 16), VAEDecoder(side, 16)
    assert enc.fc_mu.in_features == enc.fc_var.in_features == 512 * bottleneck**2
    assert dec.fc.out_features == 512 * bottleneck**2
    x = torch.rand(2, 3, side, side) * 2 - 1
    assert enc.convs(x).shape == (2, 512, bottleneck, bottleneck)
    mu, logvar = enc(x)
    assert mu.shape == logvar.shape == (2, 16)
    out = dec(mu)
    assert out.shape == (2, 3, side, side) and out.abs().max() < 1


def test_parameter_counts_are_the_documented_ones():
    """The totals of docs/vae.md (J = 256 at 256 px; also J = 128) and the stock 64 px PyTorch-VAE (4,724,323),
    every network built on the meta device."""

    def counted(build) -> int:
        return count(on_meta(build))

    assert (counted(lambda: VAEEncoder(256, 256)), counted(lambda: VAEDecoder(256, 256))) == (18_348_288, 9_999_715)
    assert (counted(lambda: VAEEncoder(256, 128)), counted(lambda: VAEDecoder(256, 128))) == (9_959_424, 5_805_411)
    assert counted(lambda: VAEEncoder(64, 256)) + counted(lambda: VAEDecoder(64, 256)) == 4_724_323
    assert count(on_meta(lambda: VAEEncoder(256, 256)).convs) == 1_570_560
    model = build_on_meta(load_config("vae_apple2orange"))
    assert model.parameter_counts() == {
        "encoder": 18_348_288,
        "decoder_shared": 9_999_715,
        "decoder_x": 9_999_715,
        "decoder_y": 9_999_715,
    }


def test_sizes_that_do_not_halve_are_refused():
    with pytest.raises(ConfigError, match="multiple of 32"):
        build_model(load_config("vae_quickstart", ["data.crop=100", "data.resize=100"]), CPU)
    with pytest.raises(ConfigError, match="two domains"):
        build_model(load_config("vae_quickstart", ["data.domains=[a,b,c]"]), CPU)


# -- the phases ---------------------------------------------------------------------------------------


def tiny_vae(root, *extra: str) -> list[str]:
    """Overrides: 4 + 4 images of 32 px, batch 2: phase 1 epochs of 4 iterations, phase 2 epochs of 2."""
    return tiny_overrides(root, 10_000) + [
        "train.batch_size=2",
        "data.flip=false",
        "vae.epochs_shared=2",
        "vae.epochs_decoder=2",
        *extra,
    ]


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    return make_dataset(tmp_path_factory.mktemp("vae") / "data")


def snapshot(net) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in net.state_dict().items()}


def changed(before: dict, net) -> set[str]:
    return {k for k, v in net.state_dict().items() if not torch.equal(before[k], v)}


def run_to(run, iteration: int) -> None:
    run.cfg.train.max_iters = iteration
    run.fit()


def test_phase_plan_schedule_and_fresh_optimizers(data, tmp_path):
    run = open_run(load_config("vae_quickstart", tiny_vae(data, "vae.encoder_freeze=conv_only")), tmp_path / "r")
    spans = run.engine.spans
    assert [(s.phase.name, s.start, s.end, s.phase.domains) for s in spans] == [
        ("shared", 0, 8, (0, 1)),
        ("decoder_x", 8, 12, (0,)),
        ("decoder_y", 12, 16, (1,)),
    ]
    assert run.end_iteration == 16
    engine = run.engine
    lrs = []
    for it in range(16):
        engine.apply_schedule(it)
        lrs.append(engine.optimizers["encoder"].param_groups[0]["lr"])
    # ExponentialLR(0.95) per epoch, restarting with every phase (docs/vae.md, Phases)
    expected = [5e-4 * 0.95**e for e in (0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 1, 1)]
    assert lrs == pytest.approx(expected, rel=1e-12)
    run_to(run, 8)
    assert run.engine.optimizers["encoder"].state  # Adam moments after phase 1
    run.engine.apply_schedule(8)  # the first iteration of decoder_x: its optimizers start fresh
    assert not run.engine.optimizers["encoder"].state and not run.engine.optimizers["decoder_x"].state
    assert run.engine.optimizers["decoder_shared"].state  # not part of the phase: left as it was


def test_batches_visit_every_image_of_the_phase_once_per_epoch(data, tmp_path):
    run = open_run(load_config("vae_quickstart", tiny_vae(data)), tmp_path / "r")
    seen = []
    for it in range(12):
        run.iteration = it
        seen.append(run.next_batches()[0])
    epoch1 = torch.cat([b.images for b in seen[:4]])
    assert [len(b.domains) for b in seen] == [2] * 12
    assert sorted(torch.cat([b.domains for b in seen[:4]]).tolist()) == [0] * 4 + [1] * 4
    assert len({tuple(im.flatten()[:64].tolist()) for im in epoch1}) == 8  # 8 distinct images
    assert all((b.domains == 0).all() for b in seen[8:12])  # decoder_x sees only X
    assert not torch.equal(seen[0].images, seen[4].images) or not torch.equal(seen[1].images, seen[5].images)


def test_nothing_of_the_encoder_changes_in_phase_two_with_full_freeze(data, tmp_path):
    run = open_run(load_config("vae_quickstart", tiny_vae(data)), tmp_path / "r")
    nets = run.model.networks
    before = snapshot(nets["encoder"])
    run_to(run, 8)  # phase 1: the encoder and the shared decoder train
    assert changed(before, nets["encoder"]) >= {"convs.0.weight", "fc_mu.weight", "convs.1.running_mean"}
    encoder, shared, x_dec = snapshot(nets["encoder"]), snapshot(nets["decoder_shared"]), snapshot(nets["decoder_x"])
    run_to(run, 16)
    assert changed(encoder, nets["encoder"]) == set()  # weights, BatchNorm statistics, everything
    assert changed(shared, nets["decoder_shared"]) == set()
    assert "fc.weight" in changed(x_dec, nets["decoder_x"])


def test_conv_only_freeze_trains_the_heads_as_the_report_code(data, tmp_path):
    run = open_run(load_config("vae_quickstart", tiny_vae(data, "vae.encoder_freeze=conv_only")), tmp_path / "r")
    nets = run.model.networks
    run_to(run, 8)
    encoder = snapshot(nets["encoder"])
    run_to(run, 12)
    moved = changed(encoder, nets["encoder"])
    assert {"fc_mu.weight", "fc_var.weight", "convs.1.running_mean"} <= moved
    assert not any(k.startswith("convs.") and k.endswith(("weight", "bias")) for k in moved)


# -- test time ----------------------------------------------------------------------------------------


def test_translation_is_the_target_decoder_of_mu_and_references_decode_their_own_code(data, tmp_path):
    cfg = load_config("vae_quickstart", tiny_vae(data))
    run = open_run(cfg, tmp_path / "r")
    run_to(run, 10)
    model = run.model
    model.eval_mode()
    g = torch.Generator().manual_seed(0)
    x = torch.rand(3, 3, 32, 32, generator=g) * 2 - 1
    with torch.no_grad():
        mu, logvar = model.networks["encoder"](x)
        expected = model.networks["decoder_y"](mu).clamp(0, 1) * 2 - 1
        cond = model.sample_attributes(1, 3)[1]
        mean, _ = model.attribute_prior(cond)
        assert torch.allclose(model.translate(x, 1, (mean, cond)), expected, atol=1e-6)
        # a sampled z: mu + sigma * noise
        z, cond = model.sample_attributes(1, 3, None, torch.Generator().manual_seed(1), 0.5)
        sampled = model.networks["decoder_y"](mu + logvar.mul(0.5).exp() * z).clamp(0, 1) * 2 - 1
        assert torch.allclose(model.translate(x, 1, (z, cond)), sampled, atol=1e-6)
        # references: their own codes, through the decoder of the requested domain, whatever the input
        zr, cr = model.encode_reference(x[:2], torch.tensor([0, 0]))
        refs = model.networks["decoder_x"](mu[:2]).clamp(0, 1) * 2 - 1
        assert torch.allclose(model.translate(x[2:], 0, (zr, cr)), refs, atol=1e-6)
        # halfway between two references: the decoded mean of their codes
        mid = model.generate(model.encode_content(x[2:]), (zr[:1] + zr[1:]) / 2, cr[:1])
        assert torch.allclose(mid, model.networks["decoder_x"]((mu[:1] + mu[1:2]) / 2).clamp(0, 1) * 2 - 1, atol=1e-6)
    assert model.capabilities.random_by_default is False


def test_reconstruction_metric_by_hand():
    from gmdrit_cli.evaluation.metrics.eval_reconstruction import reconstruction_scores

    a = torch.zeros(2, 3, 32, 32, dtype=torch.uint8)
    b = a.clone()
    b[1] = 51  # 0.2 on the [0, 1] scale everywhere: MSE 0.04
    mse, msssim = reconstruction_scores(a, b)
    assert mse.tolist() == pytest.approx([0.0, 0.04], rel=1e-12)
    assert msssim[0].item() == pytest.approx(1.0, abs=1e-6) and msssim[1].item() < 1.0


def test_cli_translate_defaults_to_mu_and_eval_reports_reconstruction(cli, data, tmp_path):
    """`translate` without --samples writes one output, D_orange(mu_E(x)) computed here from the weights;
    `eval --metrics recon_mse,recon_msssim` fills its reconstruction section."""
    import json

    from PIL import Image

    from gmdrit_cli.data.unpaired import to_image, to_tensor
    from gmdrit_cli.inference.model_files import load_for_inference

    run = tmp_path / "run"
    overrides = tiny_vae(data) + ["data.domains=[apple,orange]", "train.max_iters=3"]
    proc = cli("train", "--preset", "vae_quickstart", *set_args(overrides), "--run-dir", run)
    assert proc.returncode == 0, proc.stderr
    image = data / "testA" / "0.png"
    proc = cli(
        "translate", image, "--run", run, "--domain", "orange", "--square", "--seed", "0", "--out", tmp_path / "t"
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == ["0_to_orange_1.png", "0_to_orange_grid.png"]
    _, model = load_for_inference(run)
    x = to_tensor(Image.open(image).convert("RGB").resize((32, 32), Image.BICUBIC)).unsqueeze(0)
    with torch.no_grad():
        mu, _ = model.networks["encoder"](x)
        expected = to_image(model.networks["decoder_y"](mu)[0].clamp(0, 1) * 2 - 1)
    assert Image.open(tmp_path / "t" / "0_to_orange_1.png").tobytes() == expected.tobytes()
    proc = cli(
        "eval",
        run,
        "--metrics",
        "ndb,jsd,recon_mse,recon_msssim",
        "--samples-per-input",
        "1",
        "--out",
        tmp_path / "ev",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert set(report["reconstruction"]) == {"apple", "orange"}
    assert all(0 <= r["recon_mse"] <= 1 and r["recon_msssim"] <= 1 for r in report["reconstruction"].values())
