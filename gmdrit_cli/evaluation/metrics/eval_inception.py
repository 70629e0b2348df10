"""FID and KID in `gmdrit eval`: InceptionV3 features of the outputs vs the target's training images."""

from __future__ import annotations

import numpy as np

from . import MetricError
from . import fid as fidm
from .evaluator import Evaluator, TableColumn, fmt


class InceptionScores(Evaluator):
    """fid and kid share one feature extractor and the training images' feature statistics."""

    reference_order = 0
    needs_train_images = True
    table_columns = {
        "fid": TableColumn("FID", 0, lambda r, real: fmt(r.get("fid")), lambda m, real: fmt(m.get("fid"))),
        "kid": TableColumn(
            "KID",
            1,
            lambda r, real: "-" if r.get("kid") is None else f"{r['kid']['mean']:.4f} ± {r['kid']['std']:.4f}",
            lambda m, real: fmt(m.get("kid"), 4),
        ),
    }

    @classmethod
    def check_options(cls, o, names):
        if o.kid_subset_size < 2 or o.kid_subsets < 1:
            raise MetricError(
                f"KID settings: --kid-subset-size >= 2 and --kid-subsets >= 1 "
                f"(got {o.kid_subset_size}, {o.kid_subsets})"
            )

    def __init__(self, ctx, names):
        super().__init__(ctx, names)
        self.inception = fidm.InceptionFeatures(self.options.inception_weights, ctx.device)
        self.train_features: dict[int, list[np.ndarray]] = {}
        self.targets: dict[int, fidm.FeatureSet] = {}

    def add_train_images(self, target, images):
        self.train_features.setdefault(target, []).append(self.inception(images))

    def fit_train(self, target, n_train):
        self.targets[target] = fidm.FeatureSet.from_features(np.concatenate(self.train_features.pop(target)))

    def _scores(self, target: int, fs: fidm.FeatureSet) -> dict:
        o, row = self.options, {}
        if "fid" in self.names:
            row["fid"] = self.targets[target].fid_to(fs)
        if "kid" in self.names:
            row["kid"] = fidm.kernel_inception_distance(
                self.targets[target].features, fs.features, o.kid_subsets, o.kid_subset_size, o.seed
            ).to_dict()
        return row

    def reference(self, target, real):
        if len(real) < 2:
            return {}
        return self._scores(target, fidm.FeatureSet.from_features(self.inception(real)))

    def start_task(self, source, target):
        self.target, self.features = target, []

    def update(self, fakes, per_input):
        self.features.append(self.inception(fakes))

    def task_result(self):
        return self._scores(self.target, fidm.FeatureSet.from_features(np.concatenate(self.features)))

    def protocols(self):
        o = self.options
        return {
            "fid": {
                "real": "training images of the target domain",
                "fake": "all outputs of the task",
                "features": "torch-fidelity inception-v3-compat, 2048-d pool",
                "statistics": "mean and unbiased covariance, float64",
                "trace_term": "nuclear norm of X_fake X_real^T / sqrt((n_real-1)(n_fake-1)) (centred "
                "features) when a set has fewer vectors than dimensions, else "
                "eigenvalues of sigma_real^1/2 sigma_fake sigma_real^1/2",
            },
            "kid": {
                "kernel": "polynomial, degree 3, gamma 1/d, coef0 1",
                "estimator": "unbiased MMD^2",
                "subsets": o.kid_subsets,
                "subset_size": o.kid_subset_size,
                "subset_size_rule": "lowered to the smaller sample when that is smaller (see each row)",
                "rng": f"numpy RandomState({o.seed})",
            },
        }

    def weights(self):
        return {"inception": self.inception.info()}

    def summaries(self):
        return [("fid", lambda r: r.get("fid")), ("kid", lambda r: r["kid"]["mean"] if "kid" in r else None)]

    def final_notes(self, tasks, reference):
        wanted = self.options.kid_subset_size
        sizes = sorted({r["kid"]["subset_size"] for r in [*tasks, *reference.values()] if "kid" in r})
        if sizes and sizes[0] < wanted:
            return [
                f"KID: subsets of {', '.join(map(str, sizes))} images, not {wanted}: "
                "the smaller sample of a comparison is that small (each row's kid.subset_size)"
            ]
        return []
