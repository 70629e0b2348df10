"""BicycleGAN's evaluation protocols in `gmdrit eval` (the official BicycleGAN README's LPIPS protocol and the
BicycleGAN report [R2]'s FID; docs/bicyclegan.md).

* ``lpips_consecutive`` (the official diversity protocol): for each of the first :data:`LPIPS_INPUTS` test inputs
  (sorted order), the LPIPS distance between consecutive outputs 1-2, 2-3, ..., (M-1)-M of its M random-z
  outputs (M = 20 by default for paired models: 19 distances per input, 1,900 in all); the mean over all
  distances. Computed with the AlexNet LPIPS of the registry's ``lpips`` metric, linear weights v0.0 (the
  paper's; about 2.4x smaller) and v0.1, both recorded.
* ``fid_test`` (the report's FID protocol): the first output of every test input, a random-z sample, against the
  real test images of the target (the report: 200 outputs vs the 200 real validation B images), with the
  registry's ``fid`` features (torch-fidelity InceptionV3, 2048-d pool). With N = 200 < 2048 FID is strongly
  biased upwards: compare it only at the same N.
"""

from __future__ import annotations

import numpy as np
import torch

from . import METRICS, MetricError
from . import fid as fidm
from .evaluator import Evaluator, TableColumn, fmt, to_float

#: inputs of the official LPIPS protocol (the first ones of the test split, sorted)
LPIPS_INPUTS = 100
LPIPS_VERSIONS = ("0.0", "0.1")


def consecutive_pairs(m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Index pairs (k, k + 1), k = 0 .. m - 2: the official protocol's consecutive outputs."""
    i = torch.arange(m - 1)
    return i, i + 1


def _lpips_cell(row: dict, real: bool) -> str:
    values = row.get("lpips_consecutive")
    return "-" if values is None else " / ".join(f"{values[f'v{v}']['mean']:.4f}" for v in LPIPS_VERSIONS)


def _lpips_mean(mean: dict, real: bool) -> str:
    return " / ".join(fmt(mean.get(f"lpips_consecutive_v{v}"), 4) for v in LPIPS_VERSIONS)


class ConsecutiveLPIPS(Evaluator):
    """The official BicycleGAN diversity: mean LPIPS between consecutive outputs of each input."""

    reference_order = 4
    table_columns = {"lpips_consecutive": TableColumn("LPIPS cons. v0.0 / v0.1", 8, _lpips_cell, _lpips_mean)}

    @classmethod
    def check_options(cls, o, names):
        if o.samples_per_input < 2:
            raise MetricError(
                "lpips_consecutive compares consecutive outputs of one input: use "
                "--samples-per-input 2 or more (the protocol: 20)"
            )

    def __init__(self, ctx, names):
        super().__init__(ctx, names)
        lpips_class = METRICS["lpips"].function  # the registry's LPIPS (AlexNet trunk, linear heads)
        o = self.options
        self.nets = {
            v: lpips_class(v, o.lpips_backbone_weights, ctx.device, metric="lpips_consecutive") for v in LPIPS_VERSIONS
        }

    def start_task(self, source, target):
        self.distances = {v: [] for v in LPIPS_VERSIONS}
        self.inputs = 0

    def update(self, fakes, per_input):
        i, j = consecutive_pairs(per_input)
        for k in range(len(fakes) // per_input):
            if self.inputs == LPIPS_INPUTS:
                return
            outputs = to_float(fakes[k * per_input : (k + 1) * per_input], self.ctx.device)
            for v, net in self.nets.items():
                self.distances[v].append(net.distance(outputs[i], outputs[j]).double())
            self.inputs += 1

    def task_result(self):
        out = {}
        for v, parts in self.distances.items():
            d = torch.cat(parts)
            out[f"v{v}"] = {"mean": float(d.mean()), "distances": len(d), "inputs": self.inputs}
        return {"lpips_consecutive": out}

    def summaries(self):
        return [
            (
                f"lpips_consecutive_v{v}",
                lambda r, v=v: r["lpips_consecutive"][f"v{v}"]["mean"] if "lpips_consecutive" in r else None,
            )
            for v in LPIPS_VERSIONS
        ]

    def protocols(self):
        info = self.nets["0.0"].info()
        info.pop("version")
        return {
            "lpips_consecutive": {
                "pairs": "consecutive outputs (1-2, 2-3, ..., (M-1)-M) of each input; mean over all distances "
                "(docs/bicyclegan.md, lpips_1dir_allpairs.py without --all-pairs)",
                "inputs": f"the first {LPIPS_INPUTS} test inputs in sorted order",
                "outputs_per_input": self.options.samples_per_input,
                "versions": list(LPIPS_VERSIONS),
                **info,
            }
        }

    def weights(self):
        return {f"lpips_consecutive_linear_v{v}": net.info()["linear"] for v, net in self.nets.items()}

    def final_notes(self, tasks, reference):
        short = [
            r for r in tasks if "lpips_consecutive" in r and r["lpips_consecutive"]["v0.0"]["inputs"] < LPIPS_INPUTS
        ]
        if short:
            return [
                f"lpips_consecutive: {short[0]['lpips_consecutive']['v0.0']['inputs']} inputs, not the "
                f"protocol's {LPIPS_INPUTS} (the test split is smaller)"
            ]
        return []


class HeldOutFID(Evaluator):
    """The report's FID: one random-z output per test input vs the real test images of the target."""

    reference_order = 5
    table_columns = {
        "fid_test": TableColumn(
            "FID (test)",
            7,
            lambda r, real: fmt(r.get("fid_test", {}).get("value")),
            lambda m, real: fmt(m.get("fid_test")),
        )
    }

    def __init__(self, ctx, names):
        super().__init__(ctx, names)
        self.inception = fidm.InceptionFeatures(self.options.inception_weights, ctx.device)

    def start_task(self, source, target):
        real = self.ctx.test_images[target]
        if len(real) < 2:
            raise MetricError(f"fid_test needs at least 2 real test images of '{self.ctx.domains[target]}'")
        self.real = fidm.FeatureSet.from_features(self.inception(real))
        self.features: list[np.ndarray] = []

    def update(self, fakes, per_input):
        self.features.append(self.inception(fakes[::per_input]))  # output 0 of each input: a random-z sample

    def task_result(self):
        fake = np.concatenate(self.features)
        if len(fake) < 2:
            raise MetricError("fid_test needs at least 2 test inputs")
        return {
            "fid_test": {
                "value": self.real.fid_to(fidm.FeatureSet.from_features(fake)),
                "fake": len(fake),
                "real": self.real.n,
            }
        }

    def summaries(self):
        return [("fid_test", lambda r: r["fid_test"]["value"] if "fid_test" in r else None)]

    def protocols(self):
        return {
            "fid_test": {
                "fake": "the first output (random z) of every test input",
                "real": "every real test image of the target (the same split as the inputs)",
                "features": "torch-fidelity inception-v3-compat, 2048-d pool (the report names "
                "pytorch-fid: same Inception graph, different port)",
                "bias": "FID grows as N falls; with N < 2048 compare only at equal N",
            }
        }

    def weights(self):
        return {"inception": self.inception.info()}
