"""domain_accuracy and diversity_msssim: against hand computations, an independent MS-SSIM, a classifier
trained on a synthetic two-domain dataset, its cache, and `gmdrit eval` end to end."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import tiny_overrides
from gmdrit_cli.config.schema import load_config
from gmdrit_cli.evaluation.evaluate import EvalOptions, evaluate
from gmdrit_cli.evaluation.metrics import MetricError
from gmdrit_cli.evaluation.metrics import domain_classifier as dcm
from gmdrit_cli.evaluation.metrics.msssim_diversity import MSSSIMDiversity, scale_rule

STANDARD_WEIGHTS = [0.0448, 0.2856, 0.3001, 0.2363, 0.1333]


# ------------------------------------------------------------------------------------------ MS-SSIM


def reference_ms_ssim(x: np.ndarray, y: np.ndarray, levels: int) -> float:
    """MS-SSIM of two 3 x H x W images (8-bit values), written from the definition (Wang et al. 2003) with
    numpy: 11-px Gaussian window (sigma 1.5), valid filtering, K = (0.01, 0.03), 2x2 mean pooling between
    scales (sides must stay even), the first ``levels`` standard weights renormalised; mean over channels."""
    g = np.exp(-((np.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    g /= g.sum()

    def filt(im):
        im = np.apply_along_axis(lambda r: np.convolve(r, g, mode="valid"), 2, im)
        return np.apply_along_axis(lambda c: np.convolve(c, g, mode="valid"), 1, im)

    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    w = np.array(STANDARD_WEIGHTS[:levels])
    w = w / w.sum() if levels < 5 else w
    x, y = x.astype(np.float64), y.astype(np.float64)
    terms = []
    for level in range(levels):
        mx, my = filt(x), filt(y)
        sxx, syy, sxy = filt(x * x) - mx**2, filt(y * y) - my**2, filt(x * y) - mx * my
        cs_map = (2 * sxy + c2) / (sxx + syy + c2)
        if level < levels - 1:
            terms.append(np.maximum(cs_map.mean(axis=(1, 2)), 0))
            c, h, wd = x.shape
            x = x.reshape(c, h // 2, 2, wd // 2, 2).mean(axis=(2, 4))
            y = y.reshape(c, h // 2, 2, wd // 2, 2).mean(axis=(2, 4))
        else:
            ssim_map = (2 * mx * my + c1) / (mx**2 + my**2 + c1) * cs_map
            terms.append(np.maximum(ssim_map.mean(axis=(1, 2)), 0))
    per_channel = np.prod([t**wi for t, wi in zip(terms, w)], axis=0)
    return float(per_channel.mean())


def test_msssim_scale_rule():
    # side > 10 * 2^(L-1): 32 > 20 but not > 40; 64 > 40; 108 and 160 > 80; 216 > 160
    assert [scale_rule(s)[0] for s in (8, 21, 32, 64, 108, 160, 161, 216)] == [1, 2, 2, 3, 4, 4, 5, 5]
    assert scale_rule(64)[1] == 11 and scale_rule(8)[1] == 7 and scale_rule(9)[1] == 9
    assert scale_rule(64)[2] == pytest.approx([0.0448 / 0.6305, 0.2856 / 0.6305, 0.3001 / 0.6305])
    assert scale_rule(216)[2] == STANDARD_WEIGHTS


def test_msssim_equals_pytorch_msssim_at_five_scales():
    from pytorch_msssim import ms_ssim

    gen = torch.Generator().manual_seed(0)
    a = torch.randint(0, 256, (3, 3, 176, 176), generator=gen, dtype=torch.uint8)
    b = (a.float() * 0.6 + torch.randint(0, 100, a.shape, generator=gen)).clamp(0, 255).round().to(torch.uint8)
    ours = MSSSIMDiversity(176).distance(a, b)
    expected = 1 - ms_ssim(a.float(), b.float(), data_range=255, size_average=False).double()
    assert torch.allclose(ours, expected, atol=1e-5)
    assert MSSSIMDiversity(176).distance(a, a).abs().max() < 1e-5  # identical images: distance 0


def test_msssim_diversity_by_hand_on_two_inputs_of_three_outputs():
    rng = np.random.default_rng(1)
    base = rng.integers(0, 256, (2, 1, 3, 48, 48))
    outputs = np.clip(base + rng.normal(0, 40, (2, 3, 3, 48, 48)), 0, 255).round().astype(np.uint8)  # 2 x 3 outputs
    ms = MSSSIMDiversity(48)
    assert ms.levels == 3
    per_input = []
    for i in range(2):
        pairs = [1 - reference_ms_ssim(outputs[i, a], outputs[i, b], 3) for a, b in ((0, 1), (0, 2), (1, 2))]
        assert all(0.05 < p < 1 for p in pairs)
        per_input.append(np.mean(pairs))
        assert ms.diversity(torch.from_numpy(outputs[i])) == pytest.approx(per_input[-1], abs=1e-5)
    # the protocol's number: the mean over inputs of the per-input means
    assert np.mean([ms.diversity(torch.from_numpy(o)) for o in outputs]) == pytest.approx(np.mean(per_input), abs=1e-5)
    same = torch.from_numpy(np.repeat(outputs[0, :1], 3, axis=0))
    assert ms.diversity(same) == pytest.approx(0.0, abs=1e-6)
    with pytest.raises(MetricError, match="at least 2 outputs"):
        ms.diversity(same[:1])


def test_msssim_random_pairs_are_distinct_and_seeded():
    rng = np.random.default_rng(2)
    images = torch.from_numpy(rng.integers(0, 256, (5, 3, 32, 32)).astype(np.uint8))
    ms = MSSSIMDiversity(32)
    value, pairs = ms.random_pairs(images, 1000, seed=0)  # fewer than 1000 pairs exist: all 10
    expected = np.mean(
        [1 - reference_ms_ssim(images[i].numpy(), images[j].numpy(), 2) for i in range(5) for j in range(i + 1, 5)]
    )
    assert pairs == 10 and value == pytest.approx(expected, abs=1e-5)
    assert ms.random_pairs(images, 4, seed=3) == ms.random_pairs(images, 4, seed=3)


# ------------------------------------------------------------------------------------------ fractions


def test_domain_fractions_by_hand():
    pred = np.array([0, 0, 2, 1, 0, 2])  # two domains; 2 is "neither"
    assert dcm.domain_fractions(pred, 0, 2) == {"to_target": 0.5, "neither": 2 / 6, "other": 1 / 6, "n": 6}
    assert dcm.domain_fractions(pred, 1, 2) == {"to_target": 1 / 6, "neither": 2 / 6, "other": 0.5, "n": 6}
    with pytest.raises(MetricError):
        dcm.domain_fractions(np.array([], dtype=int), 0, 2)


# ------------------------------------------------------------------------------------------ classifier

RED = lambda rng: [rng.uniform(170, 230), rng.uniform(20, 60), rng.uniform(20, 60)]  # noqa: E731
GREEN = lambda rng: [rng.uniform(40, 90), rng.uniform(150, 210), rng.uniform(30, 70)]  # noqa: E731


def disc_images(rng, n: int, colour, size: int = 40) -> np.ndarray:
    """n x size x size x 3 uint8: a shaded, noisy disc of ``colour`` on a light grey noisy background."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64)
    out = []
    for _ in range(n):
        img = np.repeat(rng.uniform(170, 240) + rng.normal(0, 8, (size, size, 1)), 3, axis=2)
        cx, cy = rng.uniform(0.35, 0.65, 2) * size
        r = rng.uniform(0.25, 0.4) * size
        mask = (xx - cx) ** 2 + (yy - cy) ** 2 < r**2
        shade = 1.1 - 0.5 * ((xx - cx + r / 3) ** 2 + (yy - cy + r / 3) ** 2) / (2 * r**2)
        img[mask] = np.asarray(colour(rng))[None] * shade[mask][:, None] + rng.normal(0, 6, (int(mask.sum()), 3))
        out.append(np.clip(img, 0, 255).round().astype(np.uint8))
    return np.stack(out)


def make_disc_dataset(root: Path, train: int = 48, test: int = 24, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for split, n in (("train", train), ("test", test)):
        for letter, colour in (("A", RED), ("B", GREEN)):
            folder = root / f"{split}{letter}"
            folder.mkdir(parents=True, exist_ok=True)
            for i, arr in enumerate(disc_images(rng, n, colour)):
                Image.fromarray(arr).save(folder / f"{i}.png")
    return root


def disc_config(root: Path):
    return load_config(
        "quickstart", [f"data.root={root}", "data.domains=[red, green]", "data.resize=36", "data.crop=32"]
    )


SMALL = dcm.ClassifierSettings(epochs=24, batch_size=32, seed=0)


@pytest.fixture(scope="module")
def discs(tmp_path_factory):
    base = tmp_path_factory.mktemp("discs")
    root = make_disc_dataset(base / "data")
    cfg = disc_config(root)
    clf = dcm.get_classifier(root, cfg, base / "cache", SMALL)
    return base, root, cfg, clf


def to_u8(arr: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(arr).permute(0, 3, 1, 2).contiguous()


@pytest.mark.slow  # trains the domain classifier (24 epochs)
def test_classifier_accepts_held_out_discs_and_refuses_junk(discs):
    _, _, _, clf = discs
    assert clf.size == 32 and not clf.from_cache and clf.domains == ["red", "green"]
    rng = np.random.default_rng(123)  # new images, never seen in training; 40 px centre-cropped to 32 like the model
    red, green = to_u8(disc_images(rng, 40, RED)[:, 4:36, 4:36]), to_u8(disc_images(rng, 40, GREEN)[:, 4:36, 4:36])
    assert (clf.predict(red) == 0).mean() >= 0.9
    assert (clf.predict(green) == 1).mean() >= 0.9

    colours = [(200, 40, 40), (60, 180, 50), (40, 40, 200), (128, 128, 128), (230, 230, 230)]
    colours += [tuple(int(v) for v in rng.integers(0, 256, 3)) for _ in range(15)]
    uniform = torch.tensor(colours, dtype=torch.uint8)[:, :, None, None].expand(-1, -1, 32, 32).contiguous()
    noise = torch.from_numpy(rng.integers(0, 256, (20, 3, 32, 32)).astype(np.uint8))
    red_noise = torch.from_numpy(
        np.clip(rng.normal(0, 60, (20, 3, 32, 32)) + np.array([200, 40, 40])[:, None, None], 0, 255).astype(np.uint8)
    )
    blue = torch.cat([red[:, [2, 1, 0]], green[:, [0, 2, 1]]])  # the disc's colour moved into blue
    for name, images in (("uniform", uniform), ("noise", noise), ("red noise", red_noise), ("blue", blue)):
        called = (clf.predict(images) != clf.neither).mean()
        assert called <= 0.1, f"{name}: {called:.2f} called red or green"


@pytest.mark.slow  # trains the domain classifier (24 epochs)
def test_classifier_record_and_cache(discs, monkeypatch):
    base, root, cfg, clf = discs
    folder = clf.folder
    assert folder.parent == base / "cache" and len(folder.name) == 16
    record = json.loads((folder / dcm.JSON_FILE).read_text())
    from safetensors.torch import load_file

    assert set(load_file(folder / dcm.WEIGHTS_FILE)) == set(clf.net.state_dict())  # plain tensors, no pickle
    assert record["protocol"]["domains"] == ["red", "green"] and record["protocol"]["preprocess"]["crop"] == 32
    assert record["protocol"]["train_files"][0]["files"] == 48 and record["training"]["seconds"] > 0
    assert set(record["test"]["per_domain"]) == {"red", "green"}
    assert record["test"]["per_domain"]["red"]["n"] == 24 and set(record["junk"]["per_kind"]) == set(dcm.junk.KINDS)
    assert not list(folder.glob(".*tmp*"))

    # a second call loads (training is forbidden) and predicts the same
    def no_training(*args, **kwargs):
        raise AssertionError("retrained although the cache holds the classifier")

    monkeypatch.setattr(dcm, "train_net", no_training)
    again = dcm.get_classifier(root, cfg, base / "cache", SMALL)
    assert again.from_cache and again.folder == folder
    probe = torch.from_numpy(np.random.default_rng(5).integers(0, 256, (16, 3, 32, 32)).astype(np.uint8))
    probe = torch.cat([probe, to_u8(disc_images(np.random.default_rng(6), 16, RED)[:, 4:36, 4:36])])
    assert torch.equal(again.logits(probe), clf.logits(probe))

    # another dataset (one more training file), another seed or another crop: another key
    from gmdrit_cli.evaluation.metrics.images import PreprocessedImages

    files = PreprocessedImages(str(root), cfg, "train").files
    key = dcm.protocol_key(dcm.make_protocol(root, cfg.data.domains, files, 36, 32, SMALL))
    assert key == folder.name
    Image.fromarray(disc_images(np.random.default_rng(9), 1, RED)[0]).save(root / "trainA" / "extra.png")
    try:
        files2 = PreprocessedImages(str(root), cfg, "train").files
        assert dcm.protocol_key(dcm.make_protocol(root, cfg.data.domains, files2, 36, 32, SMALL)) != key
    finally:
        (root / "trainA" / "extra.png").unlink()
    other_seed = dcm.ClassifierSettings(epochs=24, batch_size=32, seed=1)
    assert dcm.protocol_key(dcm.make_protocol(root, cfg.data.domains, files, 36, 32, other_seed)) != key
    assert dcm.protocol_key(dcm.make_protocol(root, cfg.data.domains, files, 40, 36, SMALL)) != key


@pytest.mark.slow  # trains the domain classifier (24 epochs)
def test_damaged_cache_is_retrained(discs, tmp_path, monkeypatch):
    _, root, cfg, clf = discs
    cache = tmp_path / "cache"
    folder = cache / clf.folder.name
    folder.mkdir(parents=True)
    for name in (dcm.JSON_FILE, dcm.WEIGHTS_FILE):
        (folder / name).write_bytes((clf.folder / name).read_bytes())
    data = bytearray((folder / dcm.WEIGHTS_FILE).read_bytes())
    data[-10] ^= 0xFF
    (folder / dcm.WEIGHTS_FILE).write_bytes(bytes(data))
    calls = []
    real_train = dcm.train_net

    def counted(*args, **kwargs):
        calls.append(1)
        return real_train(*args, **kwargs)

    monkeypatch.setattr(dcm, "train_net", counted)
    again = dcm.get_classifier(root, cfg, cache, SMALL)
    assert calls == [1] and not again.from_cache
    assert dcm.sha256_bytes((folder / dcm.WEIGHTS_FILE).read_bytes()) == again.record["weights"]["sha256"]


def test_cache_root_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("GMDRIT_CACHE", str(tmp_path / "c"))
    assert dcm.cache_root() == tmp_path / "c" / "domain_classifier"
    assert dcm.cache_root(tmp_path / "x") == tmp_path / "x"
    monkeypatch.delenv("GMDRIT_CACHE")
    assert dcm.cache_root() == Path.home() / ".cache" / "gmdrit" / "domain_classifier"


# ------------------------------------------------------------------------------------------ gmdrit eval


@pytest.fixture
def tiny_run(tiny_gmdrit_run):
    return tiny_gmdrit_run


def test_eval_options_need_two_samples(tmp_path):
    with pytest.raises(MetricError, match="diversity_msssim compares outputs of one input"):
        evaluate(EvalOptions(run=tmp_path, metrics="diversity_msssim", samples_per_input=1))


def test_eval_end_to_end_with_both_metrics(cli, tiny_run, tmp_path):
    base, root = tiny_run
    out, cache = tmp_path / "out", tmp_path / "cache"
    proc = cli(
        "eval",
        base / "run",
        "--data",
        root,
        "--metrics",
        "domain_accuracy,diversity_msssim",
        "--samples-per-input",
        "3",
        "--out",
        out,
        "--classifier-cache",
        cache,
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stderr
    assert "1-MS-SSIM" in proc.stdout and "domain acc" in proc.stdout and "domain classifier (trained" in proc.stdout
    report = json.loads((out / "eval.json").read_text())
    assert report["settings"]["metrics"] == ["domain_accuracy", "diversity_msssim"]
    protocol = report["protocols"]["diversity_msssim"]
    assert protocol["scales"] == 2 and protocol["window"] == 11 and protocol["image_size"] == 32
    assert "side > (window - 1)" in protocol["scale_rule"]
    dom = report["protocols"]["domain_accuracy"]
    folder = Path(dom["classifier"]["folder"])
    assert folder.parent == cache and (folder / dcm.JSON_FILE).is_file() and (folder / dcm.WEIGHTS_FILE).is_file()
    assert dom["classifier_protocol"]["preprocess"] == {
        "resize": 36,
        "crop": 32,
        "resize_mode": "bicubic",
        "crop_mode": "centre",
    }

    # recompute both numbers from the saved PNGs
    cfg = load_config("reduced_res", tiny_overrides(root, 2))
    clf = dcm.get_classifier(root, cfg, cache)
    assert clf.from_cache and clf.folder == folder
    domains = ["apple", "orange"]
    for row in report["tasks"]:
        t = domains.index(row["target"])
        files = sorted((out / f"{row['source']}2{row['target']}").glob("*.png"))
        assert len(files) == 4 * 3
        images = np.stack([np.asarray(Image.open(f).convert("RGB")).transpose(2, 0, 1) for f in files])
        pred = clf.predict(torch.from_numpy(images))
        acc = row["domain_accuracy"]
        assert acc["n"] == 12 and acc["to_target"] == pytest.approx((pred == t).mean())
        assert acc["neither"] == pytest.approx((pred == 2).mean())
        assert acc["to_target"] + acc["neither"] + acc["other"] == pytest.approx(1.0)
        per_input = []
        for i in range(4):  # files sort as <stem>_00, _01, _02 per input
            trio = images[3 * i : 3 * i + 3]
            per_input.append(np.mean([1 - reference_ms_ssim(trio[a], trio[b], 2) for a, b in ((0, 1), (0, 2), (1, 2))]))
        div = row["diversity_msssim"]
        assert div["inputs"] == 4 and div["pairs_per_input"] == 3
        assert div["mean"] == pytest.approx(np.mean(per_input), abs=1e-5)
        assert div["std_over_inputs"] == pytest.approx(np.std(per_input), abs=1e-5)
    assert report["mean"]["diversity_msssim"] == pytest.approx(
        np.mean([r["diversity_msssim"]["mean"] for r in report["tasks"]])
    )
    for name in domains:
        real = report["reference"][name]
        assert real["domain_accuracy"]["n"] == 4 and real["diversity_msssim_set"]["pairs"] == 6
        assert 0 <= real["diversity_msssim_set"]["mean"] <= 1 and math.isfinite(real["domain_accuracy"]["to_target"])
    assert report["reference_mean"]["domain_accuracy"] == pytest.approx(
        np.mean([report["reference"][n]["domain_accuracy"]["to_target"] for n in domains])
    )
