"""Plain (colourless) pixels and ``model.keep_plain``: without torch, so that the ONNX path can use it too.

A pixel's *chroma* is max - min of its R, G, B on a 0..1 scale: white, grey and black pixels of photos sit below
0.05, apples and oranges above 0.3. Its *plain weight* is 1 at chroma 0 falling linearly to 0 at
:data:`PLAIN_CHROMA`. ``model.keep_plain`` composites each translation with its input by that weight, so a white
or dark background stays as it was while the coloured object is translated (the generators' random attributes
also move the overall tone, which recolours plain backgrounds: docs/results.md).
"""

from __future__ import annotations

#: chroma from which a pixel counts as coloured (plain weight 0)
PLAIN_CHROMA = 0.2


def _chroma(rgb):
    """N x 3 x S x S -> N x 1 x S x S: max - min over the channels (torch tensors and numpy arrays)."""
    if hasattr(rgb, "amax"):  # a torch tensor
        return rgb.amax(dim=1, keepdim=True) - rgb.amin(dim=1, keepdim=True)
    return rgb.max(axis=1, keepdims=True) - rgb.min(axis=1, keepdims=True)


def plain_weight(images):
    """How colourless each pixel is: images N x 3 x S x S in [-1, 1] -> N x 1 x S x S in [0, 1]."""
    return (1.0 - _chroma(images * 0.5 + 0.5) / PLAIN_CHROMA).clip(0.0, 1.0)


def keep_plain(source, output, strength: float):
    """``output + strength * plain_weight(source) * (source - output)``: source and output N x 3 x S x S in
    [-1, 1], both torch tensors or both numpy arrays (output row i translates source row i)."""
    if strength == 0:
        return output
    return output + (plain_weight(source) * strength) * (source - output)
