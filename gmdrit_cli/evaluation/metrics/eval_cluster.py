"""Clustering in `gmdrit eval`: argmax q(y|x) of every test image vs its domain (mixture models only)."""

from __future__ import annotations

import numpy as np
import torch

from .evaluator import Evaluator, to_float


class ClusterScores(Evaluator):
    section = "cluster"

    def __init__(self, ctx, names):
        super().__init__(ctx, names)
        caps = ctx.model.capabilities
        self.skipped = None
        if not (caps.has_mixture and caps.classifies_domains):
            self.skipped = (
                f"the {ctx.cfg.model.family} model infers no mixture component q(y|x) (a mixture "
                f"model conditioned on the domain code has none either)"
            )
            ctx.notes.append(f"cluster skipped: {self.skipped}")

    def section_result(self, test_images):
        if self.skipped:
            return {"skipped": self.skipped}
        from .cluster import cluster_scores

        ctx, model = self.ctx, self.ctx.model
        size = self.options.batch_size
        probs, labels = [], []
        with torch.no_grad():
            for d, images in enumerate(test_images):
                ctx.progress("cluster", d, len(test_images))
                for b in range(0, len(images), size):
                    x = to_float(images[b : b + size], ctx.device)
                    probs.append(model.component_probabilities(x).float().cpu().numpy())
                    labels.append(np.full(len(x), d))
        scores = cluster_scores(
            np.concatenate(labels), np.concatenate(probs), model.capabilities.components_per_domain, ctx.domains
        )
        ctx.progress("cluster", len(test_images), len(test_images))
        return scores

    def protocols(self):
        if self.skipped:
            return {}
        return {
            "cluster": {
                "images": "test images of every domain (model test input)",
                "prediction": "argmax_k q(y=k|x) (attribute encoder, eval mode)",
                "accuracy": "Hungarian matching of components to domains (scipy linear_sum_assignment)",
                "nmi": "arithmetic-mean normalisation, nats",
            }
        }
