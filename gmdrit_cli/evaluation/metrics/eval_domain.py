"""Domain accuracy in `gmdrit eval`: a cached CNN classifies each output as a domain or 'neither'."""

from __future__ import annotations

import numpy as np

from .evaluator import Evaluator, TableColumn


def _mean_cell(mean: dict, real: bool) -> str:
    acc, neither = mean.get("domain_accuracy"), mean.get("domain_neither")
    return "-" if acc is None else f"{acc:.3f} ({neither:.3f})"


class DomainAccuracyScores(Evaluator):
    reference_order = 4
    table_columns = {
        "domain_accuracy": TableColumn(
            "domain acc (neither)",
            6,
            lambda r, real: (
                "-"
                if r.get("domain_accuracy") is None
                else f"{r['domain_accuracy']['to_target']:.3f} ({r['domain_accuracy']['neither']:.3f})"
            ),
            _mean_cell,
        )
    }

    @classmethod
    def check_options(cls, o, names):
        """A --classifier-cache that cannot hold the classifier is refused before it is trained."""
        from pathlib import Path

        from ...outputs import checkpoint_area
        from . import MetricError

        cache = o.classifier_cache
        if cache is None:
            from .domain_classifier import cache_root

            default = cache_root(None)  # $GMDRIT_CACHE/domain_classifier when set: held to the same rule
            if checkpoint_area(default) is not None:
                raise MetricError(
                    f"the domain classifier cache {default} (GMDRIT_CACHE) is inside a run's checkpoints, which "
                    f"only `gmdrit train` and `gmdrit resume` write; set GMDRIT_CACHE elsewhere, or give "
                    f"--classifier-cache DIR"
                )
            return
        if Path(cache).expanduser().exists() and not Path(cache).expanduser().is_dir():
            raise MetricError(f"--classifier-cache {cache} is a file, not a folder; choose another --classifier-cache")
        if checkpoint_area(cache) is not None:
            raise MetricError(
                f"--classifier-cache {cache} is inside a run's checkpoints, which only `gmdrit train` "
                f"and `gmdrit resume` write; choose another --classifier-cache"
            )

    def setup(self):
        from .domain_classifier import get_classifier

        ctx = self.ctx
        self.classifier = get_classifier(
            ctx.root,
            ctx.cfg,
            self.options.classifier_cache,
            progress=ctx.progress,
            device=ctx.device,
            paired=ctx.model.capabilities.paired_data,
        )

    def _fractions(self, predictions: np.ndarray, target: int) -> dict:
        from .domain_classifier import domain_fractions

        return domain_fractions(predictions, target, len(self.ctx.domains))

    def reference(self, target, real):
        return {"domain_accuracy": self._fractions(self.classifier.predict(real), target)}

    def start_task(self, source, target):
        self.target, self.predictions = target, []

    def update(self, fakes, per_input):
        self.predictions.append(self.classifier.predict(fakes))

    def task_result(self):
        return {"domain_accuracy": self._fractions(np.concatenate(self.predictions), self.target)}

    def protocols(self):
        clf = self.classifier
        return {
            "domain_accuracy": {
                "images": "every output of the task; the reference line: the target's test images",
                "prediction": "argmax over the domains and 'neither' of the domain classifier's logits",
                "fractions": "to_target: argmax is the target; neither: argmax is 'neither'; other: another domain",
                "classifier": clf.info(),
                "classifier_protocol": clf.record["protocol"],
                "classifier_held_out": {"test": clf.record["test"], "junk": clf.record["junk"]},
            }
        }

    def weights(self):
        clf = self.classifier
        return {
            "domain_classifier": {
                "path": str(clf.folder),
                "sha256": clf.record["weights"]["sha256"],
                "loaded_from_cache": clf.from_cache,
            }
        }

    def seeds(self):
        seed = self.classifier.record["protocol"]["settings"]["seed"]
        return {"domain_classifier": f"its own seed {seed} (independent of --seed, so the cache serves every seed)"}

    def summaries(self):
        return [
            ("domain_accuracy", lambda r: r["domain_accuracy"]["to_target"] if "domain_accuracy" in r else None),
            ("domain_neither", lambda r: r["domain_accuracy"]["neither"] if "domain_accuracy" in r else None),
        ]
