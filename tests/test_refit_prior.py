"""`gmdrit export --refit-prior` (GM-DRIT's prior means moved onto the encoded training attributes) and
`export --temperature`: what moves, what stays, what is recorded, and the refusals."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file

from conftest import assert_one_line_error
from gmdrit_cli.evaluation.metrics.images import open_images
from gmdrit_cli.inference.model_files import load_for_inference


def _encoded_means(export: Path, root: Path) -> list[torch.Tensor]:
    """Per domain: the mean posterior mean of its training images under the export's own encoder (one component
    per domain, so each image's component is its domain's)."""
    cfg, model = load_for_inference(export)
    train = open_images(str(root), cfg, "train")
    means = []
    for d in range(len(cfg.data.domains)):
        x = torch.cat([b for b, _ in train.batches(d, 50)]).float().div(127.5).sub(1.0)
        y = torch.nn.functional.one_hot(torch.full((len(x),), d), model.num_components).float()
        means.append(model.networks["attribute_encoder"](x, y=y, sample=False).mean.mean(dim=0))
    return means


def _prior_means(export: Path) -> tuple[torch.Tensor, torch.Tensor]:
    _, model = load_for_inference(export)
    return model.attribute_prior(torch.eye(model.num_components))


@pytest.fixture(scope="module")
def exports(tiny_gmdrit_run, tmp_path_factory):
    """(plain export, refitted export, data root) of the tiny GM-DRIT run."""
    from gmdrit_cli.inference.model_files import export_model

    base, root = tiny_gmdrit_run
    out = tmp_path_factory.mktemp("refit")
    export_model(base / "run", out / "plain")
    export_model(base / "run", out / "refit", refit_prior=True, temperature=1.3)
    return out / "plain", out / "refit", root


def test_the_prior_means_move_onto_the_encoded_training_attributes_and_nothing_else_moves(exports):
    plain, refit, root = exports
    old_mean, old_std = _prior_means(plain)
    new_mean, new_std = _prior_means(refit)
    encoded = torch.stack(_encoded_means(refit, root))
    assert torch.allclose(new_mean, encoded, atol=1e-5)  # the invariant the refit establishes
    assert (new_mean - old_mean).abs().max() > 1e-3  # ... which the trained prior did not hold
    assert torch.equal(new_std, old_std)  # the spread, and so the diversity's scale, is as trained
    before, after = load_file(plain / "model.safetensors"), load_file(refit / "model.safetensors")
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["generator.prior_mean.weight"] and before.keys() == after.keys()


def test_the_refit_and_the_temperature_are_recorded_and_kept_by_a_later_export(exports, tmp_path):
    from gmdrit_cli.inference.model_files import export_model

    _, refit, _ = exports
    meta = safe_open(str(refit / "model.safetensors"), "pt").metadata()
    record = json.loads(meta["prior_refit"])
    assert record["images_per_domain"] == [4, 4] and [c["component"] for c in record["components"]] == [0, 1]
    assert all(c["gap_rms_std"] > 0 and c["moved"] == 1.0 for c in record["components"])
    assert json.loads(meta["sample_temperature_chosen"])["sample_temperature"] == 1.3
    cfg, _ = load_for_inference(refit)
    assert cfg.model.sample_temperature == 1.3
    export_model(refit, tmp_path / "int8", int8=True)  # e.g. the int8 copy that ships
    again = safe_open(str(tmp_path / "int8" / "model.safetensors"), "pt").metadata()
    assert again["prior_refit"] == meta["prior_refit"]
    assert load_for_inference(tmp_path / "int8")[0].model.sample_temperature == 1.3


def test_refusals_are_one_line(cli, run_dir, tiny_gmdrit_run, tmp_path):
    base, _ = tiny_gmdrit_run
    proc = cli("export", str(run_dir), "--out", str(tmp_path / "m"), "--refit-prior")
    assert_one_line_error(proc, "mdmm family has no learnt attribute prior")
    for extra, fragment in (
        (["--refit-prior", "--refit-images", "0"], "--refit-images 0"),
        (["--refit-prior", "--refit-strength", "1.5"], "--refit-strength 1.5"),
        (["--temperature", "nan"], "--temperature nan"),
        (["--refit-prior", "--data", str(tmp_path / "nowhere")], "nowhere"),
        (["--refit-prior", "--format", "onnx"], "export with them first"),
        (["--meta", "prior_refit=mine"], "prior_refit"),
    ):
        proc = cli("export", str(base / "run"), "--out", str(tmp_path / "g"), *extra)
        assert_one_line_error(proc, fragment)
    assert not (tmp_path / "m").exists() and not (tmp_path / "g" / "model.safetensors").exists()


def _fingerprint(model_path: Path) -> str:
    """What an eval of ``model_path`` records as the weights it evaluated (evaluate._model_section)."""
    from gmdrit_cli.inference.model_files import networks_fingerprint

    return networks_fingerprint(load_for_inference(model_path)[1])


def _sweep_file(path: Path, split: str, fingerprint: str | None = "0" * 64) -> Path:
    rows = [{"temperature": t, "mean": {"domain_accuracy": a}} for t, a in ((1.0, 0.97), (1.3, 0.93))]
    model = {} if fingerprint is None else {"fingerprint": fingerprint}
    record = {"split": split, "rule": "the highest ...", "command": "gmdrit eval ...", "model": model, "rows": rows}
    path.write_text(json.dumps(record))
    return path


def test_a_temperature_chosen_from_a_validation_sweep_is_recorded_with_its_rows(tiny_gmdrit_run, cli, tmp_path):
    from gmdrit_cli.inference.model_files import export_model

    base, _ = tiny_gmdrit_run
    export_model(base / "run", tmp_path / "plain")  # swept as an export, exported again from the run
    sweep = _sweep_file(tmp_path / "sweep.json", "val", _fingerprint(tmp_path / "plain"))
    export_model(base / "run", tmp_path / "m", temperature=1.3, sweep=sweep)
    chosen = json.loads(
        safe_open(str(tmp_path / "m" / "model.safetensors"), "pt").metadata()["sample_temperature_chosen"]
    )
    assert chosen["split"] == "val" and chosen["sample_temperature"] == 1.3 and "export" in chosen["rule"]
    assert [v["temperature"] for v in chosen["values"]] == [1.0, 1.3] and chosen["values"][1]["mean"][
        "domain_accuracy"
    ] == 0.93
    for extra, fragment in (
        (["--temperature", "1.1", "--sweep", str(tmp_path / "sweep.json")], "not a row of --sweep"),
        (["--temperature", "1.3", "--sweep", str(_sweep_file(tmp_path / "t.json", "test"))], "choose on --split val"),
        (["--sweep", str(tmp_path / "sweep.json")], "give --temperature too"),
        (["--temperature", "1.3", "--sweep", str(tmp_path / "m" / "config.yaml")], "not a sweep.json"),
        (["--temperature", "1.3", "--sweep", str(_sweep_file(tmp_path / "old.json", "val", None))], "run the sweep"),
    ):
        proc = cli("export", str(base / "run"), "--out", str(tmp_path / "g"), *extra)
        assert_one_line_error(proc, fragment)
    assert not (tmp_path / "g").exists()


def test_a_sweep_of_other_weights_is_refused(tiny_gmdrit_run, cli, tmp_path):
    """A temperature chosen for one model is not recorded as chosen for another: the sweep's weights fingerprint
    must be the export's (a sweep of the refitted prior given to a plain export, to a half refit, then to the same
    refit)."""
    from gmdrit_cli.inference.model_files import export_model

    base, _ = tiny_gmdrit_run
    export_model(base / "run", tmp_path / "refit", refit_prior=True)
    sweep = _sweep_file(tmp_path / "sweep.json", "val", _fingerprint(tmp_path / "refit"))
    proc = cli("export", base / "run", "--out", tmp_path / "plain", "--temperature", "1.3", "--sweep", sweep)
    assert_one_line_error(proc, "evaluated other weights")
    half = ("--refit-prior", "--refit-strength", "0.5", "--temperature", "1.3", "--sweep", sweep)
    proc = cli("export", base / "run", "--out", tmp_path / "half", *half)
    assert_one_line_error(proc, "evaluated other weights")
    assert not (tmp_path / "plain").exists() and not (tmp_path / "half").exists()
    export_model(base / "run", tmp_path / "again", refit_prior=True, temperature=1.3, sweep=sweep)
    assert load_for_inference(tmp_path / "again")[0].model.sample_temperature == 1.3


def test_a_partial_refit_moves_each_mean_that_share_of_the_way(exports, tiny_gmdrit_run, tmp_path):
    from gmdrit_cli.inference.model_files import export_model

    plain, full, _ = exports
    base, _ = tiny_gmdrit_run
    export_model(base / "run", tmp_path / "half", refit_prior=True, refit_strength=0.5)
    (old, _), (new, _), (half, _) = _prior_means(plain), _prior_means(full), _prior_means(tmp_path / "half")
    assert torch.allclose(half, (old + new) / 2, atol=1e-5)
    record = json.loads(safe_open(str(tmp_path / "half" / "model.safetensors"), "pt").metadata()["prior_refit"])
    assert record["strength"] == 0.5 and "0.5 of the way" in record["rule"]


# -- --refit-by discriminator ------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def critic_exports(tiny_gmdrit_run, tmp_path_factory):
    """(plain export, discriminator-refitted export at strength 1 and 0.5) of the tiny GM-DRIT run."""
    from gmdrit_cli.inference.model_files import export_model

    base, _ = tiny_gmdrit_run
    out = tmp_path_factory.mktemp("critic")
    export_model(base / "run", out / "plain")
    for name, strength in (("full", 1.0), ("half", 0.5)):
        export_model(base / "run", out / name, refit_prior=True, refit_by="discriminator", refit_strength=strength)
    return out / "plain", out / "full", out / "half"


def _critic_score(run: Path, export: Path, root: Path, target: int, draws: int = 256) -> float:
    """Mean realism logit the run's random-attribute discriminator gives ``export``'s translations of every
    training image of the other domain into ``target``, over fresh draws of its prior (a seed the refit never used)."""
    from gmdrit_cli.families import build_model
    from gmdrit_cli.training.checkpoint import find_checkpoint, load_network_weights

    cfg = load_for_inference(export)[0]
    judge = build_model(cfg, torch.device("cpu"), training=True)
    load_network_weights(find_checkpoint(run)[0], judge.networks)  # every network, strict
    D = judge.networks["dis_random"].eval()
    with torch.no_grad():
        scores = [D(out)[0].mean() for _, out in _fresh_draw_translations(export, root, target, draws)]
    return float(torch.stack(scores).mean())


def _fresh_draw_translations(export: Path, root: Path, target: int, draws: int):
    """(sources, their translations) per fresh draw of ``export``'s prior for ``target`` (a seed no refit uses):
    every training image of the other domain, N x 3 x S x S in [-1, 1], translated by each draw in turn."""
    cfg, model = load_for_inference(export)
    train = open_images(str(root), cfg, "train")
    x = torch.cat([b for b, _ in train.batches(1 - target, 50)]).float().div(127.5).sub(1.0)
    z, y = model.sample_attributes(target, draws, generator=torch.Generator().manual_seed(12345))
    with torch.no_grad():
        content = model.encode_content(x)
        for i in range(draws):
            yield x, model.generate(content, z[i : i + 1].expand(len(x), -1), y[i : i + 1].expand(len(x), -1))


def test_the_discriminator_refit_moves_means_and_spreads_to_draws_the_discriminator_prefers(
    critic_exports, tiny_gmdrit_run
):
    plain, full, _ = critic_exports
    base, root = tiny_gmdrit_run
    (old_mean, old_std), (new_mean, new_std) = _prior_means(plain), _prior_means(full)
    assert (new_mean - old_mean).abs().max() > 1e-3 and (new_std - old_std).abs().max() > 1e-3
    before, after = load_file(plain / "model.safetensors"), load_file(full / "model.safetensors")
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["generator.prior_mean.weight", "generator.prior_var.weight"]
    for target in (0, 1):  # fresh draws of the refitted prior are rated more real than the trained prior's
        assert _critic_score(base / "run", full, root, target) > _critic_score(base / "run", plain, root, target)


def test_a_half_discriminator_refit_is_the_midpoint_and_the_record_says_what_was_done(critic_exports):
    plain, full, half = critic_exports
    (old_mean, old_std), (new_mean, new_std), (mid_mean, mid_std) = map(_prior_means, critic_exports)
    assert torch.allclose(mid_mean, (old_mean + new_mean) / 2, atol=1e-5)
    assert torch.allclose(mid_std, (old_std + new_std) / 2, atol=1e-4)
    record = json.loads(safe_open(str(full / "model.safetensors"), "pt").metadata()["prior_refit"])
    assert record["method"] == "discriminator" and "discriminator rates most real" in record["rule"]
    assert record["images_per_domain"] == [4, 4] and [c["component"] for c in record["components"]] == [0, 1]
    for c in record["components"]:
        assert c["draws"] == 256 and c["kept"] == 64 and c["source_images"] == 4 and c["score_kept"] > c["score_all"]
        assert c["std_ratio"] == pytest.approx((new_std[c["component"]] / old_std[c["component"]]).tolist(), abs=1e-3)


def test_discriminator_refit_refusals_are_one_line(cli, run_dir, critic_exports, tiny_gmdrit_run, tmp_path):
    plain, _, _ = critic_exports
    base, _ = tiny_gmdrit_run
    for source, extra, fragment in (
        (plain, ["--refit-prior", "--refit-by", "discriminator"], "give the run folder or one of its checkpoints"),
        (base / "run", ["--refit-prior", "--refit-by", "critic"], "choose one of posterior, discriminator"),
        (base / "run", ["--refit-by", "discriminator"], "applies to --refit-prior only"),
        (base / "run", ["--refit-prior", "--refit-by", "discriminator", "--refit-images", "257"], "--refit-images 257"),
        (run_dir, ["--refit-prior", "--refit-by", "discriminator"], "mdmm family has no learnt attribute prior"),
    ):
        assert_one_line_error(cli("export", str(source), "--out", str(tmp_path / "g"), *extra), fragment)
    assert not (tmp_path / "g").exists()


# -- --refit-by neutral ------------------------------------------------------------------------------------------------


def _product_photos(root: Path, size: int = 40) -> Path:
    """trainA/trainB of 4 images each: a white background with a coloured square (red in A, orange in B)."""
    from PIL import Image

    for letter, colour in (("A", (200, 30, 40)), ("B", (240, 140, 20))):
        (root / f"train{letter}").mkdir(parents=True)
        for i in range(4):
            image = Image.new("RGB", (size, size), (250, 250, 248))
            image.paste(colour, (8 + i, 8, 28 + i, 30))
            image.save(root / f"train{letter}" / f"{i}.png")
    return root


def _neutral_change_of_fresh_draws(export: Path, root: Path, target: int, draws: int = 256) -> float:
    """Mean change (drit_losses.neutral_change) of the colourless pixels of the other domain's training images
    under ``export``'s translations into ``target``, over fresh draws of its prior (a seed the refit never used)."""
    from gmdrit_cli.families.drit_losses import neutral_change

    changes = [neutral_change(x, out) for x, out in _fresh_draw_translations(export, root, target, draws)]
    return float(torch.stack(changes).mean())


def test_the_neutral_refit_moves_the_prior_to_draws_that_keep_plain_pixels(tiny_gmdrit_run, tmp_path):
    from gmdrit_cli.inference.model_files import export_model

    base, _ = tiny_gmdrit_run
    photos = _product_photos(tmp_path / "photos")
    export_model(base / "run", tmp_path / "plain")
    export_model(base / "run", tmp_path / "neutral", refit_prior=True, refit_by="neutral", data=str(photos))
    before, after = (
        load_file(tmp_path / "plain" / "model.safetensors"),
        load_file(tmp_path / "neutral" / "model.safetensors"),
    )
    changed = sorted(k for k in before if not torch.equal(before[k], after[k]))
    assert changed == ["generator.prior_mean.weight", "generator.prior_var.weight"]
    for target in (0, 1):  # fresh draws of the refitted prior keep the white background better than the trained one's
        refitted = _neutral_change_of_fresh_draws(tmp_path / "neutral", photos, target)
        assert refitted < _neutral_change_of_fresh_draws(tmp_path / "plain", photos, target)
    record = json.loads(safe_open(str(tmp_path / "neutral" / "model.safetensors"), "pt").metadata()["prior_refit"])
    assert record["method"] == "neutral" and "white, grey and black pixels least" in record["rule"]
    for c in record["components"]:
        assert c["draws"] == 256 and c["kept"] == 64 and c["score_kept"] > c["score_all"]


def _foreign_share_of_fresh_draws(export: Path, root: Path, target: int, draws: int = 256) -> float:
    """Mean share of the translations' pixels in the hue bins the target's training images hardly have
    (evaluation.metrics.colour, the bins of foreign_hue), over fresh draws of ``export``'s prior."""
    from gmdrit_cli.evaluation.metrics import colour as hues

    def histograms(images: torch.Tensor) -> torch.Tensor:
        return hues.colour_histograms(((images.clamp(-1, 1) + 1) * 127.5).round().byte())

    cfg, _ = load_for_inference(export)
    real = torch.cat([b for b, _ in open_images(str(root), cfg, "train").batches(target, 50)])
    foreign = hues.foreign_bins(hues.colour_histograms(real).mean(dim=0))
    shares = [
        hues.foreign_share(histograms(out), foreign).mean()
        for _, out in _fresh_draw_translations(export, root, target, draws)
    ]
    return float(torch.stack(shares).mean())


def test_the_colour_refit_moves_the_prior_to_draws_that_keep_plain_pixels_and_the_target_hues(
    tiny_gmdrit_run, tmp_path
):
    from gmdrit_cli.inference.model_files import export_model

    base, _ = tiny_gmdrit_run
    photos = _product_photos(tmp_path / "photos")
    export_model(base / "run", tmp_path / "plain")
    export_model(base / "run", tmp_path / "colour", refit_prior=True, refit_by="colour", data=str(photos))
    plain, colour = tmp_path / "plain", tmp_path / "colour"
    for target in (0, 1):  # fresh draws: better on both judgements than the trained prior's
        assert _neutral_change_of_fresh_draws(colour, photos, target, 64) < _neutral_change_of_fresh_draws(
            plain, photos, target, 64
        )
        assert _foreign_share_of_fresh_draws(colour, photos, target, 64) < _foreign_share_of_fresh_draws(
            plain, photos, target, 64
        )
    record = json.loads(safe_open(str(colour / "model.safetensors"), "pt").metadata()["prior_refit"])
    assert record["method"] == "colour" and "hues the component's domain's training images" in record["rule"]
    for c in record["components"]:  # scores are minus rank sums: the kept quarter ranks better than the average
        assert c["draws"] == 256 and c["kept"] == 64 and c["score_kept"] > c["score_all"] == pytest.approx(-255.0)


def test_a_refit_of_a_refitted_export_keeps_both_records_and_unbinds_the_chosen_temperature(tiny_gmdrit_run, tmp_path):
    from gmdrit_cli.inference.model_files import export_model

    base, root = tiny_gmdrit_run
    first, second = tmp_path / "first", tmp_path / "second"
    export_model(base / "run", first, refit_prior=True, data=str(root), temperature=0.7)
    export_model(first, second, refit_prior=True, refit_by="neutral", data=str(root))

    def metadata(folder: Path) -> dict:
        return safe_open(str(folder / "model.safetensors"), "pt").metadata()

    refit = json.loads(metadata(second)["prior_refit"])
    assert refit["method"] == "neutral" and refit["after"] == json.loads(metadata(first)["prior_refit"])
    assert refit["after"]["method"] == "posterior"
    chosen = json.loads(metadata(second)["sample_temperature_chosen"])
    assert chosen["sample_temperature"] == 0.7 and "before a later --refit-prior" in chosen["rule"]
    assert chosen["before_refit"]["rule"] == "given to gmdrit export"
    assert load_for_inference(second)[0].model.sample_temperature == 0.7


def test_a_sweep_of_other_weights_is_refused_before_the_colour_gate_is_fitted(tiny_gmdrit_run, tmp_path, monkeypatch):
    """The gate fit takes minutes at real size; a sweep that cannot be recorded ends the export before it."""
    import gmdrit_cli.inference.model_files as model_files
    from gmdrit_cli.errors import GmdritError

    base, _ = tiny_gmdrit_run
    model_files.export_model(base / "run", tmp_path / "refit", refit_prior=True)
    sweep = _sweep_file(tmp_path / "sweep.json", "val", _fingerprint(tmp_path / "refit"))
    fitted = []
    monkeypatch.setattr(model_files, "_fit_colour_gate", lambda *a, **k: fitted.append(a) or "{}")
    with pytest.raises(GmdritError, match="evaluated other weights"):
        model_files.export_model(base / "run", tmp_path / "g", colour_gate=0.5, temperature=1.3, sweep=sweep)
    assert fitted == [] and not (tmp_path / "g").exists()
