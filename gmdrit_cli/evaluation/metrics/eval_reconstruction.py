"""Reconstruction in `gmdrit eval`: every test image through the model back into its own domain.

The reconstruction of an image x of domain d is ``translate(x, d, encode_reference(x, d))``: the model's own
code of x decoded for d (the VAE: D_d(mu_E(x)); DRIT-style families: the self-reconstruction with x's own
attribute). Both sides are the saved 8-bit values; per domain the mean over images of

* ``recon_mse``: the mean squared difference on the [0, 1] scale (pixel / 255);
* ``recon_msssim``: MS-SSIM (pytorch-msssim terms, the scale rule of ``msssim_diversity.py``: the package's
  own 5 scales above 160 px, fewer below).

The VAE report [R3] gives no metric; gmdrit adds these two numbers beside FID/KID (docs/vae.md).
"""

from __future__ import annotations

import torch

from . import MetricError
from .evaluator import Evaluator, to_float
from .images import quantise


def reconstruction_scores(originals: torch.Tensor, reconstructions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image (MSE on [0, 1], MS-SSIM) of two uint8 N x 3 x S x S batches: two float64 tensors of N."""
    from .msssim_diversity import MSSSIMDiversity

    a = originals.double() / 255.0
    b = reconstructions.double() / 255.0
    mse = (a - b).pow(2).flatten(1).mean(dim=1)
    msssim = 1.0 - MSSSIMDiversity(originals.shape[-1]).distance(originals, reconstructions)
    return mse, msssim


class ReconstructionScores(Evaluator):
    section = "reconstruction"

    def __init__(self, ctx, names):
        super().__init__(ctx, names)
        model = ctx.model
        targets = {t for _, t in model.capabilities.tasks(len(ctx.domains))}
        if len(targets) < len(ctx.domains):  # e.g. BicycleGAN: one direction only
            raise MetricError(
                f"{', '.join(names)} decode each test image back into its own domain; this "
                f"{model.cfg.model.family} model translates into "
                f"{', '.join(repr(ctx.domains[t]) for t in sorted(targets))} only: leave "
                f"{', '.join(names)} out of --metrics"
            )

    def section_result(self, test_images: list[torch.Tensor]) -> dict:
        ctx, model = self.ctx, self.ctx.model
        size = self.options.batch_size
        out = {}
        with torch.no_grad():
            for d, images in enumerate(test_images):
                ctx.progress("reconstruction", d, len(test_images))
                mse, msssim = [], []
                for b in range(0, len(images), size):
                    x = to_float(images[b : b + size], ctx.device)
                    domains = torch.full((len(x),), d, dtype=torch.long, device=ctx.device)
                    rec = quantise(model.translate(x, d, model.encode_reference(x, domains)))
                    m, s = reconstruction_scores(images[b : b + size], rec)
                    mse.append(m)
                    msssim.append(s)
                row: dict = {"images": len(images)}
                if "recon_mse" in self.names:
                    row["recon_mse"] = float(torch.cat(mse).mean())
                if "recon_msssim" in self.names:
                    row["recon_msssim"] = float(torch.cat(msssim).mean())
                out[ctx.domains[d]] = row
        ctx.progress("reconstruction", len(test_images), len(test_images))
        return out

    def protocols(self) -> dict:
        return {
            "reconstruction": {
                "images": "test images of every domain (model test input), 8-bit",
                "reconstruction": "translate(x, d, encode_reference(x, d)) into x's own domain d, saved 8-bit values",
                "recon_mse": "mean over images of the mean squared difference of pixel / 255",
                "recon_msssim": "mean over images of MS-SSIM (pytorch-msssim terms, window 11, "
                "5 scales above 160 px, fewer below, data range 255)",
            }
        }
