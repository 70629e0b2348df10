"""BicycleGAN against independent computations: the official BicycleGAN code's parameter counts (as
docs/bicyclegan.md lists them), every loss term and its reduction on hand-made tensors, the z-injection layout,
dropout and init, the linear schedule, and the gradient routing of one step compared with the official
two-backward scheme written out here."""

from __future__ import annotations

import math

import pytest
import torch

from conftest import build_on_meta, on_meta
from gmdrit_cli.config.schema import load_config
from gmdrit_cli.data.unpaired import Batch
from gmdrit_cli.errors import ConfigError
from gmdrit_cli.families import build_for_training, build_model
from gmdrit_cli.families.bicyclegan import losses as L
from gmdrit_cli.families.bicyclegan.nets import MultiScalePatchGAN, ResnetEncoder, ResnetGenerator, UNetGenerator
from gmdrit_cli.training.engine import lr_multiplier

CPU = torch.device("cpu")


def count(net) -> int:
    return sum(p.numel() for p in net.parameters())


def count_on_meta(build) -> int:
    return count(on_meta(build))


# -- parameter counts of the official code's networks, built on the meta device ----------------------------


@pytest.mark.parametrize(
    "depth,cin,where,expected",
    [
        (8, 3, "all", 54_794_627),
        (8, 1, "all", 54_792_579),
        (8, 3, "input", 54_417_795),
        (8, 1, "input", 54_415_747),
        (7, 3, "all", 42_145_155),
        (7, 1, "all", 42_143_107),
        (7, 3, "input", 41_833_859),
        (7, 1, "input", 41_831_811),
    ],
)
def test_unet_parameter_counts_match_the_official_code(depth, cin, where, expected):
    assert count_on_meta(lambda: UNetGenerator(cin, 3, 8, 64, depth, where)) == expected


def test_encoder_discriminator_and_resnet_generator_counts_match_the_official_code():
    assert count_on_meta(lambda: ResnetEncoder(3, 8, 64, blocks=4)) == 2_590_032  # resnet_256
    assert count_on_meta(lambda: ResnetEncoder(3, 8, 64, blocks=3)) == 1_344_080  # resnet_128
    assert count_on_meta(lambda: MultiScalePatchGAN(3, 64, 3, 2)) == 3_458_978  # basic_256_multi
    assert count_on_meta(lambda: MultiScalePatchGAN(6, 64, 3, 2)) == 3_463_586  # conditional, 3 + 3 channels
    assert count_on_meta(lambda: MultiScalePatchGAN(4, 64, 3, 2)) == 3_460_514  # conditional edges, 1 + 3
    assert count_on_meta(lambda: MultiScalePatchGAN(3, 64, 2, 2)) == 830_626  # basic_128_multi
    assert count_on_meta(lambda: ResnetGenerator(3, 3, 8, 64, 6)) == 7_862_787
    assert count_on_meta(lambda: ResnetGenerator(1, 3, 8, 64, 6)) == 7_856_515


def test_the_edges2shoes_preset_builds_the_official_networks():
    counts = build_on_meta(load_config("edges2shoes")).parameter_counts()
    assert counts == {
        "generator": 54_792_579,
        "encoder": 2_590_032,
        "discriminator": 3_458_978,
        "discriminator2": 3_458_978,
    }


def test_the_report_unet_preset_builds_the_128_px_networks():
    counts = build_on_meta(load_config("bicyclegan_report_unet")).parameter_counts()
    assert counts["generator"] == 42_143_107 and counts["encoder"] == 1_344_080


def test_patchgan_map_sizes_match_the_official_code():
    d = MultiScalePatchGAN(3, 8, 3, 2)
    assert [tuple(m.shape) for m in d(torch.zeros(1, 3, 256, 256))] == [(1, 1, 30, 30), (1, 1, 14, 14)]
    assert [tuple(m.shape) for m in d(torch.zeros(1, 3, 128, 128))] == [(1, 1, 14, 14), (1, 1, 6, 6)]


def test_shape_rules_are_config_errors():
    with pytest.raises(ConfigError, match="unet_256 needs data.crop=256"):
        load_config("bicyclegan_report_unet", ["bicyclegan.generator=unet_256"])
    with pytest.raises(ConfigError, match="no patch left"):
        load_config("bicyclegan_quickstart", ["data.crop=32", "data.resize=32", "bicyclegan.d_layers=3"])


# -- losses on hand-made tensors --------------------------------------------------------------------------


def test_lsgan_sums_scale_means_and_the_d_loss_has_no_half():
    big = torch.tensor([[[[1.0, 3.0], [0.0, 2.0]]]])  # 1 x 1 x 2 x 2
    small = torch.tensor([[[[4.0]]]])
    # towards 1: scale 0 mean(0, 4, 1, 1) = 1.5; scale 1: 9 -> 10.5
    assert L.lsgan([big, small], 1.0).item() == pytest.approx(10.5)
    # towards 0: mean(1, 9, 0, 4) = 3.5, plus 16
    assert L.lsgan([big, small], 0.0).item() == pytest.approx(19.5)
    assert L.discriminator_loss([small], [big]).item() == pytest.approx(9 + 3.5)
    assert L.lsgan(big, 1.0).item() == pytest.approx(1.5)  # a single map is one scale, not one per sample


def test_kl_is_summed_over_batch_and_latent_dimensions():
    mu = torch.tensor([[1.0, 0.0], [0.0, 2.0]])
    logvar = torch.tensor([[0.0, math.log(2.0)], [0.0, 0.0]])
    # per element 1/2 (sigma^2 + mu^2 - 1 - log sigma^2): 0.5, (2 - 1 - log 2) / 2, 0, 2
    by_hand = 0.5 + (1 - math.log(2.0)) / 2 + 0 + 2.0
    assert L.kl_divergence(mu, logvar, "sum").item() == pytest.approx(by_hand, rel=1e-6)
    assert L.kl_divergence(mu, logvar, "batch_mean").item() == pytest.approx(by_hand / 2, rel=1e-6)


def test_l1_is_a_mean_over_every_element():
    a = torch.zeros(2, 3, 2, 2)
    b = torch.zeros(2, 3, 2, 2)
    b[0, 0, 0, 0] = 24.0
    assert L.l1_mean(a, b).item() == pytest.approx(1.0)


# -- networks: z injection, dropout, init ------------------------------------------------------------------


def _down_conv_inputs(g: UNetGenerator, a, z):
    seen = []
    # each down block's input: cat(features, z) before its LeakyReLU (which, as in the official blocks, acts on z too)
    hooks = [d.register_forward_hook(lambda m, inp, out: seen.append(inp[0])) for d in g.downs]
    g(a, z)
    for h in hooks:
        h.remove()
    return seen


@pytest.mark.parametrize("where", ["all", "input"])
def test_z_joins_the_input_of_the_right_blocks_at_their_resolution(where):
    torch.manual_seed(0)
    g = UNetGenerator(3, 3, nz=4, width=8, depth=5, where_add=where)
    z = torch.tensor([[0.5, -1.0, 2.0, 0.25]])
    seen = _down_conv_inputs(g, torch.rand(1, 3, 32, 32), z)
    features = [3, 8, 16, 32, 64]  # block inputs: C_in, then width * 1, 2, 4, 8
    sizes = [32, 16, 8, 4, 2]
    for k, x in enumerate(seen):
        gets_z = where == "all" or k == 0
        assert x.shape == (1, features[k] + (4 if gets_z else 0), sizes[k], sizes[k])
        if gets_z:  # the last nz channels are z, constant over the map, after the features
            assert torch.equal(x[0, -4:], z[0][:, None, None].expand(4, sizes[k], sizes[k]))
    ups = [next(m for m in u if isinstance(m, torch.nn.ConvTranspose2d)).in_channels for u in g.ups]
    assert ups == [16, 32, 64, 128, 64]  # the up path never sees z: 2 x the block's width, innermost 1 x


def test_dropout_sits_next_to_the_innermost_block_and_only_in_training():
    g = UNetGenerator(1, 3, nz=2, width=4, depth=7)  # unet_128 layout
    places = [k for k, up in enumerate(g.ups) if any(isinstance(m, torch.nn.Dropout) for m in up)]
    assert places == [4, 5]  # up outputs at 8 x 8 and 4 x 4 for 128 px
    assert [
        k for k, up in enumerate(UNetGenerator(1, 3, 2, 4, 8).ups) if any(isinstance(m, torch.nn.Dropout) for m in up)
    ] == [4, 5, 6]
    a, z = torch.rand(1, 1, 128, 128), torch.zeros(1, 2)
    torch.manual_seed(0)
    for p in g.parameters():
        torch.nn.init.normal_(p, std=0.05)
    g.eval()
    assert torch.equal(g(a, z), g(a, z))
    g.train()
    assert not torch.equal(g(a, z), g(a, z))


def test_weights_are_xavier_normal_with_gain_point_zero_two():
    torch.manual_seed(0)
    model = build_model(load_config("bicyclegan_report_unet"), CPU)
    conv = model.networks["generator"].downs[2][1]  # block 3: 128 features + 8 z -> 256 channels, 4 x 4
    fan_in, fan_out = (128 + 8) * 16, 256 * 16
    assert conv.weight.std().item() == pytest.approx(0.02 * math.sqrt(2 / (fan_in + fan_out)), rel=0.02)
    assert all(
        float(m.bias.detach().abs().max()) == 0
        for m in model.networks.modules()
        if isinstance(m, (torch.nn.Conv2d, torch.nn.Linear))
    )


def test_linear_schedule_matches_the_official_values():
    # the official edges2shoes settings, niter 30 + niter_decay 30 at lr 2e-4:
    # epoch 31 -> 1.9355e-4, epoch 60 -> 6.45e-6
    assert 2e-4 * lr_multiplier("linear", 29, 60, 30) == pytest.approx(2e-4)
    assert 2e-4 * lr_multiplier("linear", 30, 60, 30) == pytest.approx(1.9355e-4, rel=1e-4)
    assert 2e-4 * lr_multiplier("linear", 59, 60, 30) == pytest.approx(6.45e-6, rel=1e-3)


# -- the training step ----------------------------------------------------------------------------------------


def tiny(*extra):
    return load_config(
        "bicyclegan_quickstart",
        [
            "data.crop=32",
            "data.resize=32",
            "model.width=8",
            "bicyclegan.d_layers=2",
            "train.batch_size=4",
            "speed.amp=off",
            "data.input_channels=3",
            "train.device=cpu",
            *extra,
        ],
    )


def batch(seed=0, n=4):
    g = torch.Generator().manual_seed(seed)
    return Batch(
        torch.rand(n, 3, 32, 32, generator=g) * 2 - 1,
        torch.zeros(n, dtype=torch.long),
        torch.rand(n, 3, 32, 32, generator=g) * 2 - 1,
    )


def official_gradients(model, b: Batch, z_noise, z_rand):
    """The official code's update_G_and_E written independently: backward L_EG keeping the graph, switch E's
    requires_grad off, backward the latent term; .grad of every parameter of G and E."""
    nets, cfg = model.networks, model.cfg.bicyclegan
    G, E, D, D2 = nets["generator"], nets["encoder"], nets["discriminator"], nets["discriminator2"]
    for net in (G, E):
        net.zero_grad(set_to_none=True)
    for p in list(D.parameters()) + list(D2.parameters()):
        p.requires_grad_(False)
    h = 2
    a1, b1 = b.images[:h], b.targets[:h]
    mu, logvar = E(b1)
    z_enc = mu + z_noise * torch.exp(0.5 * logvar)
    fake_enc, fake_rand = G(a1, z_enc), G(a1, z_rand)
    mu2 = E(fake_rand)[0]  # built with E's parameters live, as the official forward does
    gan = sum(((m - 1) ** 2).mean() for m in D(fake_enc))
    gan2 = sum(((m - 1) ** 2).mean() for m in D2(fake_rand))
    l1 = (fake_enc - b1).abs().mean()
    kl = -0.5 * torch.sum(1 + logvar - mu**2 - logvar.exp())
    total = cfg.lambda_gan * gan + cfg.lambda_gan2 * gan2 + cfg.lambda_l1 * l1 + cfg.lambda_kl * kl
    total.backward(retain_graph=True)
    for p in E.parameters():
        p.requires_grad_(False)
    (cfg.lambda_z * (mu2 - z_rand).abs().mean()).backward()
    for p in list(E.parameters()) + list(D.parameters()) + list(D2.parameters()):
        p.requires_grad_(True)
    out = {("generator", n): p.grad.clone() for n, p in G.named_parameters()}
    out.update({("encoder", n): p.grad.clone() for n, p in E.named_parameters()})
    for net in (G, E):
        net.zero_grad(set_to_none=True)
    return out


def test_one_step_gives_g_every_term_and_e_no_latent_gradient():
    torch.manual_seed(0)
    model, engine = build_for_training(tiny(), CPU)
    b = batch()
    torch.manual_seed(5)
    z_noise, z_rand = torch.randn(2, 8), torch.randn(2, 8)  # what train_step draws after this seed
    expected = official_gradients(model, b, z_noise, z_rand)

    applied = {}
    names_of = {id(p): (net, n) for net, m in model.networks.items() for n, p in m.named_parameters()}
    real_step = engine.step

    def spy(names, grads):
        applied[tuple(names)] = {names_of[id(p)]: g.clone() for p, g in grads.items() if g is not None}
        real_step(names, grads)

    engine.step = spy
    torch.manual_seed(5)
    model.train_step([b], 0, engine)
    assert list(applied) == [("encoder", "generator"), ("discriminator",), ("discriminator2",)]  # E/G before D
    got = applied[("encoder", "generator")]
    assert got.keys() == expected.keys()
    for key, g in expected.items():
        assert torch.allclose(got[key], g, rtol=1e-4, atol=1e-9), key


def test_the_latent_term_alone_reaches_g_and_not_e():
    torch.manual_seed(0)
    model, _ = build_for_training(tiny(), CPU)
    b = batch(1)
    t = model.forward_pass(b.images, b.targets, torch.randn(2, 8), torch.randn(2, 8))
    latent = model.encoder_generator_terms(t)["latent_l1"]
    e_grads = torch.autograd.grad(
        latent, list(model.networks["encoder"].parameters()), retain_graph=True, allow_unused=True
    )
    assert all(g is None or float(g.abs().max()) == 0 for g in e_grads)
    g_grads = torch.autograd.grad(latent, list(model.networks["generator"].parameters()), allow_unused=True)
    assert any(g is not None and float(g.abs().max()) > 0 for g in g_grads)


def test_both_fakes_come_from_a1_and_d2_sees_b2_as_real():
    torch.manual_seed(0)
    model, _ = build_for_training(tiny(), CPU)
    b = batch(2)
    z = torch.zeros(2, 8)
    t = model.forward_pass(b.images, b.targets, z, z)  # eps = 0 and z_rand = 0: F_rand = G(A1, 0)
    model.eval_mode()
    G = model.networks["generator"]
    assert torch.allclose(t["fake_rand"], G(b.images[:2], z), atol=1e-6)
    assert torch.equal(t["b2"], b.targets[2:]) and torch.equal(t["b1"], b.targets[:2])


def test_one_shared_discriminator_takes_both_losses_in_one_step():
    torch.manual_seed(0)
    model, engine = build_for_training(tiny("bicyclegan.use_same_d=true"), CPU)
    assert "discriminator2" not in model.networks
    losses = model.train_step([batch()], 0, engine)
    assert {"dis", "dis2", "gan", "gan2", "l1", "kl", "latent_l1"} == set(losses)
    assert all(math.isfinite(float(v)) for v in losses.values())


def test_one_channel_inputs_and_conditional_discriminators_train():
    torch.manual_seed(0)
    model, engine = build_for_training(tiny("data.input_channels=1", "bicyclegan.conditional_d=true"), CPU)
    assert model.networks["generator"].downs[0].in_channels == 1 + 8
    assert model.networks["discriminator"].nets[0][0].in_channels == 1 + 3
    losses = model.train_step([batch()], 0, engine)
    assert all(math.isfinite(float(v)) for v in losses.values())


def test_translation_goes_from_the_input_domain_to_the_output_domain_only():
    model = build_model(tiny(), CPU, training=False)
    model.eval_mode()
    with pytest.raises(ValueError, match="only"):
        model.sample_attributes(0, 2)
    z, cond = model.sample_attributes(1, 3, generator=torch.Generator().manual_seed(0))
    assert model.translate(batch().images[:1], 1, (z, cond)).shape == (3, 3, 32, 32)
    with pytest.raises(ValueError, match="only"):
        model.translate(batch().images[:1], 0, (z, cond))


BICYCLEGAN_PRESETS = [
    "edges2shoes",
    "edges2handbags",
    "facades",
    "maps",
    "night2day",
    "bicyclegan_report_unet",
    "bicyclegan_report_resnet",
    "bicyclegan_report_maps",
    "bicyclegan_report_facades",
    "bicyclegan_quickstart",
]


@pytest.mark.parametrize("preset", BICYCLEGAN_PRESETS)
def test_every_bicyclegan_preset_trains_one_tiny_iteration(preset, tmp_path):
    from conftest import make_paired_dataset
    from gmdrit_cli.training.trainer import train

    cfg = load_config(preset)
    assert cfg.model.family == "bicyclegan" and cfg.train.batch_size % 2 == 0
    root = make_paired_dataset(tmp_path / "data", per_split=4, size=32)
    small = [
        f"data.root={root}",
        "data.resize=32",
        "data.crop=32",
        "model.width=4",
        "bicyclegan.d_layers=2",
        "train.batch_size=2",
        "train.max_iters=1",
        "train.device=cpu",
        "train.threads=1",
    ]
    if cfg.bicyclegan.generator.startswith("unet"):
        small.append("bicyclegan.generator=unet")  # the named U-Nets insist on their crop
    result = train(load_config(preset, small + ["bicyclegan.encoder=resnet"]), tmp_path / "run")
    assert result.iterations == 1 and all(math.isfinite(v) for v in result.last_losses.values())
    assert (tmp_path / "run" / "samples" / "iter_0000001.png").is_file()
