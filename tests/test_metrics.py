"""The metric code of `gmdrit eval`, offline: FID/KID math, LPIPS wrapper, NDB/JSD, cluster scores, weights."""

from __future__ import annotations

import math
import urllib.error

import numpy as np
import pytest
import torch

from gmdrit_cli.evaluation.metrics import METRICS, MetricError, WeightsError, parse_metric_names, sha256_file
from gmdrit_cli.evaluation.metrics import fid as fidm
from gmdrit_cli.evaluation.metrics.cluster import cluster_scores, hungarian_accuracy, normalized_mutual_information
from gmdrit_cli.evaluation.metrics.ndb import NDB, js_divergence, kmeans, two_proportion_z_test

torch.set_num_threads(1)


# ------------------------------------------------------------------------------------------ registry


def test_registry_names_and_parsing():
    assert list(METRICS) == [
        "fid",
        "kid",
        "lpips",
        "ndb",
        "jsd",
        "cluster",
        "domain_accuracy",
        "diversity_msssim",
        "lpips_consecutive",
        "fid_test",
        "recon_mse",
        "recon_msssim",
        "checkerboard",
        "hue_match",
        "foreign_hue",
        "neutral_change",
        "paired_l1",
        "paired_msssim",
        "z_sensitivity",
    ]
    assert all(m.description and callable(m.function) for m in METRICS.values())
    assert parse_metric_names("jsd, FID") == ["fid", "jsd"]  # registry order, case-insensitive
    with pytest.raises(MetricError, match="unknown metric 'fdi'.*fid,kid"):
        parse_metric_names("fdi")


# ------------------------------------------------------------------------------------------ FID


def test_frechet_distance_matches_hand_computation():
    # diagonal covariances: |dmu|^2 + sum (sqrt(a_i) - sqrt(b_i))^2 = (1 + 4 + 9) + (1 + 1 + 0)
    fd = fidm.frechet_distance(
        np.zeros(3), np.diag([1.0, 4.0, 9.0]), np.array([1.0, 2.0, 3.0]), np.diag([4.0, 1.0, 9.0])
    )
    assert fd == pytest.approx(16.0, abs=1e-10)
    # correlated: sigma1 = [[2, 1], [1, 2]] has eigenvalues 3 and 1, so tr(sqrt(sigma1 * 4 I)) = 2 (sqrt 3 + 1)
    s1 = np.array([[2.0, 1.0], [1.0, 2.0]])
    fd = fidm.frechet_distance(np.array([0.0, 0.0]), s1, np.array([3.0, 4.0]), 4.0 * np.eye(2))
    assert fd == pytest.approx(25.0 + 4.0 + 8.0 - 4.0 * (math.sqrt(3.0) + 1.0), abs=1e-10)
    # symmetric, zero for identical Gaussians
    assert fidm.frechet_distance(np.ones(2), s1, np.ones(2), s1) == pytest.approx(0.0, abs=1e-10)


def test_fid_from_features_agrees_with_statistics_and_torch_fidelity():
    from torch_fidelity.metric_fid import fid_statistics_to_metric

    rng = np.random.default_rng(0)
    for n1, n2, d in ((300, 400, 16), (20, 30, 64)):  # more samples than dimensions, and fewer
        a = rng.normal(size=(n1, d))
        b = rng.normal(size=(n2, d)) @ rng.normal(size=(d, d)) * 0.5 + 1.0
        (m1, s1), (m2, s2) = fidm.feature_statistics(a), fidm.feature_statistics(b)
        expected = fid_statistics_to_metric({"mu": m1, "sigma": s1}, {"mu": m2, "sigma": s2}, False)
        expected = expected["frechet_inception_distance"]
        assert fidm.frechet_distance(m1, s1, m2, s2) == pytest.approx(expected, rel=1e-6)
        assert fidm.FeatureSet(a).fid_to(fidm.FeatureSet(b)) == pytest.approx(expected, rel=1e-6)


def test_fid_of_samples_approaches_the_gaussians_distance():
    rng = np.random.default_rng(1)
    cov2 = np.array([[1.0, 0.5], [0.5, 2.0]])
    a = rng.normal(size=(200_000, 2))
    b = rng.multivariate_normal([1.0, -1.0], cov2, size=200_000)
    analytic = fidm.frechet_distance(np.zeros(2), np.eye(2), np.array([1.0, -1.0]), cov2)
    assert fidm.FeatureSet(a).fid_to(fidm.FeatureSet(b)) == pytest.approx(analytic, abs=0.02)


# ------------------------------------------------------------------------------------------ KID


def test_mmd2_unbiased_by_hand():
    x, y = np.array([[1.0], [2.0]]), np.array([[0.0], [1.0]])
    k = lambda a, b: fidm.polynomial_kernel(a, b)  # (x y + 1)^3 with d = 1  # noqa: E731
    # off-diagonal k_xx: (2+1)^3 = 27 twice; k_yy: (0+1)^3 = 1 twice; k_xy: 1, 8, 1, 27
    expected = (27 * 2) / 2 + (1 * 2) / 2 - 2 * (1 + 8 + 1 + 27) / 4
    assert fidm.mmd2_unbiased(k(x, x), k(x, y), k(y, y)) == pytest.approx(expected)


def test_kid_on_synthetic_features():
    from torch_fidelity.metric_kid import kid_features_to_metric

    rng = np.random.default_rng(0)
    a = rng.normal(size=(300, 32))
    b = rng.normal(size=(250, 32))
    c = rng.normal(size=(250, 32)) + 0.5
    same = fidm.kernel_inception_distance(a, b, subsets=20, subset_size=100, seed=3)
    shifted = fidm.kernel_inception_distance(a, c, subsets=20, subset_size=100, seed=3)
    assert abs(same.mean) < 0.02 and shifted.mean > 0.1 and shifted.mean > 10 * abs(same.mean)
    ref = kid_features_to_metric(
        torch.from_numpy(a),
        torch.from_numpy(c),
        kid_subsets=20,
        kid_subset_size=100,
        rng_seed=3,
        verbose=False,
        kid_kernel="poly",
        kid_kernel_poly_degree=3,
        kid_kernel_poly_gamma=None,
        kid_kernel_poly_coef0=1,
    )
    assert shifted.mean == pytest.approx(ref["kernel_inception_distance_mean"], rel=1e-9)
    assert shifted.std == pytest.approx(ref["kernel_inception_distance_std"], rel=1e-9)
    small = fidm.kernel_inception_distance(a[:10], c, subsets=5, subset_size=1000)
    assert small.subset_size == 10  # lowered to the smaller set


# ------------------------------------------------------------------------------------------ weights


def test_inception_weights_offline_messages(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    monkeypatch.setenv("GMDRIT_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        fidm.InceptionFeatures(None)
    assert fidm.INCEPTION_FILE in str(err.value) and "--inception-weights" in str(err.value)
    monkeypatch.delenv("GMDRIT_OFFLINE")

    def no_network(*args, **kwargs):
        raise urllib.error.URLError("Name or service not known")

    monkeypatch.setattr(torch.hub, "download_url_to_file", no_network)
    with pytest.raises(WeightsError, match="download failed .*Name or service not known"):
        fidm.InceptionFeatures(None)
    with pytest.raises(WeightsError, match="does not exist .*--inception-weights"):
        fidm.InceptionFeatures(tmp_path / "missing.pth")


def test_weights_files_are_never_unpickled_blindly(tmp_path):
    import argparse

    bad = tmp_path / "pickled.pth"
    torch.save({"x": argparse.Namespace(run="anything")}, bad)  # needs a global weights_only refuses
    with pytest.raises(WeightsError, match="not a plain PyTorch state dict"):
        fidm.InceptionFeatures(bad)
    wrong = tmp_path / "wrong.pth"
    torch.save({"conv.weight": torch.zeros(1)}, wrong)
    with pytest.raises(WeightsError, match="do not fit torch-fidelity"):
        fidm.InceptionFeatures(wrong)


@pytest.mark.slow  # Inception at 299 px
def test_random_inception_file_loads_from_flag_and_cache(tmp_path, monkeypatch):
    path = fidm.write_random_inception_weights(tmp_path / "inception.pth")
    net = fidm.InceptionFeatures(path)
    feats = net(torch.randint(0, 256, (2, 3, 32, 32), dtype=torch.uint8))
    assert feats.shape == (2, 2048) and np.isfinite(feats).all()
    assert net.info()["sha256"] == sha256_file(path) and net.source == "flag"
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch"))
    cache = fidm.hub_checkpoint_dir()
    cache.mkdir(parents=True)
    path.rename(cache / fidm.INCEPTION_FILE)
    assert fidm.InceptionFeatures(None).source == "cache"


# ------------------------------------------------------------------------------------------ LPIPS


@pytest.mark.filterwarnings("ignore::UserWarning")  # lpips passes torchvision's deprecated `pretrained=`
@pytest.mark.parametrize("version", ["0.1", "0.0"])
def test_lpips_wrapper_equals_lpips_package(tmp_path, version):
    import lpips

    from gmdrit_cli.evaluation.metrics.lpips_diversity import LPIPSDiversity, write_random_alexnet_weights

    path = write_random_alexnet_weights(tmp_path / "alexnet.pth", seed=1)
    ours = LPIPSDiversity(version, path)
    ref = lpips.LPIPS(net="alex", version=version, pnet_rand=True, verbose=False)
    state = torch.load(path, weights_only=True)
    ref.net.load_state_dict({k: state[f"features.{k.split('.', 1)[1]}"] for k in ref.net.state_dict()})
    gen = torch.Generator().manual_seed(0)
    a = torch.rand(4, 3, 40, 40, generator=gen) * 2 - 1
    b = torch.rand(4, 3, 40, 40, generator=gen) * 2 - 1
    with torch.no_grad():
        expected = ref(a, b).flatten()
    assert torch.allclose(ours.distance(a, b), expected, rtol=1e-5, atol=1e-7)
    with torch.no_grad():
        pairs = [float(ref(a[i : i + 1], a[j : j + 1])) for i in range(4) for j in range(i + 1, 4)]
    assert ours.diversity(a) == pytest.approx(float(np.mean(pairs)), rel=1e-5)
    assert ours.info()["backbone"]["sha256"] == sha256_file(path)
    assert ours.info()["linear"]["file"] == f"lpips/weights/v{version}/alex.pth"


def test_lpips_offline_message(tmp_path, monkeypatch):
    from gmdrit_cli.evaluation.metrics.lpips_diversity import ALEXNET_FILE, LPIPSDiversity

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    monkeypatch.setenv("GMDRIT_OFFLINE", "1")
    with pytest.raises(WeightsError) as err:
        LPIPSDiversity("0.1", None)
    assert ALEXNET_FILE in str(err.value) and "--lpips-backbone-weights" in str(err.value)
    with pytest.raises(MetricError, match="--lpips-version"):
        LPIPSDiversity("0.2", None)


# ------------------------------------------------------------------------------------------ NDB / JSD


def _mixture(rng, n, modes, drop=None):
    k = rng.integers(0, len(modes), n)
    if drop is not None:
        k = np.where(k == drop, (k + 1) % len(modes), k)
    return modes[k] + rng.normal(size=(n, modes.shape[1])), k


def test_ndb_same_distribution_and_dropped_mode():
    rng = np.random.default_rng(0)
    modes = rng.normal(size=(5, 20)) * 6
    train, _ = _mixture(rng, 2000, modes)
    ndb = NDB(train, bins=5, alpha=0.05, seed=0)
    same = ndb.evaluate(_mixture(rng, 2000, modes)[0])
    assert same.ndb == 0 and same.jsd < 2e-3
    query, _ = _mixture(rng, 2000, modes, drop=2)
    dropped = ndb.evaluate(query)
    # the bin holding mode 2 (found from its centre) is statistically different and under-filled
    bin_of_mode = int(ndb.assign(modes[2:3])[0])
    assert bin_of_mode in dropped.different and bin_of_mode in dropped.missing
    assert dropped.query_proportions[bin_of_mode] == 0.0
    assert dropped.ndb >= 1 and dropped.jsd > 0.05 and dropped.jsd <= math.log(2)
    settings = ndb.settings()
    assert settings["bins"] == 5 and settings["alpha"] == 0.05 and settings["seed"] == 0


def test_ndb_pieces():
    # bins sorted by training size, high-dimensional data uses d // 6 dimensions
    rng = np.random.default_rng(0)
    big = NDB(rng.random((60, 1200)), bins=3, seed=1)
    assert big.settings()["kmeans_dims"] == 200 and list(big.train_counts) == sorted(big.train_counts, reverse=True)
    assert js_divergence([1, 0], [0, 1]) == pytest.approx(math.log(2))
    assert js_divergence([0.5, 0.5], [0.5, 0.5]) == 0.0
    z, p = two_proportion_z_test(np.array([0.5, 0.0]), 100, np.array([0.3, 0.0]), 100)
    pooled = 0.4
    assert z[0] == pytest.approx(0.2 / math.sqrt(pooled * (1 - pooled) * 0.02)) and p[1] == 1.0
    labels, centres, _ = kmeans(np.array([[0.0], [0.1], [10.0], [10.1]]), 2, seed=0)
    assert labels[0] == labels[1] != labels[2] == labels[3]
    with pytest.raises(MetricError, match="--ndb-bins"):
        NDB(rng.random((3, 4)), bins=5)


# ------------------------------------------------------------------------------------------ cluster


def test_cluster_accuracy_and_nmi_by_hand():
    true = np.array([0, 0, 0, 1, 1, 1])
    pred = np.array([1, 1, 0, 0, 0, 0])  # best matching: cluster 1 -> domain 0, cluster 0 -> domain 1
    acc, matching = hungarian_accuracy(true, pred)
    assert acc == pytest.approx(5 / 6) and matching == {1: 0, 0: 1}
    assert normalized_mutual_information(true, 1 - true) == pytest.approx(1.0)
    assert normalized_mutual_information(np.array([0, 1, 0, 1]), np.array([0, 0, 1, 1])) == pytest.approx(0.0)
    # true [0, 0, 1, 1] vs pred [0, 0, 0, 1]: MI = H(pred) - H(pred | true) = H(pred) - ln(2) / 2
    h_true = math.log(2)
    h_pred = -(0.75 * math.log(0.75) + 0.25 * math.log(0.25))
    mi = h_pred - 0.5 * math.log(2)
    assert normalized_mutual_information(np.array([0, 0, 1, 1]), np.array([0, 0, 0, 1])) == pytest.approx(
        mi / ((h_true + h_pred) / 2)
    )


def test_cluster_scores_from_probabilities():
    # 2 domains x 2 components; the model's components 0, 1 belong to domain 0 and 2, 3 to domain 1
    probs = np.array(
        [[0.7, 0.1, 0.1, 0.1], [0.1, 0.6, 0.2, 0.1], [0.1, 0.1, 0.7, 0.1], [0.5, 0.1, 0.0, 0.4], [0.1, 0.1, 0.1, 0.7]]
    )
    true = np.array([0, 0, 1, 1, 1])
    s = cluster_scores(true, probs, components_per_domain=2, domain_names=["apple", "orange"])
    assert s["domain_accuracy"] == pytest.approx(0.8)  # image 3: domain probs 0.6 vs 0.4 -> wrong
    assert s["component_usage"] == pytest.approx([0.4, 0.2, 0.2, 0.2])
    assert s["components_used"] == 4 and s["components"] == 4
    assert 0 < s["accuracy"] <= 1 and 0 <= s["nmi"] <= 1
    assert s["per_domain"]["orange"]["images"] == 3
