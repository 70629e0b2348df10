"""GM-DRIT networks: MDMM's networks with a Gaussian-mixture attribute space (docs/gmdrit.md).

Notation: ``N`` batch, ``C`` number of domains, ``K`` number of mixture components
(``C * components_per_domain``), ``S`` crop size, ``s = S/4`` content-code resolution, ``nz`` attribute
length, ``T`` thumbnail side of p(x|z).

* :class:`MixtureAttributeEncoder` -- q(y|x) and q(z|x,y) on the MDMM attribute backbone, image only.
* :class:`MixtureGenerator` -- MDMM's generator conditioned on (z_c, z, y) plus the generative heads
  p(z|y) (learned prior per component) and p(x|z) (thumbnail MLP).
* :class:`AdaIN` -- optional style modulation after the generator's shared block (report 5.3.1).
* :func:`gumbel_softmax` -- soft or straight-through hard samples, with an optional ``torch.Generator``.

Pure ``nn.Module`` code: no I/O, optimisers or device logic.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from ...training import shard
from ..mdmm.nets import AttributeBackbone, Generator, assemble_networks

__all__ = [
    "VAR_FLOOR",
    "gumbel_softmax",
    "AttributeInference",
    "MixtureAttributeEncoder",
    "AdaIN",
    "GeneratorResult",
    "MixtureGenerator",
    "build_gmdrit_networks",
]

#: added to every softplus variance (q(z|x,y) and p(z|y)) so that log-variances stay finite even for
#: extreme pre-activations; far below any variance the model uses, and not a NaN mask.
VAR_FLOOR = 1e-6

#: width of the hidden layers of every GMVAE MLP (q(y|x), q(z|x,y), p(x|z)), as in the fork.
MLP_HIDDEN = 512


def gumbel_softmax(
    logits: torch.Tensor, tau: float, hard: bool = False, generator: torch.Generator | None = None, eps: float = 1e-20
) -> torch.Tensor:
    """A Gumbel-softmax sample ``N x K`` from ``N x K`` logits at temperature ``tau``.

    ``g = -log(-log(U + eps) + eps)``, ``U ~ Uniform[0, 1)`` drawn from ``generator`` (the global RNG
    when None), ``y = softmax((logits + g) / tau)``. ``hard=True`` returns the exact one-hot of the
    argmax in the forward pass with the soft sample's gradient (straight-through estimator:
    ``onehot + (y - y.detach())``, which is exactly the one-hot in value).
    """
    logits = logits.float()  # the noise and the softmax need fp32 even under autocast
    u = shard.rand(logits.shape, device=logits.device, dtype=logits.dtype, generator=generator)
    g = -torch.log(-torch.log(u + eps) + eps)
    y = F.softmax((logits + g) / tau, dim=-1)
    if hard:
        onehot = F.one_hot(y.argmax(dim=-1), y.shape[-1]).to(y.dtype)
        y = onehot + (y - y.detach())
    return y


def _mlp(cin: int, cout: int | None = None, hidden: int = MLP_HIDDEN) -> nn.Sequential:
    """Linear(cin, hidden) -> ReLU -> Linear(hidden, hidden) -> ReLU [-> Linear(hidden, cout)]."""
    layers: list[nn.Module] = [nn.Linear(cin, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU()]
    if cout is not None:
        layers.append(nn.Linear(hidden, cout))
    return nn.Sequential(*layers)


@dataclass
class AttributeInference:
    """Output of :class:`MixtureAttributeEncoder`.

    logits, prob: N x K (q(y|x) logits and softmax); y: N x K (the y given to q(z|x,y));
    mean, var: N x nz (q(z|x,y)); z: N x nz (reparameterised sample ``mean + eps * sqrt(var)``).
    """

    logits: torch.Tensor
    prob: torch.Tensor
    y: torch.Tensor
    mean: torch.Tensor
    var: torch.Tensor
    z: torch.Tensor


class MixtureAttributeEncoder(nn.Module):
    """Attribute encoder q(z, y | x) of GM-DRIT.

    forward(x: N x 3 x S x S, tau, hard, generator=None, *, y=None, argmax=False) -> AttributeInference.

    * backbone: MDMM's attribute trunk on the image alone (3 input channels; no tiled domain code, so the
      inferred y cannot copy the label: docs/gmdrit.md, difference 10) -> N x 4*width pooled feature;
    * ``features = softplus(fc(feature))``, N x nz. The feature width is ``nz`` (not 512): it is the
      fork's layer (MDMM's ``fc`` re-used by the report authors' code), so the layer shapes and parameter
      counts match the fork's, and with the report's nz = crop size (108 / 216) it is already wider
      than the 256-d pooled feature it comes from;
    * q(y|x): MLP(nz -> 512 -> 512) -> K logits -> Gumbel-softmax sample y at temperature ``tau``
      (straight-through one-hot when ``hard``);
    * q(z|x,y): MLP([features, y] -> 512 -> 512) -> mean (Linear) and var (softplus(Linear) + VAR_FLOOR)
      -> ``z = mean + eps * sqrt(var)``.

    ``y`` (N x K) overrides the sampled y (e.g. the domain code of the "integration" stage);
    ``argmax=True`` uses the one-hot of argmax q(y|x) (test time); ``sample=False`` returns ``z = mean``
    without drawing noise. ``generator`` drives the Gumbel and Gaussian noise (global RNG when None).
    """

    def __init__(self, num_components: int, nz: int, width: int = 64) -> None:
        super().__init__()
        self.num_components = num_components
        self.nz = nz
        self.backbone = AttributeBackbone(3, width)
        self.fc = nn.Linear(self.backbone.out_features, nz)
        self.qy = _mlp(nz, num_components)
        self.qz = _mlp(nz + num_components)
        self.qz_mean = nn.Linear(MLP_HIDDEN, nz)
        self.qz_var = nn.Linear(MLP_HIDDEN, nz)

    def forward(
        self,
        x: torch.Tensor,
        tau: float = 1.0,
        hard: bool = False,
        generator: torch.Generator | None = None,
        *,
        y: torch.Tensor | None = None,
        argmax: bool = False,
        sample: bool = True,
    ) -> AttributeInference:
        features = F.softplus(self.fc(self.backbone(x)))
        logits = self.qy(features)
        prob = F.softmax(logits, dim=-1)
        if y is None:
            if argmax:
                y = F.one_hot(logits.argmax(dim=-1), self.num_components).to(logits.dtype)
            else:
                y = gumbel_softmax(logits, tau, hard, generator)
        h = self.qz(torch.cat([features, y], dim=1))
        mean = self.qz_mean(h)
        var = F.softplus(self.qz_var(h)) + VAR_FLOOR
        if sample:
            noise = shard.randn(mean.shape, device=mean.device, dtype=mean.dtype, generator=generator)
            z = mean + noise * var.sqrt()
        else:
            z = mean
        return AttributeInference(logits, prob, y, mean, var, z)


class AdaIN(nn.Module):
    """Adaptive instance normalisation with style from an MLP (fixes the fork's gamma = beta: docs/gmdrit.md,
    difference 15).

    forward(x: N x C x H x W, style: N x style_dim) -> N x C x H x W.
    ``MLP(style) = Linear(style_dim, hidden) -> ReLU -> Linear(hidden, 2C)``, split into (delta, beta);
    ``out = (1 + delta) * IN(x) + beta`` with IN the biased per-channel spatial normalisation (eps 1e-5).
    The output Linear is zero-initialised, so at init gamma = 1 and beta = 0 exactly (plain IN).
    In the generator the style is ``[z_attr, y]``.
    """

    def __init__(self, channels: int, style_dim: int, hidden: int | None = None, eps: float = 1e-5) -> None:
        super().__init__()
        hidden = channels if hidden is None else hidden
        self.channels = channels
        self.eps = eps
        self.mlp = nn.Sequential(nn.Linear(style_dim, hidden), nn.ReLU(), nn.Linear(hidden, 2 * channels))
        nn.init.zeros_(self.mlp[-1].weight)
        nn.init.zeros_(self.mlp[-1].bias)

    def forward(self, x: torch.Tensor, style: torch.Tensor) -> torch.Tensor:
        delta, beta = self.mlp(style).chunk(2, dim=1)
        gamma = 1.0 + delta
        normed = F.instance_norm(x, eps=self.eps)
        return gamma[:, :, None, None] * normed + beta[:, :, None, None]


@dataclass
class GeneratorResult:
    """Generative heads of :class:`MixtureGenerator` for one call.

    y_mean, y_var: N x nz, p(z|y) at the call's y; x_rec: N x 3 x T x T in (0, 1), the p(x|z) thumbnail of
    the call's z; x_rec_logits: its pre-sigmoid values (for a numerically stable BCE).
    """

    y_mean: torch.Tensor
    y_var: torch.Tensor
    x_rec: torch.Tensor
    x_rec_logits: torch.Tensor


class MixtureGenerator(nn.Module):
    """GM-DRIT generator: MDMM's generator conditioned on (z_c, z, y) plus p(z|y) and p(x|z).

    forward(z_c: N x 4w x s x s, z: N x nz, y: N x K) -> (image N x 3 x 4s x 4s in (-1, 1), GeneratorResult).

    * ``decoder``: :class:`~gmdrit_cli.families.mdmm.nets.Generator` with ``code_dim = K`` (y takes the place of
      the domain code), optional ``double_convT`` and :class:`AdaIN` (style ``[z, y]``); tanh output;
    * p(z|y): ``y_mean = Linear(K -> nz)(y)``, ``y_var = softplus(Linear(K -> nz)(y)) + VAR_FLOOR``;
    * p(x|z): ``MLP(nz -> 512 -> 512 -> 3*T*T)`` on z alone -> sigmoid -> N x 3 x T x T thumbnail.
    """

    def __init__(
        self,
        num_domains: int,
        num_components: int,
        nz: int,
        thumbnail: int = 16,
        use_adain: bool = False,
        double_convT: bool = False,
        width: int = 64,
        upsample: str = "transposed",
    ) -> None:
        super().__init__()
        self.num_components = num_components
        self.nz = nz
        self.thumbnail = thumbnail
        adain = AdaIN(4 * width, nz + num_components) if use_adain else None
        self.decoder = Generator(
            num_domains,
            nz=nz,
            code_dim=num_components,
            double_convT=double_convT,
            adain=adain,
            width=width,
            upsample=upsample,
        )
        self.prior_mean = nn.Linear(num_components, nz)
        self.prior_var = nn.Linear(num_components, nz)
        self.pxz = _mlp(nz, 3 * thumbnail * thumbnail)

    def prior(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """p(z|y): (mean, var), each N x nz, for N x K (one-hot or soft) y."""
        return self.prior_mean(y), F.softplus(self.prior_var(y)) + VAR_FLOOR

    def thumbnail_logits(self, z: torch.Tensor) -> torch.Tensor:
        """p(x|z) pre-sigmoid thumbnail: N x nz -> N x 3 x T x T."""
        return self.pxz(z).view(z.shape[0], 3, self.thumbnail, self.thumbnail)

    def forward(self, z_c: torch.Tensor, z: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, GeneratorResult]:
        image = self.decoder(z_c, z, y)
        y_mean, y_var = self.prior(y)
        logits = self.thumbnail_logits(z)
        return image, GeneratorResult(y_mean, y_var, torch.sigmoid(logits), logits)


def build_gmdrit_networks(
    num_domains: int,
    crop_size: int,
    nz: int,
    components_per_domain: int = 1,
    thumbnail: int = 16,
    use_adain: bool = False,
    double_convT: bool = False,
    dis_norm: str = "none",
    dis_spectral_norm: bool = False,
    width: int = 64,
    upsample: str = "transposed",
) -> dict[str, nn.Module]:
    """Construct and initialise the six GM-DRIT networks (same keys as ``build_mdmm_networks``).

    "content_encoder" (MDMM's E_c), "attribute_encoder" (:class:`MixtureAttributeEncoder`, K components),
    "generator" (:class:`MixtureGenerator`), "dis_encoded" / "dis_random" (MDMM's D1 / D2: real/fake head
    and a C-way domain classifier), "dis_content". Conv weights ~ N(0, 0.02^2) (the official MDMM init); Linear
    layers keep PyTorch's default init (as in the fork), except AdaIN's zero-initialised output layer.
    """
    k = num_domains * components_per_domain
    return assemble_networks(
        lambda: MixtureAttributeEncoder(k, nz, width),
        lambda: MixtureGenerator(num_domains, k, nz, thumbnail, use_adain, double_convT, width, upsample),
        num_domains,
        crop_size,
        dis_norm,
        dis_spectral_norm,
        width,
    )
