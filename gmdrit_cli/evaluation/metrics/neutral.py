"""Whether a translation keeps its input's plain parts plain, by colour alone.

A *colourless* pixel of the input has chroma (max - min of R, G, B on a 0..1 scale) below
:data:`COLOURLESS_CHROMA`: white, grey or black, as the plain backgrounds of product photos. A translation
*changes* such a pixel when its output differs by more than :data:`VISIBLE_CHANGE` on average over R, G, B (a white
background turned teal, olive or dark). ``neutral_change`` is the share of the input's colourless pixels the
translation changes, per image (images with fewer than :data:`MIN_COLOURLESS` colourless pixels are left out), in
percent. 0 = every plain pixel kept; a translation that recolours only the object scores near 0.
"""

from __future__ import annotations

import torch

#: a pixel is colourless below this chroma (photos' white, grey and black sit below 0.05; apples and oranges
#: above 0.3)
COLOURLESS_CHROMA = 0.1
#: ... and visibly changed when the output moves by more than this, mean over R, G, B on a 0..1 scale (about
#: 30 of 255)
VISIBLE_CHANGE = 0.12
#: images whose share of colourless pixels is below this have no plain part to keep and are left out
MIN_COLOURLESS = 0.01


def colourless_mask(images: torch.Tensor) -> torch.Tensor:
    """uint8 N x 3 x H x W -> bool N x H x W: the colourless pixels."""
    rgb = images.float() / 255.0
    return (rgb.amax(dim=1) - rgb.amin(dim=1)) < COLOURLESS_CHROMA


def neutral_change_shares(inputs: torch.Tensor, outputs: torch.Tensor) -> torch.Tensor:
    """uint8 N x 3 x H x W inputs and their outputs (same size) -> float64 shares in [0, 1] of each input's
    colourless pixels that its output visibly changes, for the inputs with at least :data:`MIN_COLOURLESS` of
    them (so possibly fewer than N values)."""
    plain = colourless_mask(inputs)
    moved = (outputs.float() - inputs.float()).abs().mean(dim=1) / 255.0 > VISIBLE_CHANGE
    counts = plain.flatten(1).sum(dim=1).double()
    changed = (plain & moved).flatten(1).sum(dim=1).double()
    keep = counts >= MIN_COLOURLESS * plain[0].numel()
    return changed[keep] / counts[keep]
