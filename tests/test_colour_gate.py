"""The colour gate (`gmdrit export --colour-gate Q`): the colour measure, the redrawing, the fit, and that every
test-time sampler (torch, eval, ONNX) keeps to an export's gate."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from conftest import assert_one_line_error
from gmdrit_cli.colour_gate import MAX_ROUNDS, DomainGate, gate_from_record, gate_name, gated_draw
from gmdrit_cli.families.drit_losses import subject_colour
from gmdrit_cli.inference.model_files import export_model, load_for_inference


def _opponent(rgb255) -> np.ndarray:
    """(lightness, red-green, yellow-blue) of one 0..255 colour, by hand."""
    r, g, b = (c / 255 for c in rgb255)
    return np.array([(r + g + b) / 3, r - g, (r + g) / 2 - b])


def _square_on_white(colour=(210, 30, 40), size: int = 32) -> np.ndarray:
    """1 x 3 x S x S in [-1, 1]: a coloured square (rows/cols 8..23) on white."""
    image = np.full((size, size, 3), 255, dtype=np.float64)
    image[8:24, 8:24] = colour
    return (image.transpose(2, 0, 1)[None] / 127.5) - 1


def test_subject_colour_is_the_mean_colour_of_the_inputs_coloured_pixels():
    red_on_white = torch.from_numpy(_square_on_white())
    assert np.allclose(subject_colour(red_on_white, red_on_white)[0], _opponent((210, 30, 40)), atol=1e-6)
    blue = torch.zeros_like(red_on_white)
    blue[:, 2] = 1.0  # a translation painting everything (0.5, 0.5, 1.0)
    assert np.allclose(subject_colour(blue, red_on_white)[0], _opponent((127.5, 127.5, 255)), atol=1e-6)
    grey = torch.full((1, 3, 8, 8), 0.2)  # no coloured pixel: the mean of all of them
    assert np.allclose(subject_colour(grey, grey)[0], _opponent((153, 153, 153)), atol=1e-6)
    blue.requires_grad_(True)
    subject_colour(blue, red_on_white)[0, 1].backward()  # red-green: d/dR = 0.5 on each subject pixel, / count
    assert torch.allclose(blue.grad[0, 0, 8:24, 8:24].float(), torch.full((16, 16), 0.5 / 256))
    assert blue.grad[0, 0, :8].abs().sum() == 0  # the white background is not the subject


def _unit_gate(limit: float = 2.37) -> DomainGate:
    """Colour = the first three z dimensions, centre 0, identity precision: kept when |z[:3]|^2 <= limit."""
    weight = np.zeros((9, 3))
    weight[:3] = np.eye(3)
    return DomainGate(weight, np.zeros(3), np.eye(3), limit)


def _numpy_draw(rng: np.random.Generator):
    calls = []

    def draw(m: int):
        calls.append(m)
        z = rng.standard_normal((m, 8))
        return z, np.full((m, 2), 7.0)

    return draw, calls


def test_gated_draws_are_the_candidates_inside_the_region_in_the_order_drawn():
    gate = _unit_gate()
    draw, calls = _numpy_draw(np.random.default_rng(3))
    z, condition = gated_draw(draw, 10, gate, np.asarray, np.concatenate)
    assert z.shape == (10, 8) and condition.shape == (10, 2)
    assert ((z[:, :3] ** 2).sum(axis=1) <= 2.37).all()
    candidates = np.random.default_rng(3).standard_normal((64, 8))  # the same stream, judged by hand
    inside = candidates[(candidates[:, :3] ** 2).sum(axis=1) <= 2.37]
    assert np.array_equal(z, inside[:10]) and calls == [64]
    again, _ = gated_draw(_numpy_draw(np.random.default_rng(3))[0], 10, gate, np.asarray, np.concatenate)
    assert np.array_equal(z, again)  # a seeded draw is reproducible
    plain, _ = gated_draw(_numpy_draw(np.random.default_rng(3))[0], 10, None, np.asarray, np.concatenate)
    assert np.array_equal(plain, candidates[:10])  # no gate: the prior's draws as they come


def test_a_region_no_draw_reaches_ends_after_a_bounded_number_of_rounds_with_the_nearest_draws():
    gate = _unit_gate(limit=1e-12)
    draw, calls = _numpy_draw(np.random.default_rng(0))
    z, _ = gated_draw(draw, 5, gate, np.asarray, np.concatenate)
    assert calls == [64] * MAX_ROUNDS
    every = np.random.default_rng(0).standard_normal((64 * MAX_ROUNDS, 8))
    nearest = every[np.argsort((every[:, :3] ** 2).sum(axis=1), kind="stable")[:5]]
    assert np.array_equal(z, nearest)


def test_torch_draws_are_gated_as_numpy_ones():
    gate = _unit_gate()
    g = torch.Generator().manual_seed(1)
    z, c = gated_draw(
        lambda m: (torch.randn(m, 8, generator=g), torch.zeros(m, 2)),
        6,
        gate,
        lambda t: t.numpy(),
        torch.cat,
    )
    assert isinstance(z, torch.Tensor) and z.shape == (6, 8) and c.shape == (6, 2)
    assert (z[:, :3].square().sum(dim=1) <= 2.37).all()


def test_a_record_that_does_not_fit_the_model_is_refused():
    good = {
        "domains": [
            {
                "domain": 1,
                "weight": np.zeros((9, 3)).tolist(),
                "centre": [0, 0, 0],
                "precision": np.eye(3).tolist(),
                "limit": 1.0,
            }
        ]
    }
    assert set(gate_from_record(good, 8)) == {1}
    with pytest.raises(ValueError):
        gate_from_record(good, 4)  # another attribute length
    bad = json.loads(json.dumps(good))
    bad["domains"][0]["limit"] = -1
    with pytest.raises(ValueError):
        gate_from_record(bad, 8)


@pytest.fixture(scope="module")
def gated(tiny_gmdrit_run, tmp_path_factory):
    """(plain export, gated export (Q 0.5), data root) of the tiny GM-DRIT run."""
    base, root = tiny_gmdrit_run
    out = tmp_path_factory.mktemp("gate")
    export_model(base / "run", out / "plain")
    export_model(base / "run", out / "gated", colour_gate=0.5)
    return out / "plain", out / "gated", root


def _record(export) -> dict:
    return json.loads(safe_open(str(export / "model.safetensors"), "pt").metadata()["colour_gate"])


def _colours_by_hand(rgb: np.ndarray, mask_from: np.ndarray) -> np.ndarray:
    """Opponent colours N x 3 of images N x S x S x 3 (0..1) over the coloured pixels (chroma >= 0.15) of
    ``mask_from`` (same shape)."""
    rg, yb = rgb[..., 0] - rgb[..., 1], (rgb[..., 0] + rgb[..., 1]) / 2 - rgb[..., 2]
    mrg, myb = mask_from[..., 0] - mask_from[..., 1], (mask_from[..., 0] + mask_from[..., 1]) / 2 - mask_from[..., 2]
    keep = np.hypot(mrg, myb) >= 0.15
    return np.array([[c[k].mean() for c in (x.mean(axis=-1), a, b)] for x, a, b, k in zip(rgb, rg, yb, keep)])


def _training_images(cfg, root, d: int) -> np.ndarray:
    """Domain d's training images N x S x S x 3 in 0..1, as gmdrit's data pipeline preprocesses them."""
    from gmdrit_cli.evaluation.metrics.images import open_images

    train = open_images(str(root), cfg, "train")
    return torch.cat([b for b, _ in train.batches(d, 50)]).permute(0, 2, 3, 1).double().numpy() / 255


def test_the_fitted_gate_is_a_least_squares_line_and_a_region_holding_the_share_asked_for(gated):
    plain, export, root = gated
    record = _record(export)
    assert record["share"] == 0.5 and [e["domain"] for e in record["domains"]] == [0, 1]
    assert "train" in record["split"]
    cfg, model = load_for_inference(plain)
    for entry in record["domains"]:
        d = entry["domain"]
        assert entry["draws"] == 256 and entry["target_images"] == 4 and len(entry["held_out_r2"]) == 3
        weight, centre = np.array(entry["weight"]), np.array(entry["centre"])
        # the line: the fit's fixed-seed draws translate the other domain's training images here, their colours
        # are measured by hand, and the residuals must be orthogonal to [z, 1] (the least-squares condition)
        sources = _training_images(cfg, root, 1 - d)
        x = torch.from_numpy(sources.transpose(0, 3, 1, 2) * 2 - 1).float()
        z, y = model.sample_attributes(d, 256, None, torch.Generator().manual_seed(0), 1.0)
        colours = []
        for zi, yi in zip(z, y):
            out = model.generate(model.encode_content(x), zi.expand(len(x), -1), yi.expand(len(x), -1))
            rgb = (out.clamp(-1, 1).numpy().transpose(0, 2, 3, 1) + 1) / 2
            colours.append(_colours_by_hand(rgb, sources).mean(axis=0))
        design = np.concatenate([z.numpy(), np.ones((256, 1))], axis=1)
        normal = design.T @ (np.array(colours) - design @ weight) / 256
        assert np.abs(normal).max() < 1e-5, normal
        # the region: centre = the target photos' mean colour; the limit holds half of them (2 of 4)
        real_rgb = _training_images(cfg, root, d)
        real = _colours_by_hand(real_rgb, real_rgb)
        assert np.allclose(centre, real.mean(axis=0), atol=1e-5)
        offsets = real - centre
        dist = np.einsum("mi,ij,mj->m", offsets, np.array(entry["precision"]), offsets)
        assert (dist <= entry["limit"] + 1e-4).sum() == 2


@pytest.fixture()
def crafted(gated, tmp_path):
    """The gated export with its gate replaced by :func:`_unit_gate`'s (kept when |z[:3]|^2 <= 2.37)."""
    _, export, _ = gated
    folder = tmp_path / "crafted"
    folder.mkdir()
    meta = safe_open(str(export / "model.safetensors"), "pt").metadata()
    entry = {"weight": _unit_gate().weight.tolist(), "centre": [0, 0, 0], "precision": np.eye(3).tolist()}
    meta["colour_gate"] = json.dumps({"domains": [{"domain": d, **entry, "limit": 2.37} for d in (0, 1)]})
    save_file(load_file(export / "model.safetensors"), str(folder / "model.safetensors"), metadata=meta)
    (folder / "config.yaml").write_text((export / "config.yaml").read_text())
    return folder


def _inside(z) -> bool:
    z = np.asarray(z)
    return bool(((z[:, :3] ** 2).sum(axis=1) <= 2.37).all())


def test_every_torch_sampler_keeps_to_an_exports_gate(crafted):
    from types import SimpleNamespace

    from gmdrit_cli.evaluation.evaluate import _task_attributes
    from gmdrit_cli.inference.translate import SamplingOptions, _attributes

    _, model = load_for_inference(crafted)
    for d in (0, 1):
        free, _ = model.sample_attributes(d, 40, None, torch.Generator().manual_seed(d), 1.0)
        assert not _inside(free)  # the prior alone leaves the region
        assert _inside(model.draw_attributes(d, 40, None, torch.Generator().manual_seed(d), 1.0)[0])
    translated = _attributes(model, 1, SamplingOptions(12, True, None, 1.0, [], 5), 32)
    assert translated.z.shape[0] == 12 and _inside(translated.z)
    options = SimpleNamespace(mode="latent", samples_per_input=3, temperature=1.0, temperature_by_domain=None)
    ctx = SimpleNamespace(options=options, model=model, device="cpu", domains=model.cfg.data.domains)
    z, _ = _task_attributes(ctx, 0, 5, torch.Generator(), None)
    assert z.shape[0] == 15 and _inside(z)


def test_the_onnx_export_carries_the_gate_and_its_sampler_keeps_to_it(cli, crafted, tmp_path):
    pytest.importorskip("onnxruntime", reason="the onnx extra: pip install 'gmdrit[onnx]'")
    from gmdrit_cli.inference.onnx_translate import OnnxModel, _random_attributes, _sampling

    proc = cli("export", crafted, "--format", "onnx", "--out", tmp_path / "onnx")
    assert proc.returncode == 0, proc.stderr
    meta = json.loads((tmp_path / "onnx" / "onnx.json").read_text())
    assert meta["colour_gate"] == _record(crafted)
    model = OnnxModel(tmp_path / "onnx")
    z, _ = _random_attributes(model, 1, _sampling(model, 30, None, None, None), seed=0)
    assert z.shape[0] == 30 and _inside(z)
    free, _ = model.sample_attributes(1, 30, None, np.random.default_rng(0), 1.0)
    assert not _inside(free)


def test_a_later_export_keeps_the_gate_and_colour_gate_0_removes_it(gated, tmp_path):
    _, export, _ = gated
    export_model(export, tmp_path / "int8", int8=True)
    assert _record(tmp_path / "int8") == _record(export)
    export_model(export, tmp_path / "none", colour_gate=0.0)
    assert "colour_gate" not in safe_open(str(tmp_path / "none" / "model.safetensors"), "pt").metadata()
    assert load_for_inference(tmp_path / "none")[1].colour_gate == {}


def test_colour_gate_user_errors_are_one_line(cli, gated, tiny_gmdrit_run, tmp_path):
    base, _ = tiny_gmdrit_run
    _, export, _ = gated
    for extra, fragment in (
        (["--colour-gate", "1.5"], "--colour-gate 1.5: give at most 1"),
        (["--colour-gate", "nan"], "--colour-gate nan"),
        (["--colour-gate", "0.9", "--format", "onnx"], "belong to a safetensors export"),
    ):
        assert_one_line_error(cli("export", base / "run", "--out", tmp_path / "e", *extra), fragment)
    assert not (tmp_path / "e").exists()
    damaged = tmp_path / "damaged"
    damaged.mkdir()
    meta = safe_open(str(export / "model.safetensors"), "pt").metadata()
    meta["colour_gate"] = json.dumps({"domains": [{"domain": 1, "weight": [[1, 2]]}]})
    save_file(load_file(export / "model.safetensors"), str(damaged / "model.safetensors"), metadata=meta)
    (damaged / "config.yaml").write_text((export / "config.yaml").read_text())
    image = tmp_path / "in.png"
    Image.new("RGB", (32, 32), (200, 40, 30)).save(image)
    proc = cli(
        "translate", image, "-d", "orange", "--checkpoint", damaged / "model.safetensors", "--out", tmp_path / "o"
    )
    assert_one_line_error(proc, "colour_gate metadata is damaged")


# -- the chroma gate (--gate-by chroma) ------------------------------------------------------------------------------


def _chroma_gate(limit: float = 0.2) -> DomainGate:
    """Colour = the first three z dimensions; the target's hue along (0, 0.6, 0.8), centre chroma 0.5: kept when
    0.6 z[1] + 0.8 z[2] >= 0.5 - limit."""
    weight = np.zeros((9, 3))
    weight[:3] = np.eye(3)
    return DomainGate(weight, np.array([0.1, 0.3, 0.4]), None, limit, np.array([0.0, 0.6, 0.8]))


def test_a_chroma_gate_keeps_the_draws_with_enough_of_the_targets_hue():
    gate = _chroma_gate()
    colours = np.array([[0.9, 0.3, 0.4], [0.0, 0.0, 0.0], [0.5, 0.6, 0.8], [0.0, -0.3, 0.2]])
    # shortfall below the centre's chroma 0.5, by hand: 0, 0.5, -0.5 (beyond it), 0.5 - (-0.18 + 0.16)
    assert np.allclose(gate.colour_distances(colours), [0.0, 0.5, -0.5, 0.52])
    z, _ = gated_draw(_numpy_draw(np.random.default_rng(5))[0], 12, gate, np.asarray, np.concatenate)
    candidates = np.random.default_rng(5).standard_normal((64, 8))
    kept = candidates[0.6 * candidates[:, 1] + 0.8 * candidates[:, 2] >= 0.3]
    assert np.array_equal(z, kept[:12])


def test_a_lightness_band_keeps_only_colours_inside_it_and_orders_the_rest_by_their_larger_miss():
    gate = _chroma_gate()
    gate.lightness = np.array([0.3, 0.6])
    colours = np.array([[0.45, 0.3, 0.4], [0.9, 0.6, 0.8], [0.1, 0.3, 0.4], [0.5, 0.0, 0.0], [0.25, 0.0, 0.0]])
    # in the band: the shortfall (0, 0.5); outside: max(shortfall, limit 0.2) + the lightness miss, by hand
    assert np.allclose(gate.colour_distances(colours), [0.0, 0.2 + 0.3, 0.2 + 0.2, 0.5, 0.5 + 0.05])
    kept = gate.colour_distances(colours) <= gate.limit
    assert kept.tolist() == [True, False, False, False, False]  # the second has chroma to spare but is too light


def test_a_chroma_record_loads_and_a_mixed_one_is_refused():
    entry = {"domain": 0, "weight": np.zeros((9, 3)).tolist(), "centre": [0.4, 0.2, 0.1], "limit": -0.05}
    record = {"kind": "chroma", "share": 0.75, "domains": [{**entry, "direction": [0, 0.8, 0.6]}]}
    gate = gate_from_record(record, 8)[0]
    assert gate.precision is None and np.allclose(gate.direction, [0, 0.8, 0.6]) and gate.limit == -0.05
    assert gate_name(record) == "chroma gate 0.75" and gate_name({"share": 0.9}) == "colour gate 0.9"
    banded = {**record, "domains": [{**entry, "direction": [0, 0.8, 0.6], "lightness": [0.25, 0.55]}]}
    assert np.allclose(gate_from_record(banded, 8)[0].lightness, [0.25, 0.55])
    for broken in (
        {**record, "domains": [{**entry, "direction": [0, 0.8, 0.6], "lightness": [0.55, 0.25]}]},
        {**record, "domains": [{**entry, "precision": np.eye(3).tolist()}]},  # a region's entry in a chroma gate
        {**record, "kind": "hue"},
        {**record, "domains": [{**entry, "direction": [0, 1, 0], "limit": float("inf")}]},
    ):
        with pytest.raises((KeyError, ValueError)):
            gate_from_record(broken, 8)


@pytest.fixture(scope="module")
def chroma_gated(tiny_gmdrit_run, tmp_path_factory):
    """A chroma-gated export (Q 0.5) of the tiny GM-DRIT run."""
    base, _ = tiny_gmdrit_run
    out = tmp_path_factory.mktemp("chroma") / "chroma"
    export_model(base / "run", out, colour_gate=0.5, gate_by="chroma")
    return out


def test_the_chroma_gate_points_along_the_encoded_translations_hue_and_passes_the_share_asked_for(gated, chroma_gated):
    from gmdrit_cli.inference.gate_fit import fit_colour_gate

    plain, region_export, root = gated
    record = _record(chroma_gated)
    assert record["kind"] == "chroma" and record["share"] == 0.5 and "encoded attributes" in record["rule"]
    assert [
        np.allclose(e["weight"], r["weight"]) for e, r in zip(record["domains"], _record(region_export)["domains"])
    ] == [True, True]  # the same line from z (same draws and sources)
    cfg, model = load_for_inference(plain)
    # the tiny run's encoder gives every photo nearly one attribute; spread draws stand in for its encodings
    stand_in = {d: model.sample_attributes(d, 4, None, torch.Generator().manual_seed(9 + d), 3.0) for d in (0, 1)}
    model.encode_reference = lambda images, domains: stand_in[int(domains[0])]
    images = [torch.from_numpy(_training_images(cfg, root, d).transpose(0, 3, 1, 2) * 2 - 1).float() for d in (0, 1)]
    for entry in fit_colour_gate(model, images, {0: 0.5, 1: 0.5}, "chroma", cfg.data.domains)["domains"]:
        d = entry["domain"]
        sources = _training_images(cfg, root, 1 - d)
        colours = []
        for zi, yi in zip(*stand_in[d]):  # each encoded attribute translating every source, measured by hand
            out = model.generate(model.encode_content(images[1 - d]), zi.expand(4, -1), yi.expand(4, -1))
            colours.append(_colours_by_hand((out.clamp(-1, 1).numpy().transpose(0, 2, 3, 1) + 1) / 2, sources))
        colours = np.array(colours).mean(axis=1)  # E x 3: the mean over the sources
        centre = colours.mean(axis=0)
        assert entry["encoded_images"] == 4 and np.allclose(entry["centre"], centre, atol=1e-5)
        assert np.allclose(entry["direction"], np.r_[0, centre[1:]] / np.hypot(*centre[1:]), atol=1e-5)
        shortfall = (centre - colours) @ np.array(entry["direction"])
        assert np.ptp(shortfall) > 1e-3  # the stand-ins differ in hue, so the share below is a real cut
        assert (shortfall <= entry["limit"] + 1e-6).sum() == 2  # half of the 4 encoded translations pass
        photos = _training_images(cfg, root, d)
        lightness = _colours_by_hand(photos, photos)[:, 0]  # the band: the central 90% of the photos' lightness
        assert np.allclose(entry["lightness"], np.quantile(lightness, [0.05, 0.95]), atol=1e-5)


def test_the_model_line_names_a_chroma_gate_and_gate_by_errors_are_one_line(cli, chroma_gated, tiny_gmdrit_run):
    _, model = load_for_inference(chroma_gated)
    assert "chroma gate 0.5" in model.source.describe()
    base, _ = tiny_gmdrit_run
    out = chroma_gated.parent / "refused"
    for extra, fragment in (
        (["--gate-by", "chroma"], "give --colour-gate Q"),
        (["--colour-gate", "0.5", "--gate-by", "hue"], "--gate-by 'hue': choose one of region, chroma"),
    ):
        assert_one_line_error(cli("export", base / "run", "--out", out, *extra), fragment)
    assert not out.exists()


@pytest.fixture()
def crafted_chroma(gated, tmp_path):
    """The gated export with its gate replaced by :func:`_chroma_gate`'s with a lightness band on z[0]: kept when
    0.6 z[1] + 0.8 z[2] >= 0.3 and -1 <= z[0] <= 1."""
    _, export, _ = gated
    folder = tmp_path / "crafted_chroma"
    folder.mkdir()
    meta = safe_open(str(export / "model.safetensors"), "pt").metadata()
    gate = _chroma_gate()
    entry = {"weight": gate.weight.tolist(), "centre": gate.centre.tolist(), "direction": gate.direction.tolist()}
    entry.update(limit=gate.limit, lightness=[-1.0, 1.0])
    domains = [{"domain": d, **entry} for d in (0, 1)]
    meta["colour_gate"] = json.dumps({"kind": "chroma", "share": 0.5, "domains": domains})
    save_file(load_file(export / "model.safetensors"), str(folder / "model.safetensors"), metadata=meta)
    (folder / "config.yaml").write_text((export / "config.yaml").read_text())
    return folder


def _inside_chroma(z) -> bool:
    z = np.asarray(z, dtype=np.float64)
    return bool(((0.6 * z[:, 1] + 0.8 * z[:, 2] >= 0.3 - 1e-9) & (np.abs(z[:, 0]) <= 1)).all())


def test_torch_and_onnx_samplers_keep_to_a_chroma_gate(cli, crafted_chroma, tmp_path):
    _, model = load_for_inference(crafted_chroma)
    assert "chroma gate 0.5" in model.source.describe()
    free, _ = model.sample_attributes(1, 40, None, torch.Generator().manual_seed(2), 1.0)
    assert not _inside_chroma(free)
    assert _inside_chroma(model.draw_attributes(1, 40, None, torch.Generator().manual_seed(2), 1.0)[0])
    pytest.importorskip("onnxruntime", reason="the onnx extra: pip install 'gmdrit[onnx]'")
    from gmdrit_cli.inference.onnx_translate import OnnxModel, _random_attributes, _sampling

    proc = cli("export", crafted_chroma, "--format", "onnx", "--out", tmp_path / "onnx")
    assert proc.returncode == 0, proc.stderr
    onnx_model = OnnxModel(tmp_path / "onnx")
    assert "chroma gate 0.5" in onnx_model.describe()
    z, _ = _random_attributes(onnx_model, 0, _sampling(onnx_model, 30, None, None, None), seed=0)
    assert z.shape[0] == 30 and _inside_chroma(z)


def test_a_share_per_domain_gates_those_domains_alone_each_as_its_own_export_would(cli, chroma_gated, tiny_gmdrit_run):
    base, _ = tiny_gmdrit_run
    one = chroma_gated.parent / "orange_only"
    export_model(base / "run", one, colour_gate="orange=0.5", gate_by="chroma")
    record, both = _record(one), _record(chroma_gated)
    assert record["share"] == {"orange": 0.5} and [e["domain"] for e in record["domains"]] == [1]
    assert record["domains"][0] == both["domains"][1]  # the same fit as the gate of Q 0.5 for every domain
    _, model = load_for_inference(one)
    assert set(model.colour_gate) == {1} and "chroma gate orange 0.5" in model.source.describe()
    free = model.sample_attributes(0, 20, None, torch.Generator().manual_seed(4), 1.0)[0]
    assert torch.equal(model.draw_attributes(0, 20, None, torch.Generator().manual_seed(4), 1.0)[0], free)
    out = chroma_gated.parent / "refused_by_domain"
    for given, fragment in (
        ("pear=0.5", "'pear' is not a domain of this model (apple, orange)"),
        ("orange=1.5", "orange=1.5: give a number above 0 and at most 1"),
        ("orange=0.5,orange=0.7", "domain 'orange' is given twice"),
        ("orange:0.5", "--colour-gate 'orange:0.5': give a number, or one per domain"),
    ):
        proc = cli("export", base / "run", "--out", out, "--colour-gate", given, "--gate-by", "chroma")
        assert_one_line_error(proc, fragment)
    assert not out.exists()
    assert (
        gate_name({"kind": "chroma", "share": {"orange": 0.75, "apple": 0.5}}) == "chroma gate orange 0.75, apple 0.5"
    )
