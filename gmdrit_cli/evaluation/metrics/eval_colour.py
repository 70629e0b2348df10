"""Colour alone in `gmdrit eval`: ``hue_match`` and ``foreign_hue`` (``colour.py``), a check of the translations
that does not go through gmdrit's CNN classifier."""

from __future__ import annotations

import torch

from . import MetricError
from .evaluator import Evaluator, TableColumn, fmt

#: training images per domain read for its prototype (a mean of histograms: more changes little, costs decoding)
PROTOTYPE_IMAGES = 600


def _match_cell(row: dict, real: bool) -> str:
    value = row.get("hue_match")
    return "-" if value is None else f"{value['share']:.3f}"


def _foreign_cell(row: dict, real: bool) -> str:
    value = row.get("foreign_hue")
    return "-" if value is None or value["ratio"] is None else f"{value['ratio']:.2f}"


class ColourScores(Evaluator):
    """Prototypes of every domain from its training images (read once in :meth:`setup`), then per task the share
    of outputs nearest the target's prototype and the outputs' share of hues foreign to the target."""

    reference_order = 9
    table_columns = {
        "hue_match": TableColumn("hue match", 16, _match_cell, lambda mean, real: fmt(mean.get("hue_match"), 3)),
        "foreign_hue": TableColumn("foreign hue", 17, _foreign_cell, lambda mean, real: fmt(mean.get("foreign_hue"))),
    }

    def setup(self):
        from .colour import colour_histograms, foreign_bins
        from .images import open_images

        ctx = self.ctx
        train = open_images(ctx.root, ctx.cfg, "train", PROTOTYPE_IMAGES, ctx.model.capabilities.paired_data)
        prototypes, self.n_images = [], []
        for d, name in enumerate(ctx.domains):
            hists = [colour_histograms(images) for images, _ in train.batches(d, ctx.options.batch_size) if len(images)]
            if not hists:
                raise MetricError(f"hue_match / foreign_hue need training images of {name!r}; none could be read")
            hists = torch.cat(hists)
            prototypes.append(hists.mean(dim=0))
            self.n_images.append(len(hists))
        self.prototypes = torch.stack(prototypes)
        self.foreign = [foreign_bins(p) for p in self.prototypes]
        self._real: dict[int, tuple[float, float]] = {}

    def _real_scores(self, target: int) -> tuple[float, float]:
        """(hue-match share, foreign-hue share) of the target's real images of the evaluated split."""
        from .colour import colour_histograms, foreign_share, nearest_prototype

        if target not in self._real:
            hists = colour_histograms(self.ctx.test_images[target])
            match = float((nearest_prototype(hists, self.prototypes) == target).double().mean())
            self._real[target] = (match, float(foreign_share(hists, self.foreign[target]).mean()))
        return self._real[target]

    def reference(self, target, real):
        match, foreign = self._real_scores(target)
        entries = {
            "hue_match": {"share": match, "images": len(real)},
            "foreign_hue": {"ratio": 1.0, "share": foreign, "images": len(real)},
        }
        return {k: v for k, v in entries.items() if k in self.names}

    def start_task(self, source, target):
        self.target, self.histograms = target, []

    def update(self, fakes, per_input):
        from .colour import colour_histograms

        self.histograms.append(colour_histograms(fakes))

    def task_result(self):
        from .colour import foreign_share, nearest_prototype

        hists = torch.cat(self.histograms)
        real_match, real_foreign = self._real_scores(self.target)
        share = float(foreign_share(hists, self.foreign[self.target]).mean())
        result = {
            "hue_match": {
                "share": float((nearest_prototype(hists, self.prototypes) == self.target).double().mean()),
                "real_share": real_match,
            },
            "foreign_hue": {
                # no foreign pixel in the real images (e.g. no foreign bin at all): no ratio to report
                "ratio": share / real_foreign if real_foreign > 0 else None,
                "share": share,
                "real_share": real_foreign,
            },
        }
        return {k: v for k, v in result.items() if k in self.names}

    def protocols(self):
        from . import colour

        histogram = (
            f"per image: share of pixels in each of {colour.HUE_BINS} hue bins (HSV hue, pixels with saturation >= "
            f"{colour.MIN_SATURATION} and value >= {colour.MIN_VALUE}) plus one bin of the other pixels"
        )
        prototypes = {
            name: {"training_images": n, "foreign_bins": [i for i, f in enumerate(self.foreign[d].tolist()) if f]}
            for d, (name, n) in enumerate(zip(self.ctx.domains, self.n_images, strict=True))
        }
        out = {
            "hue_match": {
                "histogram": histogram,
                "prototype": f"mean histogram of a domain's first {PROTOTYPE_IMAGES} training images (by file name)",
                "share": "outputs whose histogram is nearest (L1) the target's prototype among all domains'",
                "prototypes": prototypes,
            },
            "foreign_hue": {
                "histogram": histogram,
                "foreign": f"hue bins holding less than {colour.FOREIGN_MASS} of the target prototype's coloured "
                "pixels",
                "ratio": "mean share of the outputs' pixels in foreign bins / the same of the target's real images",
            },
        }
        return {k: v for k, v in out.items() if k in self.names}

    def summaries(self):
        return [
            ("hue_match", lambda r: r["hue_match"]["share"] if "hue_match" in r else None),
            ("foreign_hue", lambda r: r["foreign_hue"]["ratio"] if "foreign_hue" in r else None),
        ]
