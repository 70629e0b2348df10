"""Loss terms as plain tensor functions (MDMM's reductions are the official code's; docs/mdmm.md)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..plain import PLAIN_CHROMA
from ..training.shard import batch_sum_scale


def global_sum(partial: torch.Tensor) -> torch.Tensor:
    """A sum over this process's rows, scaled so that the mean over the processes sharing a batch is the
    sum over the whole batch (one process: unchanged)."""
    scale = batch_sum_scale()
    return partial if scale == 1 else partial * scale


def adversarial(logits: torch.Tensor, real: bool) -> torch.Tensor:
    """MDMM's GAN loss: BCE against 1 (real) or 0 (fake), mean over each sample's map, summed over the batch.

    logits: N x 1 x H x W realness logits. Returns a scalar. Summing over samples (not averaging) is
    what the official code does; it doubles the weight of these terms at batch size 2. With a batch split
    across processes, a partial sum scaled to the global batch (:func:`gmdrit_cli.training.shard.batch_sum_scale`).
    """
    logits = logits.float()  # losses are reduced in fp32 even under autocast
    target = torch.ones_like(logits) if real else torch.zeros_like(logits)
    per_element = F.binary_cross_entropy_with_logits(logits, target, reduction="none")
    return global_sum(per_element.flatten(1).mean(dim=1).sum())


def domain_classification(logits: torch.Tensor, domains_onehot: torch.Tensor) -> torch.Tensor:
    """BCE-with-logits of N x C domain logits against the N x C one-hot domains, mean over N x C."""
    return F.binary_cross_entropy_with_logits(logits.float(), domains_onehot.float())


def kl_standard_normal(mean: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    """KL(N(mean, exp(logvar)) || N(0, I)) summed over batch and dimensions (MDMM's reduction)."""
    mean, logvar = mean.float(), logvar.float()
    return global_sum(-0.5 * torch.sum(1 + logvar - mean.pow(2) - logvar.exp()))


def content_penalty(content: torch.Tensor) -> torch.Tensor:
    """MDMM's content 'KL': mean of the squared content code over all elements."""
    return content.float().pow(2).mean()


def l1(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    return (a.float() - b.float()).abs().mean()


#: chroma (max - min of R, G, B in [0, 1]) from which a pixel counts as coloured: white, grey and black pixels of
#: photos sit below 0.05, apples and oranges above 0.3 (gmdrit_cli.plain, which model.keep_plain uses too)
NEUTRAL_CHROMA = PLAIN_CHROMA


def neutral_weights(images: torch.Tensor) -> torch.Tensor:
    """How colourless each pixel is: images N x 3 x S x S in [-1, 1] -> N x 1 x S x S, 1 at chroma 0 falling
    linearly to 0 at :data:`NEUTRAL_CHROMA` (and above)."""
    rgb = images.float() * 0.5 + 0.5
    chroma = rgb.amax(dim=1, keepdim=True) - rgb.amin(dim=1, keepdim=True)
    return (1.0 - chroma / NEUTRAL_CHROMA).clamp(min=0.0)


def neutral_change(source: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """How much a translation changed its input's colourless pixels: the mean over pixels of
    ``neutral_weights(source) * mean over RGB of |fake - source|``; source, fake N x 3 x S x S in [-1, 1].

    0 when every white, grey or black pixel is kept; coloured pixels (the object whose colour makes the domain)
    are free. Against mode seeking and the latent regression, which reward any change a random attribute makes,
    and find the largest in the background (a white background turned olive or teal: docs/results.md)."""
    weights = neutral_weights(source).detach()
    return (weights * (fake.float() - source.float()).abs().mean(dim=1, keepdim=True)).mean()


#: chroma (opponent red-green, yellow-blue length, RGB in [0, 1]) from which a pixel is part of the coloured subject
SUBJECT_CHROMA = 0.15


def subject_colour(images: torch.Tensor, sources: torch.Tensor) -> torch.Tensor:
    """Mean opponent colour (lightness, red-green, yellow-blue; RGB in [0, 1]) of ``images`` N x 3 x S x S over
    the coloured pixels of ``sources`` (N x 3 x S x S, both in [-1, 1]; the subject the image translates) -> N x 3,
    differentiable in ``images``. A source without a coloured pixel averages all of them. The measure of
    ``loss.match_encoded_colour`` and of the colour gate (:mod:`gmdrit_cli.inference.gate_fit`)."""
    rgb, src = images.float() * 0.5 + 0.5, sources.detach().float() * 0.5 + 0.5
    r, g, b = rgb.unbind(1)
    colour = torch.stack([(r + g + b) / 3, r - g, (r + g) / 2 - b], dim=1)
    rg, yb = src[:, 0] - src[:, 1], (src[:, 0] + src[:, 1]) / 2 - src[:, 2]
    mask = ((rg.square() + yb.square()).sqrt() >= SUBJECT_CHROMA).float()  # N x S x S
    mask = torch.where(mask.flatten(1).sum(1).view(-1, 1, 1) > 0, mask, torch.ones_like(mask))
    return (colour * mask[:, None]).flatten(2).sum(2) / mask.flatten(1).sum(1)[:, None]


#: lightness (mean of R, G, B in [0, 1]) under which a translated pixel counts as dark, and over which an input's
#: pixel counts as lit: a burnt-looking draw paints black patches where the input's fruit is lit (docs/results.md)
DARK_LIGHTNESS = 0.2
LIT_LIGHTNESS = 0.26


def dark_patches(sources: torch.Tensor, fakes: torch.Tensor) -> torch.Tensor:
    """How much of its input's lit, coloured subject a translation paints dark: per image the mean over the pixels of
    ``sources`` that are coloured (chroma >= :data:`SUBJECT_CHROMA`) and lit (lightness > :data:`LIT_LIGHTNESS`) of
    ``relu(DARK_LIGHTNESS - lightness(fake)) / DARK_LIGHTNESS`` (0 where the translation keeps them lighter than
    that, 1 where it paints them black), then the mean over images. sources, fakes N x 3 x S x S in [-1, 1] ->
    a scalar, differentiable in ``fakes``; an input without such pixels adds 0."""
    src, rgb = sources.detach().float() * 0.5 + 0.5, fakes.float() * 0.5 + 0.5
    rg, yb = src[:, 0] - src[:, 1], (src[:, 0] + src[:, 1]) / 2 - src[:, 2]
    mask = (((rg.square() + yb.square()).sqrt() >= SUBJECT_CHROMA) & (src.mean(1) > LIT_LIGHTNESS)).float()
    depth = (DARK_LIGHTNESS - rgb.mean(1)).clamp(min=0.0) / DARK_LIGHTNESS  # N x S x S
    per_image = (depth * mask).flatten(1).sum(1) / mask.flatten(1).sum(1).clamp(min=1.0)
    return per_image.mean()


def mode_seeking(
    fake1: torch.Tensor, fake2: torch.Tensor, z1: torch.Tensor, z2: torch.Tensor, eps: float = 1e-5
) -> torch.Tensor:
    """DRIT++'s mode-seeking (diversity-sensitive) term: ``1 / (mean|fake1 - fake2| / mean|z1 - z2| + eps)``.

    fake1, fake2: N x 3 x S x S, the same inputs generated with attributes z1, z2 (N x nz). Minimising it
    makes outputs move apart when their attributes do, so the generator cannot ignore z (the mode
    collapse this term was introduced against). The attributes are constants of the step.
    """
    ratio = (fake1.float() - fake2.float()).abs().mean() / (z1.float() - z2.float()).abs().mean()
    return 1.0 / (ratio + eps)
