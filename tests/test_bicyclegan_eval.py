"""`gmdrit eval` on a tiny BicycleGAN run: the official consecutive-pairs LPIPS (v0.0 and v0.1) and the report's FID,
recomputed independently from the saved PNGs (the lpips package's own forward; FID from full covariances)."""

from __future__ import annotations

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import TINY_BICYCLEGAN, make_paired_dataset, run_cli
from gmdrit_cli.config.schema import load_config
from gmdrit_cli.evaluation.metrics.fid import feature_statistics, frechet_distance, write_random_inception_weights
from gmdrit_cli.evaluation.metrics.lpips_diversity import load_alexnet_trunk, write_random_alexnet_weights
from gmdrit_cli.training.trainer import train

#: the module's run is evaluated with Inception (random weights) at 299 px and LPIPS
pytestmark = pytest.mark.slow

SAMPLES = 3


@pytest.fixture(scope="module")
def evaluated(tmp_path_factory):
    base = tmp_path_factory.mktemp("bicycle_eval")
    root = make_paired_dataset(base / "data", per_split=5, size=32)
    train(load_config("bicyclegan_quickstart", [f"data.root={root}", *TINY_BICYCLEGAN]), base / "run")
    inception = write_random_inception_weights(base / "inception.pth")
    alexnet = write_random_alexnet_weights(base / "alexnet.pth")
    out = base / "eval"
    proc = run_cli(
        "eval",
        base / "run",
        "--samples-per-input",
        SAMPLES,
        "--out",
        out,
        "--inception-weights",
        inception,
        "--lpips-backbone-weights",
        alexnet,
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stderr
    return root, out, json.loads((out / "eval.json").read_text()), proc.stdout, inception, alexnet


def outputs(out, stem):
    return [np.asarray(Image.open(out / "edges2photos" / f"{stem}_{k:02d}.png")) for k in range(SAMPLES)]


def as_tensor(arrays):
    return torch.from_numpy(np.stack(arrays)).permute(0, 3, 1, 2).float() / 127.5 - 1


def test_one_task_from_input_to_output_with_the_paired_defaults(evaluated):
    _, out, report, stdout, *_ = evaluated
    assert [(t["source"], t["target"]) for t in report["tasks"]] == [("edges", "photos")]
    assert report["settings"]["metrics"] == ["lpips_consecutive", "fid_test"]
    assert report["data"]["test_images"] == {"edges": 5, "photos": 5}  # the test split, both sides of 5 pairs
    assert len(list((out / "edges2photos").glob("*.png"))) == 5 * SAMPLES
    assert "LPIPS cons." in stdout and "FID (test)" in stdout


def test_consecutive_lpips_matches_the_lpips_package_on_the_saved_images(evaluated):
    root, out, report, _, _, alexnet = evaluated
    import lpips

    row = report["tasks"][0]["lpips_consecutive"]
    stems = sorted(p.stem for p in (root / "test").iterdir())
    for version in ("0.0", "0.1"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            net = lpips.LPIPS(net="alex", version=version, pnet_rand=True, verbose=False).eval()
        load_alexnet_trunk(net.net, {k: v for k, v in torch.load(alexnet, weights_only=True).items()}, "test")
        distances = []
        with torch.no_grad():
            for stem in stems:
                x = as_tensor(outputs(out, stem))
                distances += [float(net(x[k : k + 1], x[k + 1 : k + 2])) for k in range(SAMPLES - 1)]
        assert row[f"v{version}"]["distances"] == len(distances) == 5 * (SAMPLES - 1)
        assert row[f"v{version}"]["mean"] == pytest.approx(float(np.mean(distances)), rel=1e-4, abs=1e-7)


class PoolFeatures:
    """A stand-in feature extractor with informative features (random Inception weights give near-constant ones):
    each image average-pooled to 2 x 2 per channel, 12 numbers."""

    def __init__(self, *args, **kwargs):
        pass

    def __call__(self, images):
        return torch.nn.functional.avg_pool2d(images.double(), images.shape[-1] // 2).flatten(1).numpy()

    def info(self):
        return {"stand_in": True}


def test_report_fid_uses_one_output_per_input_against_the_real_val_outputs(evaluated, monkeypatch, tmp_path):
    from gmdrit_cli.evaluation.evaluate import EvalOptions, evaluate
    from gmdrit_cli.evaluation.metrics import eval_paired

    root, run_out, *_ = evaluated
    monkeypatch.setattr(eval_paired.fidm, "InceptionFeatures", PoolFeatures)
    out = tmp_path / "fid"
    report = evaluate(
        EvalOptions(run=run_out.parent / "run", metrics="fid_test", samples_per_input=SAMPLES, out=out, device="cpu")
    ).report
    row = report["tasks"][0]["fid_test"]
    assert (row["fake"], row["real"]) == (5, 5)
    stems = sorted(p.stem for p in (root / "test").iterdir())
    fake = np.stack([outputs(out, s)[0] for s in stems])  # output 0 of each input: a random-z sample
    real = np.stack([np.asarray(Image.open(root / "test" / f"{s}.png").convert("RGB"))[:, 32:] for s in stems])
    features = PoolFeatures()
    mu_r, sigma_r = feature_statistics(features(torch.from_numpy(real).permute(0, 3, 1, 2)))
    mu_f, sigma_f = feature_statistics(features(torch.from_numpy(fake).permute(0, 3, 1, 2)))
    expected = frechet_distance(mu_r, sigma_r, mu_f, sigma_f)
    assert expected > 1  # the outputs of a 2-iteration model are far from the real B halves
    assert row["value"] == pytest.approx(expected, rel=1e-6)


def test_translate_with_random_and_reference_z_and_interpolate(cli, evaluated, tmp_path):
    root, out, *_ = evaluated
    run = str(out.parent / "run")
    edge = tmp_path / "edge.png"
    Image.open(root / "test" / "0.png").crop((0, 0, 32, 32)).save(edge)  # the A half: an input image
    refs = []
    for i in (1, 2):
        refs.append(tmp_path / f"photo{i}.png")
        Image.open(root / "test" / f"{i}.png").crop((32, 0, 64, 32)).save(refs[-1])  # B halves: references
    proc = cli(
        "translate",
        str(edge),
        "--run",
        run,
        "--domain",
        "photos",
        "-n",
        "4",
        "--seed",
        "1",
        "--out",
        str(tmp_path / "t"),
    )
    assert proc.returncode == 0, proc.stderr
    random_outputs = [np.asarray(Image.open(tmp_path / "t" / f"edge_to_photos_{k}.png")) for k in range(1, 5)]
    assert len(random_outputs) == 4
    proc = cli(
        "translate",
        str(edge),
        "--run",
        run,
        "--domain",
        "photos",
        "--reference",
        str(refs[0]),
        "--reference",
        str(refs[1]),
        "--out",
        str(tmp_path / "r"),
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in (tmp_path / "r").glob("*_ref*.png")) == [
        "edge_to_photos_ref1.png",
        "edge_to_photos_ref2.png",
    ]
    proc = cli(
        "interpolate", str(edge), "--run", run, "--domain", "photos", "--steps", "3", "--out", str(tmp_path / "i")
    )
    assert proc.returncode == 0, proc.stderr
    assert [p.name for p in (tmp_path / "i").glob("*.gif")] == ["edge_to_photos_random.gif"]
    for args in (
        ["translate", str(edge), "--domain", "edges"],
        ["interpolate", str(edge), "--domain", "photos", "--between", "domains"],
    ):
        proc = cli(*args, "--run", run, "--out", str(tmp_path / "x"))
        assert proc.returncode == 1 and "translates into 'photos' only" in proc.stderr
        assert "Traceback" not in proc.stderr and not (tmp_path / "x").exists()
