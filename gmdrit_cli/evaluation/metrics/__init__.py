"""Evaluation metrics of `gmdrit eval`: registry, shared errors and helpers.

``docs/eval.md`` says how gmdrit computes each metric and which paper each comes from (docs/references.md).
The submodules import their heavy libraries (scipy, torch-fidelity, lpips, pytorch-msssim) only when
used, so listing the registry costs nothing.
"""

from __future__ import annotations

import hashlib
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ... import atomic
from ...errors import GmdritError


class MetricError(GmdritError):
    """A metric cannot be computed with the given options or data (too few samples, bad setting)."""


class WeightsError(GmdritError):
    """Weights a metric needs are missing, cannot be downloaded, or do not fit the network."""


def real_line_label(name: str, settings: dict) -> str:
    """The name of a real-vs-real line of an eval report: the split's real images of domain ``name`` against
    its training images (``val`` for a validation-split eval; reports older than the split are ``test``)."""
    return f"real {name}: {settings.get('split', 'test')} vs train"


@dataclass(frozen=True)
class MetricInfo:
    """One entry of :data:`METRICS`: a name, a one-line description, the function that computes it, and the
    :class:`~gmdrit_cli.evaluation.metrics.evaluator.Evaluator` that computes it in `gmdrit eval` (metrics that share
    their work name the same evaluator)."""

    name: str
    description: str
    target: str  # "module:attribute" inside gmdrit_cli.evaluation.metrics, imported on first use
    evaluator: str  # "module:Class" inside gmdrit_cli.evaluation.metrics, imported on first use

    @property
    def function(self) -> Callable[..., Any]:
        return _load(self.target)

    @property
    def evaluator_class(self) -> type:
        return _load(self.evaluator)


def _load(target: str) -> Any:
    module, attr = target.split(":")
    return getattr(importlib.import_module(f"{__name__}.{module}"), attr)


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in (
        MetricInfo(
            "fid",
            "Frechet Inception distance of the translations to the target domain's training images "
            "(torch-fidelity InceptionV3, 2048-d pool features)",
            "fid:frechet_distance",
            "eval_inception:InceptionScores",
        ),
        MetricInfo(
            "kid",
            "kernel Inception distance (unbiased MMD^2, cubic polynomial kernel, mean +- std over "
            "random subsets), same features as FID",
            "fid:kernel_inception_distance",
            "eval_inception:InceptionScores",
        ),
        MetricInfo(
            "lpips",
            "diversity: LPIPS (AlexNet) averaged over all pairs of outputs of the same input, then "
            "over inputs (StarGAN v2 protocol)",
            "lpips_diversity:LPIPSDiversity",
            "eval_diversity:LPIPSScores",
        ),
        MetricInfo(
            "ndb",
            "number of statistically different bins (Richardson & Weiss): K-means bins of the target's "
            "training images, two-proportion z-test per bin",
            "ndb:NDB",
            "eval_ndb:NDBScores",
        ),
        MetricInfo(
            "jsd",
            "Jensen-Shannon divergence (nats) between the bin proportions of training images and "
            "translations, same bins as NDB",
            "ndb:NDB",
            "eval_ndb:NDBScores",
        ),
        MetricInfo(
            "cluster",
            "GM-DRIT only: accuracy (Hungarian matching) and NMI of argmax q(y|x) vs the true "
            "domains of the test images, and mixture-component usage",
            "cluster:cluster_scores",
            "eval_cluster:ClusterScores",
        ),
        MetricInfo(
            "domain_accuracy",
            "fraction of translations that a small CNN, trained by gmdrit on the dataset's "
            "training images (cached), assigns to the target domain rather than to another "
            "domain or to 'neither' (junk)",
            "domain_classifier:domain_fractions",
            "eval_domain:DomainAccuracyScores",
        ),
        MetricInfo(
            "diversity_msssim",
            "diversity: 1 - MS-SSIM (pytorch-msssim) averaged over all pairs of outputs of "
            "the same input, then over inputs",
            "msssim_diversity:MSSSIMDiversity",
            "eval_diversity:MSSSIMScores",
        ),
        MetricInfo(
            "lpips_consecutive",
            "diversity, BicycleGAN's official protocol: LPIPS (AlexNet, linear weights v0.0 "
            "and v0.1) between consecutive outputs of each of the first 100 inputs",
            "eval_paired:consecutive_pairs",
            "eval_paired:ConsecutiveLPIPS",
        ),
        MetricInfo(
            "fid_test",
            "FID of one random output per test input against the target's real test images "
            "(the BicycleGAN report's protocol: 200 val outputs vs 200 val B)",
            "fid:frechet_distance",
            "eval_paired:HeldOutFID",
        ),
        MetricInfo(
            "recon_mse",
            "reconstruction: mean squared difference (pixels / 255) between each test image and its "
            "model's reconstruction in its own domain (the VAE: D_d(mu_E(x))), per domain",
            "eval_reconstruction:reconstruction_scores",
            "eval_reconstruction:ReconstructionScores",
        ),
        MetricInfo(
            "recon_msssim",
            "reconstruction: MS-SSIM (pytorch-msssim) between each test image and its reconstruction, per domain",
            "eval_reconstruction:reconstruction_scores",
            "eval_reconstruction:ReconstructionScores",
        ),
        MetricInfo(
            "checkerboard",
            "grid pattern: the outputs' share of luminance power at the frequencies of period 2 "
            "and 4 pixels (two x2 upsamplings), over the same share in real target images of the "
            "same size (1 = none)",
            "checkerboard:checkerboard_ratio",
            "eval_checkerboard:CheckerboardScores",
        ),
        MetricInfo(
            "hue_match",
            "colour alone: share of outputs whose hue histogram is nearer the target's training "
            "prototype than any other domain's (independent of the CNN of domain_accuracy)",
            "colour:hue_match_share",
            "eval_colour:ColourScores",
        ),
        MetricInfo(
            "foreign_hue",
            "colour cast: the outputs' share of pixels in hues the target's training images hardly "
            "have (e.g. cyan on oranges), over the same share in real target images (1 = as photos)",
            "colour:foreign_share",
            "eval_colour:ColourScores",
        ),
        MetricInfo(
            "neutral_change",
            "plain parts kept: percentage of the input's colourless pixels (white, grey, black) that "
            "its translation visibly changes (e.g. a white background turned teal; 0 = all kept)",
            "neutral:neutral_change_shares",
            "eval_neutral:NeutralChangeScores",
        ),
        MetricInfo(
            "paired_l1",
            "paired data: mean |output - ground truth| (pixel / 255) of each test input translated "
            "with the attribute encoded from its own ground truth (faithfulness)",
            "eval_faithful:FaithfulnessScores",
            "eval_faithful:FaithfulnessScores",
        ),
        MetricInfo(
            "paired_msssim",
            "paired data: MS-SSIM between that output and the ground truth",
            "eval_faithful:FaithfulnessScores",
            "eval_faithful:FaithfulnessScores",
        ),
        MetricInfo(
            "z_sensitivity",
            "use of the attribute: mean output change (pixel / 255) per unit of attribute along "
            "a line between two random attributes (0 = z ignored)",
            "eval_faithful:ZSensitivityScores",
            "eval_faithful:ZSensitivityScores",
        ),
    )
}

#: what ``gmdrit eval`` computes without --metrics; domain_accuracy (which trains a classifier on first use)
#: and diversity_msssim are computed when named
DEFAULT_METRICS: tuple[str, ...] = ("fid", "kid", "lpips", "ndb", "jsd", "cluster")
#: ... and for paired families (BicycleGAN): the official diversity protocol and the report's FID
PAIRED_DEFAULT_METRICS: tuple[str, ...] = ("lpips_consecutive", "fid_test")


def parse_metric_names(text: str | list[str]) -> list[str]:
    """``"fid,kid"`` (or a list) -> registry names in registry order; unknown names raise MetricError."""
    parts = text.split(",") if isinstance(text, str) else [p for t in text for p in t.split(",")]
    names = [p.strip().lower() for p in parts if p.strip()]
    unknown = [n for n in names if n not in METRICS]
    if unknown:
        raise MetricError(f"unknown metric {', '.join(repr(n) for n in unknown)}; choose from {','.join(METRICS)}")
    if not names:
        raise MetricError(f"no metric selected; choose from {','.join(METRICS)}")
    return [n for n in METRICS if n in names]


def random_pair_indices(n: int, n_pairs: int, seed: int = 0):
    """Index arrays (i, j), i < j, of ``n_pairs`` distinct pairs of ``n`` items drawn with
    ``numpy.random.default_rng(seed)`` (all pairs when there are fewer): the set-level real-vs-real lines."""
    import numpy as np

    i, j = np.triu_indices(n, k=1)
    if n_pairs < len(i):
        pick = np.random.default_rng(seed).choice(len(i), n_pairs, replace=False)
        i, j = i[pick], j[pick]
    return i, j


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


# the metrics' cache and report files are written with the package's one atomic writer
write_bytes_atomic = atomic.write_bytes
write_json_atomic = atomic.write_json
