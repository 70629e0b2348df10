"""Colour of translations judged by colour alone, independently of gmdrit's CNN classifier.

Every image becomes a *colour histogram*: the share of its pixels in each of :data:`HUE_BINS` hue bins of
360 / HUE_BINS degrees, counting only pixels with some colour (HSV saturation and value at least
:data:`MIN_SATURATION` and :data:`MIN_VALUE`), plus one last bin for the remaining grey, white or black pixels.
The shares sum to 1. A domain's *prototype* is the mean histogram of its training images.

* ``hue_match``: an image takes a domain's colours when its histogram is nearer (L1) that domain's prototype than
  any other domain's. The metric is the share of translations nearer the target's prototype; the real line is
  the same share for the target's real images, so it shows how well colour alone tells the domains apart.
* ``foreign_hue``: the share of an image's pixels in the hues the target's training images hardly have (bins
  holding less than :data:`FOREIGN_MASS` of the prototype's colour), such as a cyan cast on an orange photo,
  over the same share of the target's real images (1 = as much as photos have).
"""

from __future__ import annotations

import torch

#: hue bins of 20 degrees: red, orange and yellow fall in different bins
HUE_BINS = 18
#: a pixel counts as coloured from this HSV saturation (max - min) / max ...
MIN_SATURATION = 0.2
#: ... and this HSV value (max channel, 0..1); darker or greyer pixels go to the last, colourless bin
MIN_VALUE = 0.2
#: a hue bin is foreign to a domain when it holds less than this share of its prototype's coloured pixels
FOREIGN_MASS = 0.01


def hue_degrees(rgb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """float N x 3 x H x W in [0, 1] -> hue in degrees [0, 360), saturation and value (N x H x W each), HSV."""
    top, _ = rgb.max(dim=1)
    bottom, _ = rgb.min(dim=1)
    spread = top - bottom
    r, g, b = rgb.unbind(dim=1)
    safe = spread.clamp_min(1e-12)
    green_or_blue = torch.where(top == g, (b - r) / safe + 2.0, (r - g) / safe + 4.0)
    hue = torch.where(top == r, torch.remainder((g - b) / safe, 6.0), green_or_blue)
    hue = torch.where(spread > 0, hue * 60.0, torch.zeros_like(hue))
    saturation = torch.where(top > 0, spread / top.clamp_min(1e-12), torch.zeros_like(top))
    return hue, saturation, top


def colour_histograms(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x 3 x H x W -> float64 N x (HUE_BINS + 1): the share of pixels per hue bin, the last bin colourless."""
    rgb = images.to(torch.float64) / 255.0
    hue, saturation, value = hue_degrees(rgb)
    coloured = (saturation >= MIN_SATURATION) & (value >= MIN_VALUE)
    bins = (hue * (HUE_BINS / 360.0)).long().clamp(0, HUE_BINS - 1)
    bins = torch.where(coloured, bins, torch.full_like(bins, HUE_BINS)).flatten(1)
    counts = torch.zeros(len(images), HUE_BINS + 1, dtype=torch.float64)
    counts.scatter_add_(1, bins, torch.ones_like(bins, dtype=torch.float64))
    return counts / bins.shape[1]


def nearest_prototype(histograms: torch.Tensor, prototypes: torch.Tensor) -> torch.Tensor:
    """N x B histograms, D x B prototypes -> N indices of the nearest prototype (L1; the lower index on a tie)."""
    return torch.cdist(histograms, prototypes, p=1).argmin(dim=1)


def foreign_bins(prototype: torch.Tensor) -> torch.Tensor:
    """B prototype -> bool B: the hue bins (never the colourless one) with less than FOREIGN_MASS of its colour."""
    hues = prototype[:HUE_BINS]
    foreign = hues < FOREIGN_MASS * hues.sum()
    return torch.cat([foreign, torch.tensor([False])])


def foreign_share(histograms: torch.Tensor, foreign: torch.Tensor) -> torch.Tensor:
    """N x B histograms -> N: the share of each image's pixels in the ``foreign`` bins."""
    return histograms[:, foreign].sum(dim=1)


def hue_match_share(outputs: torch.Tensor, target: int, prototypes: torch.Tensor) -> float:
    """Share of uint8 ``outputs`` (N x 3 x H x W) whose colour histogram is nearest prototype ``target``."""
    return float((nearest_prototype(colour_histograms(outputs), prototypes) == target).double().mean())
