"""NDB and JSD in `gmdrit eval`: K-means bins of the target's training images, queried with the outputs."""

from __future__ import annotations

import numpy as np

from . import MetricError
from . import ndb as ndbm
from .evaluator import Evaluator, TableColumn, fmt

NDB_BINS = 50  # the NDB paper's K
NDB_IMAGES_PER_BIN = 10  # fewer training images per bin make the per-bin proportion tests meaningless


def default_ndb_bins(n_train: int) -> int:
    """K for NDB/JSD when the user gave none: 50, or fewer so each bin has >= 10 training images (>= 2)."""
    return max(2, min(NDB_BINS, n_train // NDB_IMAGES_PER_BIN))


class NDBScores(Evaluator):
    """ndb and jsd share the bins fitted once per target."""

    reference_order = 1
    needs_train_images = True
    table_columns = {
        "ndb": TableColumn(
            "NDB",
            4,
            lambda r, real: "-" if r.get("ndb") is None else f"{r['ndb']['ndb']} / {r['ndb']['bins']}",
            lambda m, real: fmt(m.get("ndb"), 1),
        ),
        "jsd": TableColumn(
            "JSD",
            5,
            lambda r, real: "-" if r.get("ndb") is None else f"{r['ndb']['jsd']:.4f}",
            lambda m, real: fmt(m.get("jsd"), 4),
        ),
    }

    @classmethod
    def check_options(cls, o, names):
        if (o.ndb_bins is not None and o.ndb_bins < 2) or o.ndb_size < 1 or not 0 < o.ndb_alpha < 1:
            raise MetricError(
                f"NDB settings: --ndb-bins >= 2, --ndb-size >= 1 and 0 < --ndb-alpha < 1 "
                f"(got {o.ndb_bins}, {o.ndb_size}, {o.ndb_alpha})"
            )

    def __init__(self, ctx, names):
        super().__init__(ctx, names)
        self.train_vectors: dict[int, list[np.ndarray]] = {}
        self.bins: dict[int, ndbm.NDB] = {}

    def add_train_images(self, target, images):
        self.train_vectors.setdefault(target, []).append(ndbm.downscale(images, self.options.ndb_size))

    def fit_train(self, target, n_train):
        o = self.options
        bins = o.ndb_bins if o.ndb_bins is not None else default_ndb_bins(n_train)
        if o.ndb_bins is None and bins < NDB_BINS:
            self.ctx.notes.append(
                f"NDB/JSD for {self.ctx.domains[target]}: {bins} bins, not {NDB_BINS}: {n_train} "
                f"training images (the default keeps at least {NDB_IMAGES_PER_BIN} per bin; "
                f"--ndb-bins sets K)"
            )
        self.bins[target] = ndbm.NDB(
            np.concatenate(self.train_vectors.pop(target)), bins=bins, alpha=o.ndb_alpha, seed=o.seed
        )

    def reference(self, target, real):
        return {"ndb": self.bins[target].evaluate(ndbm.downscale(real, self.options.ndb_size)).to_dict()}

    def start_task(self, source, target):
        self.target, self.vectors = target, []

    def update(self, fakes, per_input):
        self.vectors.append(ndbm.downscale(fakes, self.options.ndb_size))

    def task_result(self):
        return {"ndb": self.bins[self.target].evaluate(np.concatenate(self.vectors)).to_dict()}

    def protocols(self):
        o = self.options
        any_ndb = next(iter(self.bins.values()))
        return {
            "ndb": {
                **any_ndb.settings(),
                "image_size": o.ndb_size,
                "downscale": "bilinear, antialiased, to image_size x image_size, pixels in [0, 1]",
                "bins_rule": (
                    f"given (--ndb-bins {o.ndb_bins})"
                    if o.ndb_bins is not None
                    else f"{NDB_BINS}, or n_train // {NDB_IMAGES_PER_BIN} (at least 2) when smaller; "
                    "each row's ndb.bins is the K used"
                ),
                "train": "training images of the target domain (fitted once per target)",
                "query": "all outputs of the task; the reference line queries the target's test images",
            }
        }

    def summaries(self):
        return [
            ("ndb", lambda r: r["ndb"]["ndb"] if "ndb" in r else None),
            ("ndb_over_k", lambda r: r["ndb"]["ndb_over_k"] if "ndb" in r else None),
            ("jsd", lambda r: r["ndb"]["jsd"] if "ndb" in r else None),
        ]
