"""The model-family contract, checked for every registered family (docs/adding-a-family.md).

A family that registers itself in ``gmdrit_cli.families`` is picked up here without editing this file: a tiny
model (crop 32, width 8, nz 8, plus the family's own ``tiny_overrides``) of the ``quickstart`` preset with
``model.family`` set to it trains two finite steps, resumes bitwise, translates, interpolates and exports through
the CLI, evaluates NDB/JSD and counts its parameters in ``--dry-run``. A family whose capabilities say
``paired_data`` gets a tiny paired dataset (pix2pix A|B files) and paired batches instead of unpaired ones; the
translation tasks come from ``capabilities.tasks``.
"""

from __future__ import annotations

import dataclasses
import inspect
import json
import math

import pytest
import torch
from safetensors.torch import load_file

from conftest import (
    family_overrides,
    family_trains_on_pairs,
    input_image,
    make_dataset,
    make_paired_dataset,
    set_args,
)
from gmdrit_cli.config.schema import load_config
from gmdrit_cli.data.unpaired import Batch
from gmdrit_cli.families import MODEL_FAMILIES, build_for_training, build_model
from gmdrit_cli.families.base import Capabilities, ModelFamily, OptimizerGroup
from gmdrit_cli.training.engine import Engine
from gmdrit_cli.training.trainer import resume_run, train

FAMILIES = sorted(MODEL_FAMILIES)
CPU = torch.device("cpu")


def tiny_cfg(family: str, root, iters: int = 2):
    return load_config("quickstart", family_overrides(family, root, iters))


def random_batch(seed: int = 0, with_targets: bool = False) -> Batch:
    g = torch.Generator().manual_seed(seed)
    images = torch.rand(2, 3, 32, 32, generator=g) * 2 - 1
    if with_targets:  # a paired batch: inputs of domain 0 with their domain-1 outputs
        return Batch(images, torch.tensor([0, 0]), torch.rand(2, 3, 32, 32, generator=g) * 2 - 1)
    return Batch(images, torch.tensor([0, 1]))


@pytest.fixture(scope="module")
def datasets(tmp_path_factory):
    base = tmp_path_factory.mktemp("contract")
    return make_dataset(base / "data"), make_paired_dataset(base / "paired")


@pytest.fixture
def data(request, datasets):
    """The tiny dataset of the family under test (its ``family`` parameter): paired or unpaired."""
    return datasets[1] if family_trains_on_pairs(request.node.callspec.params["family"]) else datasets[0]


@pytest.mark.parametrize("family", FAMILIES)
def test_family_fulfils_the_contract(family, data):
    cls = MODEL_FAMILIES[family]
    assert issubclass(cls, ModelFamily) and not inspect.isabstract(cls), f"{family} leaves abstract methods"
    assert cls.name == family and cls.description
    torch.manual_seed(0)
    model = build_model(tiny_cfg(family, data), CPU)
    assert isinstance(model.capabilities, Capabilities)
    assert set(model.test_time_networks) <= set(model.networks.keys())
    groups = model.optimizer_groups()
    assert groups and all(isinstance(g, OptimizerGroup) and g.lr > 0 for g in groups)
    grouped = [id(p) for g in groups for pg in g.param_groups for p in pg["params"]]
    assert len(grouped) == len(set(grouped)), "a parameter is in two optimizer groups"
    assert set(grouped) == {id(p) for p in model.networks.parameters()}, "every parameter is optimized once"


@pytest.mark.parametrize("family", FAMILIES)
def test_two_training_steps_have_finite_losses(family, data):
    torch.manual_seed(0)
    model, engine = build_for_training(tiny_cfg(family, data), CPU)
    pairs = model.capabilities.paired_data
    before = {k: v.clone() for k, v in model.networks.state_dict().items()}
    for it in range(2):
        batches = [random_batch(it * 10 + j, pairs) for j in range(model.batches_per_step())]
        losses = model.train_step(batches, it, engine)
        assert losses and all(math.isfinite(float(v)) for v in losses.values()), losses
    assert any(not torch.equal(v, model.networks.state_dict()[k]) for k, v in before.items())
    assert json.dumps(model.extra_state(2, engine.iterations_per_epoch))  # JSON-able for state.json
    state = torch.get_rng_state()
    grid = model.sample_grid(random_batch(with_targets=pairs))
    assert torch.equal(torch.get_rng_state(), state)
    assert grid.dim() == 5 and grid.shape[0] == 2 and torch.isfinite(grid).all()
    assert all(net.training for net in model.networks.values())


@pytest.mark.parametrize("family", FAMILIES)
def test_test_time_api(family, data):
    torch.manual_seed(0)
    model = build_model(tiny_cfg(family, data), CPU, training=False)
    model.keep_test_time_networks()
    model.eval_mode()
    images = random_batch().images
    caps = model.capabilities
    tasks = caps.tasks(2)
    assert tasks and all(s != t and {s, t} <= {0, 1} for s, t in tasks)
    for target in sorted({t for _, t in tasks}):
        z, cond = model.sample_attributes(target, 6, None, torch.Generator().manual_seed(1))
        z3, cond3 = model.sample_attributes(target, 6, None, torch.Generator().manual_seed(1), 0.3)
        mean, _ = model.attribute_prior(cond)
        assert torch.equal(cond, cond3) and torch.allclose(z3 - mean, 0.3 * (z - mean), atol=1e-5)
        zr, condr = model.encode_reference(images, torch.tensor([target, target]))
        assert zr.shape == (2, z.shape[1]) and condr.shape == (2, cond.shape[1])
        out = model.translate(images, target, (z, cond))  # 2 inputs x 3 attributes each
        assert out.shape == (6, 3, 32, 32) and out.abs().max() <= 1
        assert torch.allclose(out[3:], model.translate(images[1:], target, (z[3:], cond[3:])), atol=1e-5)
        assert model.translate(images, target, generator=torch.Generator().manual_seed(2)).shape == (2, 3, 32, 32)
    if caps.classifies_domains:
        assert torch.allclose(model.classify(images).sum(1), torch.ones(2), atol=1e-5)
    if caps.has_mixture:
        probs = model.component_probabilities(images)
        assert probs.shape == (2, 2 * caps.components_per_domain)
        _, c = model.sample_attributes(0, 4, caps.components_per_domain - 1)
        assert c.shape[0] == 4
    else:
        with pytest.raises(ValueError):
            model.sample_attributes(tasks[0][1], 2, 0)  # a component where there are none


@pytest.mark.parametrize("family", FAMILIES)
def test_save_resume_is_bitwise_identical_to_a_straight_run(family, data, tmp_path):
    n = 4
    train(tiny_cfg(family, data, n), tmp_path / "straight")
    assert train(tiny_cfg(family, data, n // 2), tmp_path / "split").iterations == n // 2
    run = resume_run(tmp_path / "split", [f"train.max_iters={n}"])
    assert isinstance(run.engine, Engine) and run.iteration == n // 2
    assert run.fit().iterations == n
    for name in ("model.safetensors", "optim.safetensors"):
        a = load_file(str(tmp_path / "straight" / "checkpoints" / f"iter_{n:07d}" / name))
        b = load_file(str(tmp_path / "split" / "checkpoints" / f"iter_{n:07d}" / name))
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a), name


@pytest.mark.parametrize("family", FAMILIES)
def test_phased_training_resumes_bitwise_across_phase_boundaries(family, data, tmp_path, monkeypatch):
    """A family with phases: every phase shortened to one epoch; runs cut just before, at and just after each
    phase boundary resume to the same bytes as a straight run through all phases, which ends by itself."""
    cls = MODEL_FAMILIES[family]
    if len(cls.phases(build_model(tiny_cfg(family, data), CPU))) < 2:
        pytest.skip(f"{family} trains in one phase")
    declared = cls.phases
    monkeypatch.setattr(cls, "phases", lambda self: [dataclasses.replace(p, epochs=1) for p in declared(self)])
    cfg = tiny_cfg(family, data, 10_000)
    straight = train(cfg, tmp_path / "straight")
    spans = resume_run(tmp_path / "straight").engine.spans
    total = spans[-1].end
    assert straight.iterations == total  # the phases end the run before train.max_iters
    state = json.loads((tmp_path / "straight" / "checkpoints" / f"iter_{total:07d}" / "state.json").read_text())
    assert state["phase"]["name"] == spans[-1].phase.name
    cuts = sorted({c for s in spans[1:] for c in (s.start - 1, s.start, s.start + 1) if 0 < c < total})
    for cut in cuts:
        folder = tmp_path / f"cut{cut}"
        assert train(tiny_cfg(family, data, cut), folder).iterations == cut
        saved = json.loads((folder / "checkpoints" / f"iter_{cut:07d}" / "state.json").read_text())["phase"]
        span = next(s for s in spans if s.start <= cut < s.end)
        assert (saved["name"], saved["epoch"], saved["batch"]) == (span.phase.name, *span.position(cut))
        assert resume_run(folder, ["train.max_iters=10000"]).fit().iterations == total
        for name in ("model.safetensors", "optim.safetensors"):
            a = load_file(str(tmp_path / "straight" / "checkpoints" / f"iter_{total:07d}" / name))
            b = load_file(str(folder / "checkpoints" / f"iter_{total:07d}" / name))
            assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), (cut, name)


@pytest.mark.parametrize("family", FAMILIES)
def test_cli_train_translate_interpolate_export_eval(cli, family, data, tmp_path):
    run = tmp_path / "run"
    proc = cli("train", "--preset", "quickstart", *set_args(family_overrides(family, data)), "--run-dir", str(run))
    assert proc.returncode == 0, proc.stderr
    image = str(input_image(data))
    proc = cli(
        "translate",
        image,
        "--run",
        str(run),
        "--domain",
        "orange",
        "-n",
        "2",
        "--seed",
        "0",
        "--out",
        str(tmp_path / "t"),
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "t").iterdir()) == [
        "0_to_orange_1.png",
        "0_to_orange_2.png",
        "0_to_orange_grid.png",
    ]
    proc = cli(
        "interpolate", image, "--run", str(run), "--domain", "orange", "--steps", "3", "--out", str(tmp_path / "i")
    )
    assert proc.returncode == 0, proc.stderr
    assert len(list((tmp_path / "i").glob("*.gif"))) == 1
    proc = cli("export", str(run), "--out", str(tmp_path / "e"))
    assert proc.returncode == 0, proc.stderr
    proc = cli(
        "translate",
        image,
        "--run",
        str(tmp_path / "e"),
        "--domain",
        "orange",
        "-n",
        "2",
        "--seed",
        "0",
        "--out",
        str(tmp_path / "t2"),
    )
    assert proc.returncode == 0, proc.stderr
    for name in ("0_to_orange_1.png", "0_to_orange_2.png"):  # the export translates exactly like the run
        assert (tmp_path / "t" / name).read_bytes() == (tmp_path / "t2" / name).read_bytes()
    proc = cli("eval", str(run), "--metrics", "ndb,jsd", "--samples-per-input", "2", "--out", str(tmp_path / "ev"))
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    tasks = build_model(tiny_cfg(family, data), CPU).capabilities.tasks(2)
    assert report["model"]["family"] == family and len(report["tasks"]) == len(tasks)
    assert all(math.isfinite(t["ndb"]["jsd"]) for t in report["tasks"])


@pytest.mark.parametrize("family", FAMILIES)
def test_dry_run_counts_every_network(cli, family, data):
    proc = cli("train", "--preset", "quickstart", *set_args(family_overrides(family, data)), "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    counts = json.loads(proc.stdout)["params"]
    model = build_model(tiny_cfg(family, data), CPU)
    assert counts == model.parameter_counts() and list(counts) == list(model.networks.keys())
    assert all(v > 0 for v in counts.values())


def test_the_template_to_copy_implements_every_contract_method():
    from gmdrit_cli.families.template import TemplateFamily

    assert not inspect.isabstract(TemplateFamily)
    assert TemplateFamily.name not in MODEL_FAMILIES  # a template, never registered
