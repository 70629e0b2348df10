"""The options against the collapse of the latent path: mode seeking and aggregate-posterior sampling."""

from __future__ import annotations

import pytest
import torch

from conftest import tiny_overrides
from gmdrit_cli.config.schema import build_config, load_config
from gmdrit_cli.data.unpaired import Batch
from gmdrit_cli.families import build_model
from gmdrit_cli.families import drit_losses as losses
from gmdrit_cli.inference.model_files import load_for_inference
from gmdrit_cli.training.engine import Engine
from gmdrit_cli.training.trainer import train

torch.set_num_threads(1)
CPU = torch.device("cpu")


def tiny(family: str = "mdmm", **sections) -> object:
    torch.manual_seed(0)
    values = {
        "model": {"family": family, "nz": 8, "width": 8},
        "data": {"crop": 32, "resize": 36, "domains": ["a", "b"]},
        "train": {"device": "cpu"},
    }
    for section, keys in sections.items():
        values.setdefault(section, {}).update(keys)
    return build_model(build_config(values), CPU)


def batch(domains=(0, 1), seed=1) -> Batch:
    g = torch.Generator().manual_seed(seed)
    return Batch(torch.rand((len(domains), 3, 32, 32), generator=g) * 2 - 1, torch.tensor(domains))


# -- mode seeking -------------------------------------------------------------------------------


def test_mode_seeking_value_and_gradient_sign_by_hand():
    """Outputs 0.1 apart everywhere, attributes 2 apart: ratio 0.05, term 1 / (0.05 + 1e-5). Its gradient
    pushes the outputs apart: negative on fake1 where fake1 > fake2, positive on fake2."""
    fake1 = torch.full((2, 3, 4, 4), 0.1, requires_grad=True)
    fake2 = torch.zeros(2, 3, 4, 4, requires_grad=True)
    z1, z2 = torch.ones(2, 8), -torch.ones(2, 8)
    term = losses.mode_seeking(fake1, fake2, z1, z2)
    assert term.item() == pytest.approx(1 / (0.1 / 2 + 1e-5), rel=1e-5)
    g1, g2 = torch.autograd.grad(term, [fake1, fake2])
    assert (g1 < 0).all() and (g2 > 0).all()
    # d term / d fake1 = -1 / (r + eps)^2 * 1 / (n |dz|) per element, n = 96 elements
    assert g1[0, 0, 0, 0].item() == pytest.approx(-1 / (0.05 + 1e-5) ** 2 / (96 * 2), rel=1e-4)
    # farther apart outputs for the same attributes: a smaller term
    assert losses.mode_seeking(fake1 * 2, fake2, z1, z2) < term


@pytest.mark.parametrize("family", ["mdmm", "gmdrit"])
def test_mode_seeking_adds_a_term_that_reaches_the_generator(family):
    model = tiny(family, loss={"mode_seeking": 1.0})
    b = batch()
    code = model.onehot(b.domains)
    t = model.forward_pass(b.images, code)
    assert t.fake_random2.shape == t.fake_random.shape and not torch.equal(t.fake_random2, t.fake_random)
    assert t.attr_random2.shape == t.attr_random.shape
    terms = model.generator_alone_terms(b.images, code, t)
    assert terms["mode_seeking"].item() > 0
    params = list(model.networks["generator"].parameters())
    grads = torch.autograd.grad(terms["mode_seeking"], params, allow_unused=True)
    assert sum(g.abs().sum().item() for g in grads if g is not None) > 0
    assert "mode_seeking" in model.train_step([b], 0, Engine(model))
    off = tiny(family)
    t_off = off.forward_pass(b.images, off.onehot(b.domains))
    assert t_off.fake_random2 is None and "mode_seeking" not in off.generator_alone_terms(b.images, code, t_off)


def test_gmdrit_second_random_attribute_keeps_the_component(monkeypatch):
    model = tiny("gmdrit", loss={"mode_seeking": 1.0}, mixture={"components_per_domain": 2})
    calls = []
    original = model._sample_prior
    monkeypatch.setattr(
        model,
        "_sample_prior",
        lambda y, generator=None, temperature=1.0: calls.append(y) or original(y, generator, temperature),
    )
    b = batch((0, 1, 0, 1))
    t = model.forward_pass(b.images, model.onehot(b.domains))
    assert len(calls) == 2 and torch.equal(calls[0], calls[1]) and torch.equal(calls[1], t.random_y)
    assert (t.random_y.argmax(1) // 2).tolist() == [0, 1, 0, 1]  # components of each sample's domain
    assert not torch.allclose(t.attr_random, t.attr_random2)


# -- aggregate posterior ------------------------------------------------------------------------


def test_aggregate_statistics_move_towards_the_batch_moments():
    model = tiny("mdmm", model={"random_attributes": "aggregate"})
    E_a = model.networks["attribute_encoder"]
    assert torch.equal(E_a.aggregate_mean, torch.zeros(2, 8)) and torch.equal(E_a.aggregate_sq, torch.ones(2, 8))
    mean = torch.tensor([[1.0] * 8, [3.0] * 8, [-2.0] * 8])
    logvar = torch.log(torch.tensor([[0.25] * 8, [0.25] * 8, [4.0] * 8]))
    E_a.update_aggregate(mean, logvar, torch.tensor([0, 0, 1]), momentum=1.0)
    # domain 0: images with means 1 and 3, variance 0.25 each -> mixture mean 2, variance 1 + 0.25
    m, s = E_a.aggregate(torch.tensor([0, 1]))
    assert torch.allclose(m[0], torch.full((8,), 2.0)) and torch.allclose(s[0], torch.full((8,), 1.25**0.5))
    assert torch.allclose(m[1], torch.full((8,), -2.0)) and torch.allclose(s[1], torch.full((8,), 2.0))
    E_a.update_aggregate(torch.zeros(1, 8), torch.zeros(1, 8), torch.tensor([1]), momentum=0.5)
    assert torch.allclose(E_a.aggregate_mean[1], torch.full((8,), -1.0))  # halfway from -2 to 0
    assert torch.allclose(E_a.aggregate_sq[0], torch.full((8,), 5.25))  # domain 0 untouched


def test_aggregate_sampling_in_training_and_at_test_time():
    model = tiny("mdmm", model={"random_attributes": "aggregate"})
    E_a = model.networks["attribute_encoder"]
    E_a.aggregate_mean.copy_(torch.tensor([[5.0] * 8, [-5.0] * 8]))
    E_a.aggregate_sq.copy_(torch.tensor([[25.01] * 8, [25.01] * 8]))  # std 0.1
    z, code = model.sample_attributes(1, 200)
    assert z.mean().item() == pytest.approx(-5.0, abs=0.05) and z.std().item() == pytest.approx(0.1, rel=0.2)
    b = batch((0, 1))
    t = model.forward_pass(b.images, model.onehot(b.domains))
    assert t.attr_random[0].mean().item() == pytest.approx(5.0, abs=0.5)  # each half in its own domain
    assert t.attr_random[1].mean().item() == pytest.approx(-5.0, abs=0.5)
    before = E_a.aggregate_mean.clone()
    model.train_step([b], 0, Engine(model))
    assert not torch.equal(E_a.aggregate_mean, before)  # the running statistics follow the encoder
    prior = tiny("mdmm")
    assert not hasattr(prior.networks["attribute_encoder"], "aggregate_mean")  # old weights still load


def test_aggregate_statistics_are_saved_with_the_weights(tmp_path, tiny_data):
    cfg = load_config("quickstart", tiny_overrides(tiny_data, 3) + ["model.random_attributes=aggregate"])
    train(cfg, tmp_path / "run")
    _, model = load_for_inference(tmp_path / "run", CPU)
    E_a = model.networks["attribute_encoder"]
    assert not torch.equal(E_a.aggregate_mean, torch.zeros_like(E_a.aggregate_mean))
    mean, std = model.attribute_prior(model.onehot(torch.tensor([0, 1])))
    assert torch.allclose(mean, E_a.aggregate_mean)
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    z, _ = model.sample_attributes(0, 4, None, g1)
    assert torch.allclose(z, mean[0] + std[0] * torch.randn(4, 8, generator=g2))


@pytest.mark.parametrize("family", ["mdmm", "gmdrit"])
def test_sample_grid_shows_several_random_outputs_per_input(family):
    model = tiny(family, train={"grid_random": 3})
    grid = model.sample_grid(batch())
    assert grid.shape == (2, 7, 3, 32, 32)  # input, encoded, 3 random, self, cycle
    for row in grid:
        randoms = row[2:5]
        assert not torch.equal(randoms[0], randoms[1]) and not torch.equal(randoms[1], randoms[2])
    assert torch.equal(grid, model.sample_grid(batch()))  # seeded: the same grid every time
    assert tiny(family).sample_grid(batch()).shape == (2, 5, 3, 32, 32)  # the report's layout by default


# -- GM-DRIT's prior learning rate -------------------------------------------------------------


def _prior_params(model):
    G = model.networks["generator"]
    return [G.prior_mean.weight, G.prior_mean.bias, G.prior_var.weight, G.prior_var.bias]


def test_prior_lr_mult_gives_p_z_given_y_its_own_learning_rate():
    plain = Engine(tiny("gmdrit"))
    assert len(plain.optimizers["generator"].param_groups) == 1  # the report's optimizer, unchanged
    fast_model = tiny("gmdrit", mixture={"prior_lr_mult": 20.0})
    fast = Engine(fast_model)
    groups = fast.optimizers["generator"].param_groups
    assert [g["lr"] for g in groups] == pytest.approx([1e-4, 2e-3])
    assert {id(p) for p in groups[1]["params"]} == {id(p) for p in _prior_params(fast_model)}
    assert sum(len(g["params"]) for g in groups) == len(list(fast_model.networks["generator"].parameters()))
    fast.set_lr_multiplier(0.5)  # the schedule keeps the ratio
    assert [g["lr"] for g in groups] == pytest.approx([5e-5, 1e-3])


def test_prior_lr_mult_moves_the_prior_faster_and_nothing_else():
    """Same seed, same batch, one step: Adam's first step is about lr per element, so the prior moves
    about 20 times further with prior_lr_mult 20, and every other generator weight moves the same."""
    moved = {}
    for mult in (1.0, 20.0):
        model = tiny("gmdrit", mixture={"prior_lr_mult": mult})
        prior_before = [p.detach().clone() for p in _prior_params(model)]
        dec_before = model.networks["generator"].decoder.state_dict()
        dec_before = {k: v.clone() for k, v in dec_before.items()}
        torch.manual_seed(3)
        model.train_step([batch()], 0, Engine(model))
        moved[mult] = (
            sum((p - q).abs().sum().item() for p, q in zip(_prior_params(model), prior_before)),
            {
                k: (v - dec_before[k]).abs().sum().item()
                for k, v in model.networks["generator"].decoder.state_dict().items()
            },
        )
    assert moved[1.0][0] > 0
    assert moved[20.0][0] / moved[1.0][0] == pytest.approx(20.0, rel=0.05)
    assert moved[20.0][1] == pytest.approx(moved[1.0][1], rel=1e-4, abs=1e-9)


# -- sampling temperature -----------------------------------------------------------------------


@pytest.mark.parametrize(
    "family,sections",
    [
        ("mdmm", {}),
        ("mdmm", {"model": {"random_attributes": "aggregate"}}),
        ("gmdrit", {}),
        ("gmdrit", {"mixture": {"condition_on": "domain"}}),
    ],
)
def test_temperature_scales_the_spread_of_random_attributes_around_the_prior_mean(family, sections):
    model = tiny(family, **sections)
    if family == "mdmm" and sections:  # a non-trivial aggregate posterior: mean 1..8, std 0.1..0.8
        E_a = model.networks["attribute_encoder"]
        mean = torch.arange(1, 9.0).repeat(2, 1)
        E_a.aggregate_mean.copy_(mean)
        E_a.aggregate_sq.copy_(mean.pow(2) + (mean / 10).pow(2))
    z1, y1 = model.sample_attributes(1, 6, None, torch.Generator().manual_seed(4))
    z3, y3 = model.sample_attributes(1, 6, None, torch.Generator().manual_seed(4), 0.3)
    mean, _ = model.attribute_prior(y1)
    assert torch.equal(y1, y3)
    assert torch.allclose(z3 - mean, 0.3 * (z1 - mean), atol=1e-5)
    assert not torch.allclose(z1, mean)
