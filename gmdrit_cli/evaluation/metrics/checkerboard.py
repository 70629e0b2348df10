"""The grid pattern of upsampling layers, measured in the frequency domain.

A generator that doubles the resolution twice with transposed convolutions whose kernel does not divide by the
stride prints a pattern that repeats every 2 and every 4 pixels. All the power of such a pattern lies at the
spatial frequencies that are multiples of a quarter of the sampling rate on both axes, the *grid frequencies*:
``(ky, kx)`` with ``ky`` in ``{0, H/4, H/2, 3H/4}`` and ``kx`` in ``{0, W/4, W/2, 3W/4}``, less the mean (0, 0).
This module measures the share of an image's luminance power (mean removed) at those 15 frequencies; the
``checkerboard`` metric divides the outputs' mean share by that of real images of the same size, so 1 means "as
much as photos have", and a visible grid gives several times more.
"""

from __future__ import annotations

from functools import lru_cache

import torch

#: Rec. 601 luma weights (R, G, B)
LUMA = (0.299, 0.587, 0.114)
#: the periods (pixels) whose frequencies are measured: two x2 upsamplings repeat every 2 and every 4 pixels
GRID_PERIOD = 4


def luminance(images: torch.Tensor) -> torch.Tensor:
    """uint8 (or float in 0..255) N x 3 x H x W -> float64 N x H x W luma."""
    x = images.to(torch.float64)
    return LUMA[0] * x[:, 0] + LUMA[1] * x[:, 1] + LUMA[2] * x[:, 2]


@lru_cache(maxsize=16)
def grid_mask(height: int, width: int, period: int = GRID_PERIOD) -> torch.Tensor:
    """float64 H x W: 1 at the FFT bins of every pattern that repeats every ``period`` pixels on both axes (the
    multiples of ``size / period``, rounded where the size does not divide), 0 elsewhere and at (0, 0)."""
    rows = sorted({round(j * height / period) % height for j in range(period)})
    cols = sorted({round(j * width / period) % width for j in range(period)})
    mask = torch.zeros(height, width, dtype=torch.float64)
    mask[torch.tensor(rows)[:, None], torch.tensor(cols)[None, :]] = 1.0
    mask[0, 0] = 0.0
    return mask


def grid_power_share(images: torch.Tensor) -> torch.Tensor:
    """Per image, the share of its luminance power (mean removed) at the grid frequencies: N x 3 x H x W -> N.

    An image without any variation has no power and a share of 0."""
    y = luminance(images)
    y = y - y.mean(dim=(1, 2), keepdim=True)
    power = torch.fft.fft2(y).abs().square()
    total = power.sum(dim=(1, 2))
    grid = (power * grid_mask(y.shape[1], y.shape[2])).sum(dim=(1, 2))
    return torch.where(total > 0, grid / total.clamp_min(1e-300), torch.zeros_like(total))


def checkerboard_ratio(outputs: torch.Tensor, real: torch.Tensor) -> float:
    """Mean grid-power share of ``outputs`` over that of ``real`` (both N x 3 x H x W, the same H x W)."""
    if outputs.shape[2:] != real.shape[2:]:
        raise ValueError(f"outputs {tuple(outputs.shape[2:])} and real images {tuple(real.shape[2:])} differ in size")
    return float(grid_power_share(outputs).mean() / grid_power_share(real).mean())
