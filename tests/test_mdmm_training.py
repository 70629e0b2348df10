import copy
import json
import math

import pytest
import torch
from PIL import Image

from conftest import APPLE2ORANGE, tiny_overrides
from gmdrit_cli.config.schema import load_config, load_config_file
from gmdrit_cli.data.unpaired import Batch
from gmdrit_cli.families import build_for_training, build_model, drit
from gmdrit_cli.families import drit_losses as losses
from gmdrit_cli.training.checkpoint import load_network_weights, load_optimizer_states, verify_checkpoint
from gmdrit_cli.training.engine import lr_multiplier
from gmdrit_cli.training.trainer import Run, train


def tiny_cfg(root, *extra, iters=2):
    return load_config("mdmm_baseline", tiny_overrides(root, iters) + list(extra))


def random_batch(n=2, size=32, seed=0):
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.rand(n, 3, size, size, generator=g) * 2 - 1, torch.tensor([0, 1] * (n // 2)))


def test_loss_functions_against_hand_values():
    zeros = torch.zeros(2, 1, 6, 6)
    assert losses.adversarial(zeros, True).item() == pytest.approx(2 * math.log(2))  # summed over 2 samples
    logits = torch.tensor([[[[2.0]]], [[[-1.0]]]])
    expected = math.log(1 + math.exp(-2.0)) + math.log(1 + math.exp(1.0))
    assert losses.adversarial(logits, True).item() == pytest.approx(expected)
    mean, logvar = torch.randn(3, 5), torch.randn(3, 5)
    q = torch.distributions.Normal(mean, torch.exp(0.5 * logvar))
    p = torch.distributions.Normal(torch.zeros(3, 5), torch.ones(3, 5))
    assert losses.kl_standard_normal(mean, logvar).item() == pytest.approx(
        torch.distributions.kl_divergence(q, p).sum().item(), rel=1e-5
    )


def test_lambda_policy_matches_mdmm():
    assert lr_multiplier("lambda", 600, 1200, 600) == 1.0
    assert lr_multiplier("lambda", 999, 1200, 600) == pytest.approx(1 - 399 / 601)  # 0.336, the official policy
    assert lr_multiplier("lambda", 1199, 1200, 600) == pytest.approx(2 / 601)
    assert lr_multiplier("step", 25, 1200, 10) == pytest.approx(0.01)


def test_discriminator_loss_is_4ln2_at_init(tiny_data):
    """The official MDMM losses: with near-zero logits at init, each discriminator's GAN loss is 4 ln 2 at B=2."""
    torch.manual_seed(0)
    model = build_model(tiny_cfg(tiny_data, "loss.lambda_cls=0"), torch.device("cpu"))
    b = random_batch()
    code = model.onehot(b.domains)
    d = drit.discriminator_losses(model, b.images, code, model.forward_pass(b.images, code))
    assert d  # at least one discriminator's loss to check
    for value in d.values():
        assert value.item() == pytest.approx(4 * math.log(2), abs=0.05)


def test_two_step_update_matches_reference_procedure(tiny_data):
    """docs/mdmm.md (Differences from the official MDMM code): grads of L_EG (E_c, E_a, G) and of L_G_alone
    (E_c, G) taken on one graph before any step; then Adam steps with each. Checked against an independent replay
    with .backward()."""
    cfg = tiny_cfg(tiny_data, "speed.amp=off")
    torch.manual_seed(0)
    model, engine = build_for_training(cfg, torch.device("cpu"))
    reference, r_engine = copy.deepcopy((model, engine))
    batch = random_batch()

    torch.manual_seed(1)
    model.train_step([batch], 0, engine)

    torch.manual_seed(1)
    r = reference
    code = r.onehot(batch.domains)
    t = r.forward_pass(batch.images, code)
    drit.update_discriminators(r, r_engine, batch.images, code, t)
    eg = sum(r.encoder_generator_terms(batch.images, code, t).values())
    g_alone = sum(r.generator_alone_terms(batch.images, code, t).values())
    names_eg, names_g = ("content_encoder", "attribute_encoder", "generator"), ("content_encoder", "generator")
    for n in r.networks:
        r.networks[n].zero_grad(set_to_none=True)
    eg.backward(retain_graph=True)
    g1 = {n: [p.grad.clone() for p in r.networks[n].parameters()] for n in names_eg}
    for n in r.networks:
        r.networks[n].zero_grad(set_to_none=True)
    g_alone.backward()
    g2 = {n: [p.grad.clone() for p in r.networks[n].parameters()] for n in names_g}
    for grads, names in ((g1, names_eg), (g2, names_g)):
        for n in names:
            for p, g in zip(r.networks[n].parameters(), grads[n]):
                p.grad = g
            r_engine.optimizers[n].step()

    for n in model.networks:
        for (k, a), b in zip(model.networks[n].state_dict().items(), r.networks[n].state_dict().values()):
            assert torch.allclose(a, b, atol=1e-6, rtol=1e-5), f"{n}.{k} differs"
    # E_a took exactly one Adam step, E_c and G two (the official double update)
    assert (
        engine.optimizers["attribute_encoder"].state[next(iter(model.networks["attribute_encoder"].parameters()))][
            "step"
        ]
        == 1
    )
    assert engine.optimizers["generator"].state[next(iter(model.networks["generator"].parameters()))]["step"] == 2


def test_content_discriminator_interleaving_at_small_size(tiny_data):
    cfg = tiny_cfg(tiny_data, "model.use_content_dis=true", "model.content_dis_every=3")
    torch.manual_seed(0)
    model, engine = build_for_training(cfg, torch.device("cpu"))
    assert model.batches_per_step() == 3
    before = [p.clone() for p in model.networks["dis_content"].parameters()]
    out = model.train_step([random_batch(seed=i) for i in range(3)], 0, engine)
    assert "dis_content" in out and "adv_content" in out
    assert all(torch.isfinite(v) for v in out.values())
    assert any(not torch.equal(a, b) for a, b in zip(before, model.networks["dis_content"].parameters()))
    # D_c's learning rate is never decayed (official update_lr skips it)
    engine.set_lr_multiplier(0.5)
    assert engine.optimizers["dis_content"].param_groups[0]["lr"] == pytest.approx(4e-5)
    assert engine.optimizers["generator"].param_groups[0]["lr"] == pytest.approx(5e-5)


def test_run_folder_contents(tiny_data, tmp_path):
    cfg = tiny_cfg(tiny_data, "train.sample_every=2", "train.log_every=1", iters=3)
    result = train(cfg, tmp_path / "run")
    run = tmp_path / "run"
    assert load_config_file(run / "config.yaml") == cfg
    lines = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["iter"] for r in lines] == [1, 2, 3]
    for r in lines:
        for key in ("loss_eg", "loss_g_alone", "dis_encoded", "dis_random", "self_recon", "latent"):
            assert math.isfinite(r[key])
    grids = sorted((run / "samples").glob("*.png"))
    assert [g.name for g in grids] == ["iter_0000002.png", "iter_0000003.png"]
    with Image.open(grids[0]) as im:
        assert im.size == (5 * 34 + 2, 2 * 34 + 2)  # 2 rows x 5 tiles of 32 px with 2 px gutters
    assert result.checkpoint == run / "checkpoints" / "iter_0000003"
    assert (run / "checkpoints" / "latest").read_text().strip() == "iter_0000003"
    verify_checkpoint(result.checkpoint)


def test_saved_weights_reload_to_identical_outputs(tiny_data, tmp_path):
    cfg = tiny_cfg(tiny_data)
    run = Run(cfg, tmp_path / "run")
    result = run.fit()
    fresh, fresh_engine = build_for_training(cfg, torch.device("cpu"))
    load_network_weights(result.checkpoint, fresh.networks)
    state = verify_checkpoint(result.checkpoint)
    load_optimizer_states(result.checkpoint, fresh_engine.optimizers, state["optimizers"])
    x = random_batch().images
    for model in (run.model, fresh):
        for net in model.networks.values():
            net.eval()
    code = fresh.onehot(torch.tensor([0, 1]))
    gen = lambda m: torch.Generator().manual_seed(5)  # noqa: E731
    a, b = run.model.forward_pass(x, code, gen(0)), fresh.forward_pass(x, code, gen(0))
    assert torch.equal(a.fake_encoded, b.fake_encoded) and torch.equal(a.cycle_recon, b.cycle_recon)
    assert torch.equal(run.model.networks["dis_encoded"](x)[0], fresh.networks["dis_encoded"](x)[0])
    for name, opt in run.engine.optimizers.items():
        for p_a, p_b in zip(opt.param_groups[0]["params"], fresh_engine.optimizers[name].param_groups[0]["params"]):
            sa, sb = opt.state[p_a], fresh_engine.optimizers[name].state[p_b]
            assert sa.keys() == sb.keys()
            assert all(torch.equal(sa[k], sb[k]) for k in sa)
        assert opt.param_groups[0]["lr"] == fresh_engine.optimizers[name].param_groups[0]["lr"]


def test_training_is_deterministic_on_cpu(tiny_data, tmp_path):
    cfg = tiny_cfg(tiny_data)
    a = Run(cfg, tmp_path / "a")
    a.fit()
    b = Run(cfg, tmp_path / "b")
    b.fit()
    assert (tmp_path / "a" / "metrics.jsonl").read_text().split('"time"')[0] == (
        tmp_path / "b" / "metrics.jsonl"
    ).read_text().split('"time"')[0]
    for (k, x), y in zip(a.model.networks.state_dict().items(), b.model.networks.state_dict().values()):
        assert torch.equal(x, y), k


@pytest.mark.slow  # the official model at full size
@pytest.mark.skipif(not APPLE2ORANGE.is_dir(), reason="needs ../shared/datasets/apple2orange")
def test_real_size_mdmm_step_on_apple2orange(tmp_path):
    """One iteration of the real mdmm_baseline preset (216 px, official networks) on real images."""
    cfg = load_config("mdmm_baseline", [f"data.root={APPLE2ORANGE}", "train.max_iters=1", "train.device=cpu"])
    result = train(cfg, tmp_path / "run")
    assert result.iterations == 1
    assert all(math.isfinite(v) for v in result.last_losses.values())


@pytest.mark.parametrize("family", ["mdmm", "gmdrit"])
def test_fused_adam_on_channels_last_weights_equals_foreach(tiny_data, family):
    """autograd.grad can return a contiguous gradient for a channels-last weight; CPU fused Adam then
    silently paired each weight with another element's gradient (CUDA's refused). One step (lr 0.01) with
    fused Adam must move every convolution weight as foreach Adam does: without the fix they differed by
    up to 0.035 (3 x lr), with it by 1e-4 (Adam's g / sqrt(v) on float noise). Biases in front of
    instance norms have gradients of pure noise and are left out."""
    weights = {}
    for opt in ("fused", "foreach"):
        cfg = tiny_cfg(
            tiny_data,
            f"model.family={family}",
            "speed.channels_last=on",
            "speed.amp=off",
            f"speed.optimizer={opt}",
            "optim.lr_eg=0.01",
            "optim.lr_dis=0.01",
        )
        torch.manual_seed(0)
        model, engine = build_for_training(cfg, torch.device("cpu"))
        torch.manual_seed(1)
        model.train_step([random_batch()], 0, engine)
        weights[opt] = {k: v.clone() for k, v in model.networks.state_dict().items() if v.dim() == 4}
    assert any(not v.is_contiguous() for v in weights["fused"].values())  # channels-last weights
    for key, value in weights["fused"].items():
        assert (value - weights["foreach"][key]).abs().max().item() < 1e-3, key
