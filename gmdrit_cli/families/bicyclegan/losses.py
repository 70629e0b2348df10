"""BicycleGAN's loss terms as plain tensor functions, with the official reductions (docs/bicyclegan.md).

Every function reduces in fp32, whatever precision the networks ran in.
"""

from __future__ import annotations

import torch


def lsgan(maps: list[torch.Tensor] | torch.Tensor, target: float) -> torch.Tensor:
    """LSGAN against ``target`` (1 real, 0 fake): the sum over discriminator scales of the mean squared error
    over each scale's N x 1 x H_s x W_s map. A single map counts as one scale (the official criterion would
    iterate over its batch instead: docs/bicyclegan.md, differences)."""
    if isinstance(maps, torch.Tensor):
        maps = [maps]
    return sum((m.float() - target).pow(2).mean() for m in maps)


def discriminator_loss(real_maps: list[torch.Tensor], fake_maps: list[torch.Tensor]) -> torch.Tensor:
    """D's LSGAN loss: real towards 1 plus fake towards 0, each summed over scales; no 1/2 factor."""
    return lsgan(real_maps, 1.0) + lsgan(fake_maps, 0.0)


def kl_divergence(mu: torch.Tensor, logvar: torch.Tensor, reduction: str = "sum") -> torch.Tensor:
    """KL(N(mu, exp(logvar)) || N(0, I)) of h x nz posteriors: -1/2 sum(1 + logvar - mu^2 - exp(logvar)) over
    the batch and the latent dimensions (``sum``, official), or that sum divided by h (``batch_mean``)."""
    mu, logvar = mu.float(), logvar.float()
    total = -0.5 * torch.sum(1 + logvar - mu.pow(2) - logvar.exp())
    if reduction == "sum":
        return total
    if reduction == "batch_mean":
        return total / mu.shape[0]
    raise ValueError(f"kl reduction must be 'sum' or 'batch_mean', got {reduction!r}")


def l1_mean(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Mean absolute difference over every element (image L1 over h x 3 x H x W, latent L1 over h x nz)."""
    return (a.float() - b.float()).abs().mean()
