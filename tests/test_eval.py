"""`gmdrit eval` end to end on a tiny trained model, offline (random-weight Inception and AlexNet files)."""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path

import pytest

from conftest import assert_one_line_error, make_dataset, tiny_overrides
from gmdrit_cli.config.schema import load_config
from gmdrit_cli.evaluation.evaluate import EvalOptions, evaluate
from gmdrit_cli.evaluation.metrics import DEFAULT_METRICS, METRICS, MetricError
from gmdrit_cli.evaluation.metrics.fid import INCEPTION_FILE, write_random_inception_weights
from gmdrit_cli.evaluation.metrics.lpips_diversity import write_random_alexnet_weights
from gmdrit_cli.training.trainer import train


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


@pytest.fixture
def tiny(tiny_gmdrit_run):
    return tiny_gmdrit_run


@pytest.mark.slow  # Inception (random weights) at 299 px on every output
def test_eval_end_to_end(cli, tiny, tmp_path):
    base, root = tiny
    inception = write_random_inception_weights(tmp_path / "inception-random.pth")
    alexnet = write_random_alexnet_weights(tmp_path / "alexnet-random.pth")
    out = tmp_path / "out"
    proc = cli(
        "eval",
        str(base / "run"),
        "--data",
        str(root),
        "--samples-per-input",
        "2",
        "--ndb-bins",
        "2",
        "--seed",
        "3",
        "--out",
        str(out),
        "--inception-weights",
        str(inception),
        "--lpips-backbone-weights",
        str(alexnet),
        "--kid-subsets",
        "5",
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stderr
    assert "apple → orange" in proc.stdout and "real orange: test vs train" in proc.stdout
    assert "cluster" in proc.stdout and "accuracy" in proc.stdout

    for task in ("apple2orange", "orange2apple"):
        pngs = sorted((out / task).iterdir())
        assert len(pngs) == 4 * 2 and all(p.suffix == ".png" for p in pngs)  # 4 test images x 2 samples
    assert not list(out.rglob("*.jp*g"))

    report = json.loads((out / "eval.json").read_text())
    assert report["settings"]["metrics"] == list(DEFAULT_METRICS)
    assert report["settings"]["samples_per_input"] == 2 and report["settings"]["seed"] == 3
    assert report["settings"]["mode"] == "latent" and report["model"]["iteration"] == 2
    assert report["weights"]["inception"]["sha256"] == sha256(inception)
    assert report["weights"]["lpips_backbone"]["sha256"] == sha256(alexnet)
    assert len(report["weights"]["lpips_linear"]["sha256"]) == 64
    for lib in ("torch", "torch-fidelity", "lpips", "scipy", "numpy", "gmdrit"):
        assert report["libraries"][lib]
    assert report["protocols"]["ndb"]["bins"] == 2 and report["protocols"]["ndb"]["alpha"] == 0.05
    assert report["protocols"]["ndb"]["image_size"] == 32 and report["protocols"]["kid"]["subsets"] == 5
    assert report["protocols"]["lpips"]["version"] == "0.1"
    assert "seed * 1000" in report["protocols"]["seeds"]["attributes"]

    assert [(t["source"], t["target"]) for t in report["tasks"]] == [("apple", "orange"), ("orange", "apple")]
    for row in report["tasks"]:
        assert row["inputs"] == 4 and row["outputs"] == 8
        assert math.isfinite(row["fid"]) and math.isfinite(row["kid"]["mean"])
        assert row["kid"]["subset_size"] == 4  # lowered to the 4 training images
        assert row["lpips"]["pairs_per_input"] == 1 and row["lpips"]["mean"] >= 0
        assert row["ndb"]["n_train"] == 4 and row["ndb"]["n_query"] == 8 and 0 <= row["ndb"]["jsd"] <= math.log(2)
    assert any(n.startswith("KID: subsets of 4 images, not 1000") for n in report["notes"])
    assert "KID: subsets of 4 images" in proc.stdout + proc.stderr
    for key in ("fid", "kid", "lpips", "ndb", "jsd"):
        assert key in report["mean"]
    for name in ("apple", "orange"):
        real = report["reference"][name]
        assert real["n_test"] == 4 and real["n_train"] == 4
        assert {"fid", "kid", "ndb", "lpips_set"} <= set(real)
    cluster = report["cluster"]
    assert cluster["images"] == 8 and cluster["components"] == 2
    assert 0.5 <= cluster["accuracy"] <= 1 and 0 <= cluster["nmi"] <= 1
    assert sum(cluster["component_usage"]) == pytest.approx(1.0)


def test_eval_reference_mode_in_process_is_reproducible(tiny, tmp_path):
    base, root = tiny
    runs = []
    for name in ("a", "b"):
        options = EvalOptions(
            run=base / "run",
            data=str(root),
            metrics="ndb,jsd,cluster",
            samples_per_input=2,
            mode="reference",
            seed=5,
            out=tmp_path / name,
            ndb_bins=2,
            device="cpu",
            max_inputs=3,
        )
        runs.append(evaluate(options))
    a, b = runs
    assert a.report["settings"]["mode"] == "reference" and "fid" not in a.report["tasks"][0]
    assert a.report["tasks"][0]["inputs"] == 3 and a.report["data"]["test_images"] == {"apple": 3, "orange": 3}
    files = sorted(p.relative_to(a.out) for p in a.out.rglob("*.png"))
    assert len(files) == 2 * 3 * 2
    assert all((a.out / f).read_bytes() == (b.out / f).read_bytes() for f in files)  # same seed, same bytes
    assert [t["ndb"] for t in a.report["tasks"]] == [t["ndb"] for t in b.report["tasks"]]
    assert a.report["cluster"] == b.report["cluster"]


def test_eval_temperature_is_recorded_and_checked(tiny, tmp_path):
    base, root = tiny
    common = dict(
        run=base / "run",
        data=str(root),
        metrics="jsd",
        samples_per_input=2,
        ndb_bins=2,
        device="cpu",
        max_inputs=2,
        reference_line=False,
    )
    narrow = evaluate(EvalOptions(**common, temperature=0.5, out=tmp_path / "t"))
    assert narrow.report["settings"]["temperature"] == 0.5
    with pytest.raises(MetricError, match="--mode latent"):
        evaluate(EvalOptions(**common, temperature=0.5, mode="reference", out=tmp_path / "r"))
    with pytest.raises(MetricError, match="above 0"):
        evaluate(EvalOptions(**common, temperature=0.0, out=tmp_path / "z"))


def test_default_ndb_bins_fit_the_training_set():
    from gmdrit_cli.evaluation.metrics.eval_ndb import default_ndb_bins

    assert [default_ndb_bins(n) for n in (1019, 500, 499, 36, 5)] == [50, 50, 49, 3, 2]


def test_eval_ndb_on_a_run_trained_on_the_embedded_sample(cli, tmp_path):
    """The 36 sample apples / oranges cannot fill 50 bins: the default lowers K and says so."""
    train(
        load_config(
            "quickstart", ["train.max_iters=1", "train.device=cpu", "model.width=8", "train.sample_every=1000"]
        ),
        tmp_path / "run",
    )
    out = tmp_path / "out"
    proc = cli(
        "eval",
        str(tmp_path / "run"),
        "--metrics",
        "ndb,jsd",
        "--samples-per-input",
        "1",
        "--out",
        str(out),
        "--device",
        "cpu",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((out / "eval.json").read_text())
    assert [t["ndb"]["bins"] for t in report["tasks"]] == [3, 3]
    assert report["data"]["train_images"] == {"apple": 36, "orange": 36}
    assert any("3 bins, not 50: 36 training images" in n for n in report["notes"])
    assert "3 bins, not 50" in proc.stdout + proc.stderr
    assert "n_train // 10" in report["protocols"]["ndb"]["bins_rule"]


def test_eval_mdmm_skips_cluster(tmp_path):
    root = make_dataset(tmp_path / "data", per_domain=3)
    train(load_config("quickstart", tiny_overrides(root, 1)), tmp_path / "run")
    result = evaluate(
        EvalOptions(
            run=tmp_path / "run",
            metrics="jsd,cluster",
            samples_per_input=1,
            ndb_bins=2,
            out=tmp_path / "out",
            device="cpu",
            reference_line=False,
        )
    )
    assert result.report["cluster"]["skipped"].startswith("the mdmm model infers no mixture component q(y|x)")
    assert "jsd" in result.report["mean"] and result.report["reference"] == {}


def test_eval_offline_without_weights_is_one_clear_line(cli, tiny, tmp_path):
    base, root = tiny
    env = {"TORCH_HOME": str(tmp_path / "empty-torch-home"), "GMDRIT_OFFLINE": "1"}
    out = tmp_path / "out"
    proc = cli(
        "eval", str(base / "run"), "--data", str(root), "--out", str(out), "--device", "cpu", env=env, cwd=tmp_path
    )
    assert_one_line_error(proc, INCEPTION_FILE, "--inception-weights")
    proc = cli(
        "eval",
        str(base / "run"),
        "--data",
        str(root),
        "--metrics",
        "lpips",
        "--out",
        str(out),
        "--device",
        "cpu",
        env=env,
        cwd=tmp_path,
    )
    assert_one_line_error(proc, "alexnet-owt-7be5be79.pth", "--lpips-backbone-weights")
    assert not out.exists()  # nothing was written
    proc = cli("eval", str(base / "run"), "--metrics", "fid,nbd", env=env)
    assert_one_line_error(proc, "unknown metric 'nbd'")


def test_eval_help_lists_the_metrics(cli):
    proc = cli("eval", "--help")
    assert proc.returncode == 0
    for name in METRICS:
        assert name in proc.stdout
    for flag in (
        "--inception-weights",
        "--lpips-version",
        "--lpips-backbone-weights",
        "--samples-per-input",
        "--mode",
        "--ndb-bins",
        "--classifier-cache",
    ):
        assert flag in proc.stdout
