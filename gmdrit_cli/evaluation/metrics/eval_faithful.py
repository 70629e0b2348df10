"""Faithfulness and the use of z in `gmdrit eval`.

* ``paired_l1`` / ``paired_msssim`` (paired families, e.g. BicycleGAN's edges -> photo): every test input
  translated with the attribute encoded from its own ground-truth output (``encode_reference``: BicycleGAN's
  E(B) mean), compared with that ground truth: mean absolute difference (pixel / 255) and MS-SSIM (the scale rule of
  ``msssim_diversity.py``). Real line: the input itself against the ground truth (an edge map is far from a photo:
  the floor a model must beat).
* ``z_sensitivity`` (every family): how much the output moves per unit of attribute. For each of the first
  :data:`Z_INPUTS` inputs, two random attributes of the target are drawn (the model's prior at the evaluation's
  temperature) and the attribute is walked in :data:`Z_STEPS` equal steps from one to the other (the mixture
  component, where there is one, kept); per step the mean absolute output change (pixel / 255) over the L2 length
  of the step. A model that ignores z scores 0.
"""

from __future__ import annotations

import numpy as np
import torch

from . import MetricError
from .evaluator import Evaluator, TableColumn, fmt, task_temperature, to_float
from .images import quantise

#: inputs per task of ``z_sensitivity`` (the first ones, sorted by file name)
Z_INPUTS = 50
#: steps of the walk between two attributes
Z_STEPS = 4


def _mean_cell(key: str):
    def cell(row: dict, real: bool) -> str:
        value = row.get(key)
        return "-" if value is None else f"{value['mean']:.4f}"

    return cell


class FaithfulnessScores(Evaluator):
    """``paired_l1`` and ``paired_msssim``: encoded-attribute outputs against the ground truth (paired data)."""

    reference_order = 7
    table_columns = {
        "paired_l1": TableColumn(
            "L1 to truth", 13, _mean_cell("paired_l1"), lambda m, real: fmt(m.get("paired_l1"), 4)
        ),
        "paired_msssim": TableColumn(
            "MS-SSIM to truth", 14, _mean_cell("paired_msssim"), lambda m, real: fmt(m.get("paired_msssim"), 4)
        ),
    }

    def __init__(self, ctx, names):
        super().__init__(ctx, names)
        if not ctx.model.capabilities.paired_data:
            raise MetricError(
                f"{' and '.join(names)} compare outputs with their ground truth, which only paired "
                f"data has; {ctx.cfg.model.family} is unpaired: leave them out of --metrics"
            )

    def _scores(self, inputs: torch.Tensor, truth: torch.Tensor) -> dict:
        from .eval_reconstruction import reconstruction_scores

        l1 = (inputs.double() - truth.double()).abs().flatten(1).mean(dim=1) / 255.0
        _, msssim = reconstruction_scores(truth, inputs)
        out = {}
        if "paired_l1" in self.names:
            out["paired_l1"] = {"mean": float(l1.mean()), "images": len(l1)}
        if "paired_msssim" in self.names:
            out["paired_msssim"] = {"mean": float(msssim.mean()), "images": len(msssim)}
        return out

    def reference(self, target, real):
        sources = [s for s, t in self.ctx.model.capabilities.tasks(len(self.ctx.domains)) if t == target]
        return self._scores(self.ctx.test_images[sources[0]], real) if sources else {}

    def start_task(self, source, target):
        ctx, model, size = self.ctx, self.ctx.model, self.options.batch_size
        inputs, truth = ctx.test_images[source], ctx.test_images[target]
        outputs = []
        with torch.no_grad():
            for b in range(0, len(inputs), size):
                domains = torch.full((len(truth[b : b + size]),), target, dtype=torch.long, device=ctx.device)
                attributes = model.encode_reference(to_float(truth[b : b + size], ctx.device), domains)
                outputs.append(
                    quantise(model.translate(to_float(inputs[b : b + size], ctx.device), target, attributes))
                )
        self.result = self._scores(torch.cat(outputs), truth)

    def task_result(self):
        return self.result

    def summaries(self):
        return [
            (k, lambda r, k=k: r[k]["mean"] if k in r else None)
            for k in ("paired_l1", "paired_msssim")
            if k in self.names
        ]

    def protocols(self):
        return {
            "faithfulness": {
                "outputs": "each test input translated with the attribute encoded from its own ground truth "
                "(encode_reference of the target side), saved 8-bit values",
                "paired_l1": "mean over inputs of the mean |output - truth| of pixel / 255",
                "paired_msssim": "mean over inputs of MS-SSIM(output, truth) (pytorch-msssim terms, window 11)",
                "reference_line": "the input itself against the truth",
            }
        }


class ZSensitivityScores(Evaluator):
    """``z_sensitivity``: mean output change per unit of attribute along a line between two random attributes."""

    reference_order = 8
    table_columns = {
        "z_sensitivity": TableColumn(
            "Δout/Δz",
            15,
            lambda r, real: "-" if "z_sensitivity" not in r else f"{r['z_sensitivity']['mean']:.4f}",
            lambda m, real: fmt(m.get("z_sensitivity"), 4),
        )
    }

    def start_task(self, source, target):
        ctx, model = self.ctx, self.ctx.model
        inputs = ctx.test_images[source][:Z_INPUTS]
        gen = torch.Generator(device=ctx.device).manual_seed(self.options.seed * 1000 + 999)
        t = torch.linspace(0, 1, Z_STEPS + 1, device=ctx.device)
        per_input = []
        with torch.no_grad():
            for image in inputs:
                temperature = task_temperature(self.options, ctx.domains[target])
                z, y = model.sample_attributes(target, 2, None, gen, temperature)
                path = (1 - t)[:, None] * z[0] + t[:, None] * z[1]  # (steps + 1) x nz
                code = y[:1].expand(len(path), -1)
                out = quantise(model.translate(to_float(image[None], ctx.device), target, (path, code)))
                out = out.double() / 255.0
                change = (out[1:] - out[:-1]).abs().flatten(1).mean(dim=1)
                step = (path[1:] - path[:-1]).double().norm(dim=1).cpu().clamp_min(1e-12)
                per_input.append(float((change / step).mean()))
        self.values = per_input

    def task_result(self):
        return {"z_sensitivity": {"mean": float(np.mean(self.values)), "inputs": len(self.values), "steps": Z_STEPS}}

    def summaries(self):
        return [("z_sensitivity", lambda r: r["z_sensitivity"]["mean"] if "z_sensitivity" in r else None)]

    def protocols(self):
        return {
            "z_sensitivity": {
                "inputs": f"the first {Z_INPUTS} inputs of each task",
                "path": f"two random attributes of the target (prior at the evaluation's temperature, torch.Generator "
                f"seed * 1000 + 999), {Z_STEPS} equal linear steps between them, the component of the first",
                "value": "per step mean |output change| (pixel / 255) over the L2 length of the step; mean over steps, "
                "then over inputs",
            }
        }
