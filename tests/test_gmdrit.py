"""Tests of the GM-DRIT family (docs/gmdrit.md), each against an independent computation."""

from __future__ import annotations

import dataclasses
import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image
from torch.distributions import Categorical, Normal, kl_divergence

from conftest import build_on_meta
from gmdrit_cli.config.schema import build_config, load_config
from gmdrit_cli.data.unpaired import Batch
from gmdrit_cli.families.gmdrit import losses as lm
from gmdrit_cli.families.gmdrit import nets as gnets
from gmdrit_cli.families.gmdrit.model import GMDRIT
from gmdrit_cli.families.gmdrit.nets import VAR_FLOOR, AdaIN, MixtureAttributeEncoder, gumbel_softmax
from gmdrit_cli.training.engine import Engine
from gmdrit_cli.training.trainer import train

REPO = Path(__file__).resolve().parents[1]
CPU = torch.device("cpu")
NEW_PRESETS = ["integration", "loss_integration", "adain", "double_conv", "half_discr", "double_gen_enc", "reduced_res"]


# --------------------------------------------------------------------------- helpers


@pytest.fixture(autouse=True, scope="module")
def _one_thread():
    """Tiny models run fastest on one thread; with two OpenMP threads on a busy 2-core machine every op
    waits for a descheduled thread (measured: 0.65 s instead of 1 ms per tiny forward). Restored after."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def tiny_model(**mixture) -> GMDRIT:
    """A GM-DRIT model at crop 32, width 8, nz 8 on the CPU."""
    torch.manual_seed(0)
    cfg = build_config(
        {
            "model": {"family": "gmdrit", "nz": 8, "width": 8},
            "data": {"crop": 32, "resize": 36, "domains": ["a", "b"]},
            "train": {"device": "cpu"},
            "mixture": mixture,
        }
    )
    return GMDRIT(cfg, CPU)


def random_batch(domains: list[int], size: int = 32, seed: int = 1) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.rand((len(domains), 3, size, size), generator=g) * 2 - 1, torch.tensor(domains))


@pytest.fixture
def gm_data(tmp_path: Path) -> Path:
    """A tiny CycleGAN-layout dataset: 3 random 40 px images per domain in trainA/trainB/testA/testB."""
    rng = np.random.default_rng(0)
    root = tmp_path / "gm_data"
    for split in ("train", "test"):
        for d, letter in enumerate("AB"):
            folder = root / f"{split}{letter}"
            folder.mkdir(parents=True)
            for i in range(3):
                arr = rng.integers(0, 128, (40, 40, 3)) + 100 * d
                Image.fromarray(arr.astype(np.uint8)).save(folder / f"{i}.png")
    return root


# --------------------------------------------------------------------------- loss functions


def test_gaussian_kl_matches_torch_distributions():
    g = torch.Generator().manual_seed(0)
    mq, mp = torch.randn(4, 7, generator=g), torch.randn(4, 7, generator=g)
    vq, vp = torch.rand(4, 7, generator=g) + 0.1, torch.rand(4, 7, generator=g) * 3 + 0.05
    expected = kl_divergence(Normal(mq, vq.sqrt()), Normal(mp, vp.sqrt())).sum()
    assert torch.allclose(lm.kl_gaussians(mq, vq, mp, vp), expected, rtol=1e-5, atol=1e-6)
    # zero for equal distributions
    assert lm.kl_gaussians(mq, vq, mq, vq).abs().item() < 1e-5


@pytest.mark.parametrize("k", [2, 3, 5])
def test_categorical_kl_to_uniform(k):
    g = torch.Generator().manual_seed(k)
    logits = torch.randn(6, k, generator=g) * 2
    expected = kl_divergence(Categorical(logits=logits), Categorical(probs=torch.full((6, k), 1.0 / k))).mean()
    assert torch.allclose(lm.kl_categorical_uniform(logits), expected, rtol=1e-5, atol=1e-7)
    assert lm.kl_categorical_uniform(torch.zeros(3, k)).abs().item() < 1e-6  # uniform q
    assert lm.kl_categorical_uniform(torch.tensor([[1e4] + [0.0] * (k - 1)])).item() == pytest.approx(
        math.log(k), rel=1e-5
    )


def test_categorical_kl_hand_worked():
    # q = (3/4, 1/4): 0.75 ln(0.75 * 2) + 0.25 ln(0.25 * 2) = 0.75 * 0.4054651 - 0.25 * 0.6931472 = 0.1308121
    logits = torch.log(torch.tensor([[0.75, 0.25]]))
    assert lm.kl_categorical_uniform(logits).item() == pytest.approx(0.1308121, abs=1e-6)


def test_domain_probabilities_and_label_loss():
    logits = torch.tensor([[0.1, 0.7, -0.3, 1.2], [2.0, -1.0, 0.5, 0.0]])
    q = torch.softmax(logits, 1)
    sums = torch.stack([q[:, 0] + q[:, 1], q[:, 2] + q[:, 3]], 1)
    assert torch.allclose(lm.domain_probabilities(logits, 2), sums, atol=1e-6)
    domains = torch.tensor([1, 0])
    expected = -(sums[0, 1].log() + sums[1, 0].log()) / 2
    assert lm.label_cross_entropy(logits, domains, 2).item() == pytest.approx(expected.item(), rel=1e-5)


def test_thumbnail_target_and_loss():
    img = torch.zeros(1, 3, 32, 32)
    img[..., :16, :] = 1.0
    img[..., 16:, :] = -1.0
    t = lm.thumbnail_target(img, 4)
    assert t.shape == (1, 3, 4, 4)
    assert torch.equal(t[..., :2, :], torch.ones(1, 3, 2, 4)) and torch.equal(t[..., 2:, :], torch.zeros(1, 3, 2, 4))
    logits = torch.randn(1, 3, 4, 4)
    p = torch.sigmoid(logits)
    bce = -(t * p.log() + (1 - t) * (1 - p).log()).mean()
    assert lm.thumbnail_reconstruction(logits, t, "bce").item() == pytest.approx(bce.item(), rel=1e-5)
    assert lm.thumbnail_reconstruction(logits, t, "mse").item() == pytest.approx(((p - t) ** 2).mean().item(), rel=1e-5)


# --------------------------------------------------------------------------- networks


def test_adain_is_instance_norm_at_init_and_gamma_beta_differ():
    adain = AdaIN(6, 5)
    x, s = torch.randn(2, 6, 4, 4), torch.randn(2, 5)
    assert torch.allclose(adain(x, s), F.instance_norm(x), atol=1e-6)
    with torch.no_grad():
        adain.mlp[-1].bias.copy_(torch.arange(12.0))
    out = adain(x, s)
    gamma, beta = 1 + torch.arange(6.0), torch.arange(6.0, 12.0)
    assert torch.allclose(out, gamma[None, :, None, None] * F.instance_norm(x) + beta[None, :, None, None], atol=1e-5)


def test_encoder_ignores_domain_code_and_shapes():
    enc = MixtureAttributeEncoder(4, 8, width=8)
    assert enc.backbone.model[1].in_channels == 3  # the image alone (docs/gmdrit.md, difference 10)
    out = enc(torch.randn(3, 3, 32, 32), tau=0.7)
    assert out.logits.shape == out.prob.shape == out.y.shape == (3, 4)
    assert out.mean.shape == out.var.shape == out.z.shape == (3, 8)
    assert (out.var > 0).all()
    assert torch.allclose(out.y.sum(1), torch.ones(3), atol=1e-5)


def test_gumbel_hard_is_exact_onehot_with_gradient():
    logits = torch.randn(5, 3, requires_grad=True)
    y = gumbel_softmax(logits, 0.5, hard=True, generator=torch.Generator().manual_seed(0))
    assert set(y.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(y.detach().sum(1), torch.ones(5))
    (grad,) = torch.autograd.grad((y * torch.randn(5, 3)).sum(), logits)
    assert grad.abs().sum() > 0


def test_gumbel_generator_leaves_global_rng_alone():
    logits = torch.randn(4, 3)
    state = torch.get_rng_state()
    a = gumbel_softmax(logits, 1.0, generator=torch.Generator().manual_seed(3))
    b = gumbel_softmax(logits, 1.0, generator=torch.Generator().manual_seed(3))
    assert torch.equal(a, b) and torch.equal(torch.get_rng_state(), state)


# --------------------------------------------------------------------------- temperature


def test_temperature_schedule():
    model = tiny_model()  # init 1.0, min 0.5, rate 0.013862944 (= ln 2 / 50)
    epoch = 10  # iterations per epoch, given by the trainer's engine
    assert model.temperature(0, epoch) == pytest.approx(1.0)
    assert model.temperature(5, epoch) == pytest.approx(math.exp(-0.013862944 * 0.5))  # epoch 0.5
    assert model.temperature(250, epoch) == pytest.approx(0.7071068, abs=1e-6)  # epoch 25: 2^-1/2
    assert model.temperature(490, epoch) == pytest.approx(math.exp(-0.013862944 * 49))  # above the floor
    assert model.temperature(600, epoch) == 0.5 and model.temperature(10**6, epoch) == 0.5  # the floor
    # no trainer: one iteration per epoch
    assert model.temperature(25) == pytest.approx(0.7071068, abs=1e-6)


def test_temperature_reaches_every_encoder_call(monkeypatch):
    model = tiny_model(hard_gumbel=True)
    engine = Engine(model, iterations_per_epoch=4)
    seen = []
    real = gnets.gumbel_softmax

    def spy(logits, tau, hard=False, generator=None):
        seen.append((tau, hard))
        return real(logits, tau, hard, generator)

    monkeypatch.setattr(gnets, "gumbel_softmax", spy)
    out = model.train_step([random_batch([0, 1])], iteration=200, engine=engine)
    expected = max(math.exp(-0.013862944 * 50), 0.5)
    assert len(seen) == 3 and all(t == pytest.approx(expected) and h for t, h in seen)
    assert out["gumbel_tau"].item() == pytest.approx(expected)


# --------------------------------------------------------------------------- prior and mixture


def test_prior_samples_have_the_learned_mean_and_variance():
    model = tiny_model(components_per_domain=2)  # K = 4, nz = 8
    G = model.networks["generator"]
    with torch.no_grad():
        G.prior_mean.weight.copy_(torch.arange(32.0).view(8, 4) / 10 - 1)
        G.prior_mean.bias.fill_(0.5)
        G.prior_var.weight.copy_(torch.linspace(-2, 1, 32).view(8, 4))
        G.prior_var.bias.fill_(0.2)
    n = 40000
    z, y = model.sample_attributes(1, n, component=0, generator=torch.Generator().manual_seed(0))
    assert torch.equal(y, F.one_hot(torch.full((n,), 2), 4).float())  # domain 1, its first component = k 2
    k = 2
    mean = np.array([(row * 4 + k) / 10 - 1 + 0.5 for row in range(8)])
    pre = np.linspace(-2, 1, 32).reshape(8, 4)[:, k] + 0.2
    var = np.log1p(np.exp(pre)) + VAR_FLOOR
    assert np.allclose(z.mean(0).numpy(), mean, atol=4 * np.sqrt(var / n).max())
    assert np.allclose(z.var(0).numpy(), var, rtol=0.05)


def test_two_components_per_domain_trains_and_maps_components():
    model = tiny_model(components_per_domain=2)
    assert model.num_components == 4
    assert model.component_domains().tolist() == [0, 0, 1, 1]
    assert model.networks["attribute_encoder"].qy[-1].out_features == 4
    engine = Engine(model)
    for it in range(3):
        out = model.train_step([random_batch([0, 1, 1, 0], seed=it)], it, engine)
        assert all(math.isfinite(float(v)) for v in out.values())
    images = random_batch([0, 1, 1, 0]).images
    logits = model.networks["attribute_encoder"](images).logits
    q = torch.softmax(logits, 1)
    assert torch.allclose(model.classify(images), torch.stack([q[:, :2].sum(1), q[:, 2:].sum(1)], 1), atol=1e-6)
    _, y = model.sample_attributes(1, 400, generator=torch.Generator().manual_seed(0))
    assert set(y.argmax(1).tolist()) == {2, 3}
    _, y = model.sample_attributes(0, 50, component=1)
    assert set(y.argmax(1).tolist()) == {1}
    code = model.onehot(torch.tensor([0, 1, 1, 0]))
    t = model.forward_pass(images, code)
    assert (t.random_y.argmax(1) // 2).tolist() == [0, 1, 1, 0]  # random attributes in the half's domain
    assert t.attr_random.shape == (4, 8)
    with pytest.raises(ValueError):
        model.sample_attributes(0, 2, component=2)


def test_gaussian_kl_uses_the_prior_of_the_same_images_y():
    model = tiny_model()
    batch = random_batch([0, 1])
    code = model.onehot(batch.domains)
    torch.manual_seed(5)
    t = model.forward_pass(batch.images, code)
    mean, var = model.networks["generator"].prior(t.y)
    assert torch.allclose(t.prior_mean, mean) and torch.allclose(t.prior_var, var)
    terms = model.encoder_generator_terms(batch.images, code, t)
    expected = 0.01 * kl_divergence(Normal(t.attr_mean, t.attr_var.sqrt()), Normal(mean, var.sqrt())).sum()
    assert terms["kl_gauss"].item() == pytest.approx(expected.item(), rel=1e-4)
    assert {"kl_gauss", "kl_categ", "label", "thumb_rec"} <= terms.keys() and "kl_attribute" not in terms


def test_label_similarity_has_generator_gradient():
    model = tiny_model()
    batch = random_batch([0, 1])
    code = model.onehot(batch.domains)
    t = model.forward_pass(batch.images, code)
    terms = model.generator_alone_terms(batch.images, code, t)
    assert "adv_random" not in terms and {"label_sim", "cls_random", "latent"} <= terms.keys()
    _, cls = model.networks["dis_random"](t.fake_random)
    by_hand = -(torch.log_softmax(cls, 1)[0, 0] + torch.log_softmax(cls, 1)[1, 1]) / 2
    assert terms["label_sim"].item() == pytest.approx(by_hand.item(), rel=1e-5)
    params = list(model.networks["generator"].decoder.parameters())
    grads = torch.autograd.grad(terms["label_sim"], params, allow_unused=True)
    assert sum(g.abs().sum().item() for g in grads if g is not None) > 0
    realism = tiny_model(gan2_realism=True)
    t2 = realism.forward_pass(batch.images, code)
    assert "adv_random" in realism.generator_alone_terms(batch.images, code, t2)


def test_domain_stage_uses_mdmm_losses_and_domain_code():
    model = tiny_model(condition_on="domain", components_per_domain=2)
    batch = random_batch([0, 1])
    code = model.onehot(batch.domains)
    t = model.forward_pass(batch.images, code)
    assert torch.equal(t.y, torch.tensor([[0.5, 0.5, 0, 0], [0, 0, 0.5, 0.5]]))
    assert t.attr_random.shape == (2, 8)  # MDMM: one N(0, I) draw shared by both halves
    assert torch.equal(t.attr_random[0], t.attr_random[1])
    out = model.train_step([batch], 0, Engine(model))
    assert {"kl_attribute", "adv_random", "cls_random", "latent"} <= out.keys()
    assert not {"kl_gauss", "kl_categ", "label", "thumb_rec", "label_sim", "gumbel_tau"} & out.keys()


def test_sample_grid_and_test_time_api():
    model = tiny_model()
    batch = random_batch([0, 1])
    state = torch.get_rng_state()
    grid = model.sample_grid(batch)
    assert torch.equal(torch.get_rng_state(), state)
    assert grid.shape == (2, 5, 3, 32, 32) and torch.isfinite(grid).all()
    assert torch.equal(grid, model.sample_grid(batch))  # seeded from train.seed
    assert all(net.training for net in model.networks.values())
    state = torch.get_rng_state()
    z, y = model.encode_reference(batch.images)
    probs = model.classify(batch.images)
    assert torch.equal(torch.get_rng_state(), state)  # no noise drawn: z is the mean
    assert torch.allclose(probs.sum(1), torch.ones(2)) and torch.equal(y.argmax(1), probs.argmax(1))
    assert z.shape == (2, 8) and torch.equal(y.sum(1), torch.ones(2)) and set(y.unique().tolist()) <= {0.0, 1.0}
    content = model.networks["content_encoder"].eval()(batch.images)
    assert model.generate(content, z, y).shape == (2, 3, 32, 32)


# --------------------------------------------------------------------------- presets through the trainer

STUDY_PRESETS = ["study_gmdrit", "study_mdmm", "study_gmdrit_k2"]


@pytest.mark.parametrize("preset", NEW_PRESETS + STUDY_PRESETS + ["mdmm_baseline", "quickstart", "demo_gmdrit"])
def test_preset_trains_two_iterations(preset, gm_data, tmp_path):
    cfg = load_config(
        preset,
        [
            f"data.root={gm_data}",
            "data.crop=32",
            "data.resize=36",
            "model.width=8",
            "model.nz=8",
            "train.max_iters=2",
            "train.device=cpu",
            "train.log_every=1",
            "train.sample_every=1000",
            "train.save_every=1000",
        ],
    )
    result = train(cfg, tmp_path / "run")
    lines = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in lines] == [1, 2] and result.iterations == 2
    for record in lines:
        assert all(math.isfinite(v) for v in record.values() if isinstance(v, (int, float)))
    if cfg.model.family == "gmdrit" and cfg.mixture.condition_on == "inferred":
        assert {"kl_gauss", "kl_categ", "label", "thumb_rec", "label_sim", "gumbel_tau"} <= lines[-1].keys()


def test_study_presets_differ_only_in_family_and_components():
    """The GM-DRIT vs MDMM study compares like with like: every key but these is the same."""

    def flat(tree, prefix=""):
        out = {}
        for key, value in tree.items():
            out.update(flat(value, f"{prefix}{key}.") if isinstance(value, dict) else {prefix + key: value})
        return out

    configs = {name: flat(dataclasses.asdict(load_config(name))) for name in STUDY_PRESETS}
    base = configs["study_gmdrit"]
    differing = {name: {k for k in base if configs[name][k] != base[k]} for name in STUDY_PRESETS}
    assert differing == {
        "study_gmdrit": set(),
        "study_mdmm": {"name", "description", "model.family"},
        "study_gmdrit_k2": {"name", "description", "mixture.components_per_domain"},
    }
    assert configs["study_gmdrit_k2"]["mixture.components_per_domain"] == 2


def test_preset_settings():
    # the report's experiments ([R1] of docs/references.md): (domains, crop, resize, lr_dis, lr_eg, iters, nz)
    expected = {
        "integration": (["horse", "zebra"], 216, 256, 1e-4, 1e-4, 5000, 216),
        "loss_integration": (["apple", "orange"], 216, 256, 1e-4, 1e-4, 5000, 216),
        "adain": (["apple", "orange"], 216, 256, 1e-4, 1e-4, 4500, 216),
        "double_conv": (["apple", "orange"], 216, 256, 1e-4, 1e-4, 4000, 216),
        "half_discr": (["apple", "orange"], 216, 256, 5e-5, 1e-4, 5500, 216),
        "double_gen_enc": (["apple", "orange"], 216, 256, 1e-4, 2e-4, 5500, 216),
        "reduced_res": (["apple", "orange"], 108, 128, 5e-5, 1e-4, 10000, 108),
    }
    for name, (domains, crop, resize, lr_d, lr_eg, iters, nz) in expected.items():
        cfg = load_config(name)
        assert cfg.model.family == "gmdrit" and cfg.data.domains == domains and cfg.train.batch_size == 2
        assert (cfg.data.crop, cfg.data.resize, cfg.model.nz, cfg.train.max_iters) == (crop, resize, nz, iters)
        assert (cfg.optim.lr_dis, cfg.optim.lr_eg) == (lr_d, lr_eg)
        assert cfg.mixture.condition_on == ("domain" if name == "integration" else "inferred")
        assert cfg.model.use_adain == (name == "adain") and cfg.model.double_convT == (name == "double_conv")


# --------------------------------------------------------------------------- parameter counts (dry run)


def _expected_counts(S: int, nz: int, adain: bool = False, double: bool = False) -> dict[str, int]:
    """The parameter counts of the report authors' fork of MDMM (K = C = 2), adjusted for gmdrit's changes
    (docs/gmdrit.md, "Differences from the report's code"): no fcVar, no tiled
    code channels (-2 x 64 x 16), p(x|z) = MLP(nz -> 512 -> 512 -> 3 x 16 x 16) instead of the row MLP,
    AdaIN = Linear(nz+2 -> 256) + Linear(256 -> 512) instead of the fork's 66,560."""
    fork_ea = {108: 2_147_314, 216: 2_424_226}[S]
    fork_g = {108: 10_337_668, 216: 17_360_908}[S]
    row_mlp = {108: 373_868, 216: 484_568}[S]
    double_extra = {108: 506_232 + 266_772, 216: 19_139_608 - 17_360_908}[S]
    thumb = (nz * 512 + 512) + (512 * 512 + 512) + (512 * 768 + 768)
    g = fork_g - row_mlp + thumb
    if adain:
        g += (nz + 2) * 256 + 256 + 256 * 512 + 512
    if double:
        g += double_extra
    return {
        "content_encoder": 5_099_136,
        "attribute_encoder": fork_ea - (256 * nz + nz) - 2 * 64 * 16,
        "generator": g,
        "dis_encoded": {108: 15_711_872, 216: 15_728_256}[S],
        "dis_random": {108: 15_711_872, 216: 15_728_256}[S],
        "dis_content": 10_683_906,
    }


@pytest.mark.slow  # the full-size networks built on the CPU
def test_dry_run_json_prints_parameter_counts(cli):
    out = cli("train", "--preset", "reduced_res", "--dry-run", "--json", cwd=REPO)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["params"] == _expected_counts(108, 108)
    assert data["config"]["model"]["family"] == "gmdrit"


@pytest.mark.parametrize(
    "preset,flags",
    [
        ("loss_integration", {}),
        ("integration", {}),
        ("adain", {"adain": True}),
        ("double_conv", {"double": True}),
        ("half_discr", {}),
        ("double_gen_enc", {}),
    ],
)
def test_preset_parameter_counts(preset, flags):
    """Built on the meta device; `train --dry-run` (describe_model, on the CPU) is checked above."""
    assert build_on_meta(load_config(preset)).parameter_counts() == _expected_counts(216, 216, **flags)
