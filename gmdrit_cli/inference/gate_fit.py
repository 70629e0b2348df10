"""Fitting the colour gate of an export (``gmdrit export --colour-gate Q [--gate-by chroma]``;
:mod:`gmdrit_cli.colour_gate`)."""

from __future__ import annotations

import numpy as np
import torch

from ..colour_gate import DomainGate
from ..families.base import ModelFamily
from ..families.drit_losses import subject_colour

#: prior draws per target domain whose translations fit the line from z to colour (a fixed-seed sample)
GATE_DRAWS = 256
#: of which the last quarter is held out to report how well the line predicts (R^2), then all refit
GATE_HELD_OUT = 64
#: training images of the other domains each draw translates
GATE_SOURCES = 16
#: training images of the target domain whose colours make its region (the first, by file name)
GATE_TARGETS = 128
#: target-domain training images whose encoded attributes set a chroma gate's direction and threshold
GATE_ENCODED = 64
#: the central share of the target photos' subject lightness a chroma gate's lightness band holds
GATE_LIGHTNESS_SHARE = 0.9
#: draws translated at once (each with every source image)
GATE_BATCH_DRAWS = 8


def _numpy(x: torch.Tensor) -> np.ndarray:
    return x.detach().float().cpu().numpy().astype(np.float64)


@torch.no_grad()
def draw_colours(model: ModelFamily, sources: torch.Tensor, z: torch.Tensor, condition: torch.Tensor) -> np.ndarray:
    """The mean colour each draw gives the sources' coloured pixels: sources n x 3 x S x S in [-1, 1], draws z M x
    nz and condition M x D -> M x 3 (:func:`~gmdrit_cli.families.drit_losses.subject_colour` over the n
    translations)."""
    content, n, colours = model.encode_content(sources), sources.shape[0], []
    for _, out in model.translations_of_draws(content, z, condition, GATE_BATCH_DRAWS):
        for one in out.clamp(-1, 1).split(n):
            colours.append(_numpy(subject_colour(one, sources).mean(dim=0)))  # the mean over the sources
    return np.stack(colours)


def _least_squares(z: np.ndarray, colours: np.ndarray) -> np.ndarray:
    design = np.concatenate([z, np.ones((len(z), 1))], axis=1)
    return np.linalg.lstsq(design, colours, rcond=None)[0]  # (nz + 1) x 3


def _photo_colours(targets: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
    """The colours N x 3 of ``targets`` (the target domain's training photos) and their precision 3 x 3."""
    real = _numpy(subject_colour(targets, targets))
    return real, np.linalg.inv(np.cov(real.T) + 1e-6 * np.eye(3))


@torch.no_grad()
def encoded_colours(model: ModelFamily, domain: int, sources: torch.Tensor, targets: torch.Tensor) -> np.ndarray:
    """The colours E x 3 that the encoded attributes of the first :data:`GATE_ENCODED` ``targets`` (photos of
    ``domain``) give ``sources``: where the model itself puts the target's hue."""
    targets = targets[:GATE_ENCODED].to(model.device)
    z, condition = model.encode_reference(targets, torch.full((len(targets),), domain, device=model.device))
    return draw_colours(model, sources, z, condition)


def _chroma_reference(
    model: ModelFamily, domain: int, sources: torch.Tensor, targets: torch.Tensor
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A chroma gate's reference colours (:func:`encoded_colours`, E x 3), its direction (3: their mean's red-green
    and yellow-blue, unit length) and its lightness band (2: the central :data:`GATE_LIGHTNESS_SHARE` of the
    ``targets`` photos' own lightness)."""
    reference = encoded_colours(model, domain, sources, targets)
    direction = np.concatenate([[0.0], reference.mean(axis=0)[1:]])
    direction /= max(float(np.linalg.norm(direction)), 1e-12)
    tail = (1 - GATE_LIGHTNESS_SHARE) / 2
    return reference, direction, np.quantile(_photo_colours(targets)[0][:, 0], [tail, 1 - tail])


def fit_domain_gate(
    model: ModelFamily, domain: int, sources: torch.Tensor, targets: torch.Tensor, share: float, kind: str = "region"
) -> dict:
    """The ``colour_gate`` record entry of target ``domain``: the least-squares line from z to the colour a draw
    gives ``sources`` (training images of the other domains, n x 3 x S x S in [-1, 1]) and the region of
    ``kind``: ``region``, the mean and precision of the colours of ``targets`` (training images of ``domain``) and
    the squared distance within which ``share`` of those photos lie; ``chroma``, the direction of the mean colour
    the targets' encoded attributes give the sources (red-green and yellow-blue only), the shortfall along it
    that ``share`` of those encoded-attribute colours pass, and the band holding the central
    :data:`GATE_LIGHTNESS_SHARE` of the targets' lightness."""
    generator, sources = torch.Generator().manual_seed(0), sources.to(model.device)
    z, condition = model.sample_attributes(domain, GATE_DRAWS, None, generator, 1.0)
    colours = draw_colours(model, sources, z, condition)
    zn, fit = _numpy(z), GATE_DRAWS - GATE_HELD_OUT
    if kind == "chroma":
        (reference, direction, band), precision = _chroma_reference(model, domain, sources, targets), None
    else:
        (reference, precision), direction, band = _photo_colours(targets), None, None
    held_out = DomainGate(_least_squares(zn[:fit], colours[:fit]), reference.mean(axis=0), precision, 0.0, direction)
    r2 = 1 - (colours[fit:] - held_out.predict(zn[fit:])).var(axis=0) / colours[fit:].var(axis=0).clip(min=1e-12)
    gate = DomainGate(_least_squares(zn, colours), held_out.centre, precision, 0.0, direction)
    gate.limit = float(np.quantile(gate.colour_distances(reference), share))  # the band is set after: chroma alone
    gate.lightness = band
    accepted = float((gate.distances(zn) <= gate.limit).mean())
    region = (
        {
            "direction": direction.round(6).tolist(),
            "encoded_images": len(reference),
            "lightness": band.round(6).tolist(),
            "target_images": int(targets.shape[0]),
        }
        if kind == "chroma"
        else {"precision": precision.round(4).tolist(), "target_images": int(targets.shape[0])}
    )
    return {
        "domain": domain,
        "weight": gate.weight.round(6).tolist(),
        "centre": gate.centre.round(6).tolist(),
        **region,
        "limit": round(gate.limit, 6),
        "share": share,
        "draws": GATE_DRAWS,
        "source_images": int(sources.shape[0]),
        "held_out_r2": [round(float(r), 3) for r in r2],
        "kept_at_temperature_1": round(accepted, 3),
    }


#: what each kind of gate keeps, in the words of the export's ``colour_gate`` record
GATE_RULES = {
    "region": "a random attribute is kept when the mean colour its translation is predicted to give the input's "
    "coloured pixels (a least-squares line from z, fitted on {draws} draws x {sources} training images of the other "
    "domain) lies inside the region holding the share (of its domain's entry) of the target domain's training "
    "photos' colours; else it is drawn again",
    "chroma": "a random attribute is kept when the mean colour its translation is predicted to give the input's "
    "coloured pixels (a least-squares line from z, fitted on {draws} draws x {sources} training images of the other "
    "domain) carries at least as much of the target's hue (red-green and yellow-blue, along the mean colour the "
    "target domain's training images' own encoded attributes give those images) as the share (of its domain's "
    "entry) of those encoded-attribute translations, and its lightness lies within the central {band:g} of the "
    "target domain's training photos' lightness; else it is drawn again",
}


def fit_colour_gate(
    model: ModelFamily, images: list[torch.Tensor], shares: dict[int, float], kind: str, names: list[str]
) -> dict:
    """The export's ``colour_gate`` record: one entry per domain d of ``shares`` (index -> share), ``images[d]``
    the training images of domain d (N_d x 3 x S x S in [-1, 1]); each domain's gate is fitted on the first
    :data:`GATE_SOURCES` images of the other domains translated into it, and on its own (all of them for
    ``region`` and for a chroma gate's lightness band, the first :data:`GATE_ENCODED` encoded for its hue).
    ``names``: the domains' names, which the record's ``share`` uses when the shares differ."""
    entries = []
    for d, share in sorted(shares.items()):
        sources = torch.cat([x[:GATE_SOURCES] for other, x in enumerate(images) if other != d])
        entries.append(fit_domain_gate(model, d, sources, images[d], share, kind))
    values = set(shares.values())
    one = len(values) == 1 and len(shares) == len(images)
    return {
        "share": values.pop() if one else {names[d]: share for d, share in sorted(shares.items())},
        "kind": kind,
        "rule": GATE_RULES[kind].format(draws=GATE_DRAWS, sources=GATE_SOURCES, band=GATE_LIGHTNESS_SHARE),
        "domains": entries,
    }
