"""`gmdrit mixture RUN` on a tiny 4-iteration GM-DRIT run with 2 components per domain (2 checkpoints)."""

from __future__ import annotations

import itertools
import json
import math
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import assert_one_line_error, make_dataset, tiny_overrides
from gmdrit_cli.config.schema import build_config, load_config
from gmdrit_cli.families import build_model
from gmdrit_cli.families.gmdrit.mixture_report import (
    CLAIMS_PER_ROW,
    GUTTER,
    SAMPLE_INPUTS,
    SEPARATOR,
    MixtureError,
    MixtureOptions,
    curve_entry,
    mixture_report,
)
from gmdrit_cli.training.trainer import train

CROP, RESIZE, DOMAINS, CPD = 32, 36, ["apple", "orange"], 2


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """The run (checkpoints at iterations 2 and 4), its data and the in-process report of it."""
    base = tmp_path_factory.mktemp("mixture")
    root = make_dataset(base / "data")
    overrides = tiny_overrides(root, 4) + ["mixture.components_per_domain=2", "train.save_every=2", "train.keep_last=5"]
    train(load_config("reduced_res", overrides), base / "run")
    result = mixture_report(MixtureOptions(run=base / "run", out=base / "out", device="cpu", seed=1))
    return base, root, result


# -- an independent computation of q(y|x) ---------------------------------------------------------


def model_input(path: Path) -> np.ndarray:
    """The model's test input as 8-bit: resize 36 (bicubic), centre crop 32. -> 32 x 32 x 3 uint8."""
    im = Image.open(path).convert("RGB").resize((RESIZE, RESIZE), Image.BICUBIC)
    left = (RESIZE - CROP) // 2
    return np.asarray(im.crop((left, left, left + CROP, left + CROP)))


def load_test_set(root: Path) -> tuple[list[np.ndarray], np.ndarray]:
    images, labels = [], []
    for d, letter in enumerate("AB"):
        for path in sorted((root / f"test{letter}").iterdir()):
            images.append(model_input(path))
            labels.append(d)
    return images, np.array(labels)


def own_probs(checkpoint: Path, images: list[np.ndarray]) -> np.ndarray:
    """softmax of the checkpoint's q(y|x) logits, weights read straight from model.safetensors: N x K."""
    cfg = build_config(json.loads((checkpoint / "state.json").read_text())["config"])
    encoder = build_model(cfg, torch.device("cpu"), training=False).networks["attribute_encoder"]
    tensors = load_file(str(checkpoint / "model.safetensors"))
    encoder.load_state_dict({k.split(".", 1)[1]: v for k, v in tensors.items() if k.startswith("attribute_encoder.")})
    encoder.eval()
    x = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0
    with torch.no_grad():
        return torch.softmax(encoder(x, argmax=True, sample=False).logits, dim=1).double().numpy()


def brute_force_accuracy(labels: np.ndarray, pred: np.ndarray, k: int) -> float:
    """Best accuracy over every one-to-one map of the domains to distinct components."""
    domains = int(labels.max()) + 1
    best = max(
        sum(int(((labels == d) & (pred == c)).sum()) for d, c in enumerate(perm))
        for perm in itertools.permutations(range(k), domains)
    )
    return best / len(labels)


def nmi(true: np.ndarray, pred: np.ndarray) -> float:
    n = len(true)
    pt, pp, joint = Counter(true.tolist()), Counter(pred.tolist()), Counter(zip(true.tolist(), pred.tolist()))
    h = lambda counts: -sum(c / n * math.log(c / n) for c in counts.values())  # noqa: E731
    mi = sum(c / n * math.log(c * n / (pt[a] * pp[b])) for (a, b), c in joint.items())
    if h(pt) == 0 and h(pp) == 0:
        return 1.0
    return mi / ((h(pt) + h(pp)) / 2)


# -- tests ----------------------------------------------------------------------------------------


@pytest.mark.slow  # the module's run and its report (charts drawn)
def test_curve_has_every_checkpoint_and_matches_an_independent_computation(tiny):
    base, root, result = tiny
    report = json.loads((base / "out" / "qy_accuracy.json").read_text())
    entries = report["checkpoints"]
    assert [e["iteration"] for e in entries] == [2, 4]
    assert [e["checkpoint"] for e in entries] == ["iter_0000002", "iter_0000004"]
    assert report["num_components"] == 4 and report["test_images"] == {"apple": 4, "orange": 4}
    assert report["target"] == 0.9 and "Hungarian" in report["protocol"]["accuracy"]
    images, labels = load_test_set(root)
    for entry in entries:
        probs = own_probs(base / "run" / "checkpoints" / entry["checkpoint"], images)
        pred = probs.argmax(axis=1)
        assert entry["accuracy"] == pytest.approx(brute_force_accuracy(labels, pred, 4), abs=1e-12)
        assert entry["nmi"] == pytest.approx(nmi(labels, pred), abs=1e-9)
        assert entry["component_usage"] == pytest.approx(np.bincount(pred, minlength=4) / 8)
        per_domain = entry["per_domain"]
        assert sum(v["accuracy"] * v["images"] for v in per_domain.values()) / 8 == pytest.approx(entry["accuracy"])
    # the newest checkpoint's components: the same q(y|x) to float precision (preprocessing and weights)
    probs = own_probs(base / "run" / "checkpoints" / "iter_0000004", images)
    for comp in result.components["components"]:
        claimed = probs.argmax(axis=1) == comp["component"]
        assert comp["claimed"] == int(claimed.sum())
        if claimed.any():
            assert comp["mean_confidence"] == pytest.approx(probs[claimed, comp["component"]].mean(), abs=1e-5)


def test_curve_entry_on_hand_made_probabilities():
    # K = 4 (2 per domain); argmax components [0, 1, 0 | 2, 2, 3]: matching apple->0, orange->2
    probs = np.eye(4)[[0, 1, 0, 2, 2, 3]] * 0.7 + 0.075
    entry = curve_entry(np.array([0, 0, 0, 1, 1, 1]), probs, 2, DOMAINS)
    assert entry["accuracy"] == pytest.approx(4 / 6)
    assert entry["per_domain"]["apple"]["accuracy"] == pytest.approx(2 / 3)
    assert entry["per_domain"]["orange"]["accuracy"] == pytest.approx(2 / 3)
    assert entry["domain_accuracy"] == 1.0  # every image lands in one of its own domain's components
    # an orange claimed by an apple component: apple->0 (2 right), orange->3 (1 right)
    entry = curve_entry(np.array([0, 0, 1, 1]), np.eye(4)[[0, 0, 0, 3]], 2, DOMAINS)
    assert entry["accuracy"] == pytest.approx(3 / 4)
    assert entry["per_domain"]["apple"]["accuracy"] == 1.0 and entry["per_domain"]["orange"]["accuracy"] == 0.5
    assert entry["domain_accuracy"] == 0.75


@pytest.mark.slow  # the module's run and its report (charts drawn)
def test_pictures_have_the_rows_by_samples_layout(tiny):
    base, root, result = tiny
    out, cell = base / "out", CROP + GUTTER
    plot = Image.open(out / "qy_accuracy.png")
    assert plot.format == "PNG" and plot.size == (700, 420)
    assert len(plot.convert("RGB").getcolors(1 << 16)) > 20  # drawn, not blank

    samples = Image.open(out / "components_samples.png").convert("RGB")
    margin = result.margins["components_samples"]
    assert margin > 40  # the "domain d / component j" labels
    assert samples.size == (margin + (SAMPLE_INPUTS + 8) * cell + GUTTER + SEPARATOR, 4 * cell + GUTTER)
    # row 0 (apple, component 0) starts with the first test orange, exactly as the model saw it
    first = np.asarray(samples.crop((margin + GUTTER, GUTTER, margin + GUTTER + CROP, GUTTER + CROP)))
    assert np.array_equal(first, model_input(root / "testB" / "0.png"))
    assert np.asarray(samples.crop((0, 0, margin, 4 * cell))).min() < 128  # label text is drawn

    claims = Image.open(out / "components_claims.png")
    margin = result.margins["components_claims"]
    assert claims.size == (margin + CLAIMS_PER_ROW * cell + GUTTER, 4 * cell + GUTTER)


@pytest.mark.slow  # the module's run and its report (charts drawn)
def test_components_json_counts_every_test_image(tiny):
    base, _, result = tiny
    comp = json.loads((base / "out" / "components.json").read_text())
    assert comp == json.loads(json.dumps(result.components))
    assert comp["iteration"] == 4 and comp["checkpoint"].endswith("iter_0000004")
    table = comp["counts"]["table"]
    assert comp["counts"]["columns"] == DOMAINS and len(table) == 4
    assert sum(map(sum, table)) == 8 == sum(c["claimed"] for c in comp["components"])
    assert [c["domain"] for c in comp["components"]] == [0, 0, 1, 1]
    assert [c["index_in_domain"] for c in comp["components"]] == [0, 1, 0, 1]
    for row, c in zip(table, comp["components"]):
        assert row == list(c["claimed_by_domain"].values())
        assert len(c["shown"]) == min(c["claimed"], CLAIMS_PER_ROW)
        assert c["prior"]["std_mean"] > 0
    assert comp["sample_inputs"] == {
        "apple": [str(base / "data" / "testB" / f"{i}.png") for i in range(2)],
        "orange": [str(base / "data" / "testA" / f"{i}.png") for i in range(2)],
    }


@pytest.mark.slow  # another report of the module's run
def test_cli_table_options_and_checkpoint_choice(cli, tiny, tmp_path):
    base, root, _ = tiny
    proc = cli(
        "mixture",
        str(base / "run"),
        "--data",
        str(root),
        "--out",
        str(tmp_path / "o"),
        "--max-inputs",
        "2",
        "--samples",
        "3",
        "--checkpoint",
        "2",
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stderr
    assert "iteration" in proc.stdout and "NMI" in proc.stdout and "iter_0000004" in proc.stdout
    for name in (
        "qy_accuracy.json",
        "qy_accuracy.png",
        "components_samples.png",
        "components_claims.png",
        "components.json",
    ):
        assert f"wrote {tmp_path / 'o' / name}" in proc.stdout
    comp = json.loads((tmp_path / "o" / "components.json").read_text())
    assert comp["iteration"] == 2 and comp["test_images"] == {"apple": 2, "orange": 2}
    assert sum(map(sum, comp["counts"]["table"])) == 4
    height = Image.open(tmp_path / "o" / "components_samples.png").size[1]
    assert height == 4 * (CROP + GUTTER) + GUTTER

    skip = mixture_report(MixtureOptions(run=base / "run", out=tmp_path / "s", device="cpu", skip_curve=True))
    assert skip.curve is None and not (tmp_path / "s" / "qy_accuracy.json").exists()
    with pytest.raises(MixtureError, match="no such checkpoint; .* keeps: iter_0000002, iter_0000004"):
        mixture_report(MixtureOptions(run=base / "run", out=tmp_path / "x", checkpoint="iter_0000003"))
    # a checkpoint of another run (a copy here) was pictured and filed under this run's eval/ as this run's
    other = tmp_path / "other"
    shutil.copytree(base / "run", other)
    with pytest.raises(MixtureError, match="is not a checkpoint of"):
        mixture_report(MixtureOptions(run=base / "run", checkpoint=other / "checkpoints" / "iter_0000002"))
    with pytest.raises(MixtureError, match="is the latest checkpoint of"):
        mixture_report(MixtureOptions(run=base / "run", checkpoint=other / "checkpoints" / "latest"))
    assert not (tmp_path / "x").exists()
    # RUN/checkpoints/latest as --checkpoint (probe 15: "no such checkpoint") is the run's newest one
    from gmdrit_cli.families.gmdrit.mixture_report import _pick_checkpoint

    assert _pick_checkpoint(base / "run", base / "run" / "checkpoints" / "latest").name == "iter_0000004"


@pytest.mark.slow  # two trainings
def test_models_without_q_y_given_x_are_refused(cli, tmp_path):
    root = make_dataset(tmp_path / "data", per_domain=2)
    train(load_config("quickstart", tiny_overrides(root, 1)), tmp_path / "mdmm")
    proc = cli("mixture", str(tmp_path / "mdmm"), "--device", "cpu")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "no q(y|x)" in lines[0], proc.stderr
    assert not (tmp_path / "mdmm" / "eval").exists()

    train(load_config("reduced_res", tiny_overrides(root, 1) + ["mixture.condition_on=domain"]), tmp_path / "dom")
    with pytest.raises(MixtureError, match="condition_on: domain"):
        mixture_report(MixtureOptions(run=tmp_path / "dom", device="cpu"))
    assert not (tmp_path / "dom" / "eval").exists()


def test_prior_fit_by_hand(monkeypatch):
    """Two components; the test images' posterior means and variances are set by hand, the prior too."""
    from types import SimpleNamespace

    from gmdrit_cli.families.gmdrit.mixture_report import prior_fit

    class FakeEncoder:
        def __call__(self, x, argmax=True, sample=False):
            # image value v -> posterior mean v in every dimension, variance 0.25
            v = x[:, 0, 0, 0:1].double()
            return SimpleNamespace(mean=v.expand(-1, 3), var=torch.full((len(x), 3), 0.25, dtype=torch.float64))

    model = SimpleNamespace(
        networks={"attribute_encoder": FakeEncoder()},
        device=torch.device("cpu"),
        num_components=2,
        attribute_prior=lambda y: (torch.tensor([[2.0] * 3, [0.0] * 3]) * y[:, :1], torch.full((len(y), 3), 2.0)),
    )
    # component 0 claims images with means 1 and 3: aggregate mean 2, variance 1 + 0.25 -> std sqrt(1.25)
    images = [torch.tensor([1.0, 3.0]).view(2, 1, 1, 1).expand(2, 3, 2, 2), torch.zeros(1, 3, 2, 2)]
    test = SimpleNamespace(images=images, float=lambda d, device, rows=slice(None): images[d][rows])
    probs = np.array([[0.9, 0.1], [0.8, 0.2], [0.1, 0.9]])
    fit = prior_fit(model, test, probs)
    assert fit[0]["claimed"] == 2 and fit[0]["mean_gap"] == pytest.approx(0.0)
    assert fit[0]["std_ratio"] == pytest.approx(1.25**0.5 / 2)
    # component 1 claims one image with mean 0 (prior mean 0, std 2): gap 0, std 0.5 / 2
    assert fit[1]["mean_gap"] == pytest.approx(0.0) and fit[1]["std_ratio"] == pytest.approx(0.25)
    probs[2] = [0.9, 0.1]  # now component 0 claims all three: mean 4/3 -> gap |4/3 - 2| / 2
    fit = prior_fit(model, test, probs)
    assert fit[0]["mean_gap"] == pytest.approx((2 - 4 / 3) / 2) and fit[1] == {"claimed": 0}


def test_a_full_disk_while_writing_names_the_report_folder(cli, tiny, tmp_path, monkeypatch):
    """The line was "cannot read or write a file: no space left on the device", with no path."""
    import errno

    from gmdrit_cli.families.gmdrit import mixture_report

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    base, root, _ = tiny
    monkeypatch.setattr(mixture_report, "write_json_atomic", no_space)
    proc = cli("mixture", base / "run", "--data", root, "--out", tmp_path / "o", "--max-inputs", "2", "--skip-curve")
    assert_one_line_error(proc, f"cannot write the mixture report in {tmp_path / 'o'}", "space")
