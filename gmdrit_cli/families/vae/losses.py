"""The single-encoder VAE's loss as the report's code computes it (the VAE report [R3]; docs/vae.md).

Per batch of B target images u in [0, 1] and their reconstructions r (the decoder's Tanh output, in (-1, 1);
half of that range is never a target, as in the report's code):

    loss = MSE(r, u) + (1 - MS-SSIM(r, u)) + kl_weight * KL

* MSE: the mean over B x 3 x H x W;
* MS-SSIM: ``pytorch_msssim.ms_ssim`` with data range 1, the mean over batch and channels (Gaussian window
  11, sigma 1.5, 5 scales). The package refuses images of 160 px or less; smaller images (tests, the CPU
  demo) use gmdrit's scale rule (fewer scales, same window and terms; ``metrics/msssim_diversity.py``);
* KL: the batch mean of -1/2 sum_j (1 + log sigma_j^2 - mu_j^2 - sigma_j^2), >= 0 (the report's Eq. 1 has
  the opposite sign and no 1/2; gmdrit follows the code, a true KL).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ...evaluation.metrics.msssim_diversity import WEIGHTS, scale_rule
from ...evaluation.metrics.msssim_diversity import ms_ssim as _ms_ssim_scales


def gaussian_kl(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) summed over the J latent dimensions, averaged over the batch.

    mu, logvar: B x J; returns a scalar >= 0."""
    return (-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()).sum(dim=1)).mean()


def ms_ssim(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """MS-SSIM of two B x 3 x S x S batches with data range 1, the mean over batch and channels (scalar,
    differentiable): the pytorch-msssim package itself when it accepts the size (S > 160), else the scale rule."""
    side = min(x.shape[-2:])
    levels, window, weights = scale_rule(side)
    if levels == len(WEIGHTS):
        from pytorch_msssim import ms_ssim as package_ms_ssim

        return package_ms_ssim(x, y, data_range=1.0, size_average=True)
    return _ms_ssim_scales(x, y, levels, window, weights, data_range=1.0).mean()


def vae_loss(
    reconstruction: torch.Tensor, target: torch.Tensor, mu: torch.Tensor, logvar: torch.Tensor, kl_weight: float
) -> dict[str, torch.Tensor]:
    """The terms and their total (``loss``) for reconstructions and targets B x 3 x S x S (targets in [0, 1])
    and the posterior mu, logvar B x J."""
    mse = F.mse_loss(reconstruction, target)
    msssim = 1.0 - ms_ssim(reconstruction, target)
    kl = gaussian_kl(mu, logvar)
    return {"loss": mse + msssim + kl_weight * kl, "mse": mse, "msssim": msssim, "kl": kl}
