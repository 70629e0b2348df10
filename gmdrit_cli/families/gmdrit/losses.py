"""GM-DRIT's GMVAE loss terms as plain tensor functions (docs/gmdrit.md).

Conventions: ``N`` batch, ``C`` domains, ``K = C * components_per_domain`` mixture components, component
``k`` belongs to domain ``k // components_per_domain``. Unweighted: the model applies the config weights. Every term
is computed in fp32, also under autocast.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..drit_losses import global_sum


def kl_gaussians(mean_q: torch.Tensor, var_q: torch.Tensor, mean_p: torch.Tensor, var_p: torch.Tensor) -> torch.Tensor:
    """Closed-form KL(N(mean_q, var_q) || N(mean_p, var_p)) of diagonal Gaussians, summed over batch and dims.

    All inputs N x nz, variances (not log-variances) > 0. Per element:
    ``0.5 * (log(var_p / var_q) + (var_q + (mean_q - mean_p)^2) / var_p - 1)``. The sum over the batch
    is MDMM's reduction of its attribute KL (the official ``update_EG``), which this term replaces
    (docs/gmdrit.md, difference 5); a batch split across processes sums its part scaled to the whole batch
    (:mod:`gmdrit_cli.training.shard`).
    """
    mean_q, var_q, mean_p, var_p = mean_q.float(), var_q.float(), mean_p.float(), var_p.float()
    kl = 0.5 * (torch.log(var_p) - torch.log(var_q) + (var_q + (mean_q - mean_p).pow(2)) / var_p - 1.0)
    return global_sum(kl.sum())


def kl_categorical_uniform(logits: torch.Tensor) -> torch.Tensor:
    """KL(q(y|x) || Uniform(K)) from N x K logits, averaged over the batch.

    ``sum_k q_k (log q_k + log K)`` per sample (0 for a uniform q, log K for a one-hot q); computed from
    ``log_softmax`` so it stays finite for saturated logits (docs/gmdrit.md, difference 7: the fork lacked the term).
    """
    log_q = F.log_softmax(logits.float(), dim=-1)
    per_sample = (log_q.exp() * (log_q + math.log(logits.shape[-1]))).sum(dim=-1)
    return per_sample.mean()


def domain_log_probs(logits: torch.Tensor, components_per_domain: int) -> torch.Tensor:
    """log P(domain | x) = log of the sum of component probabilities of each domain: N x K -> N x C."""
    log_q = F.log_softmax(logits.float(), dim=-1)
    n, k = log_q.shape
    return torch.logsumexp(log_q.view(n, k // components_per_domain, components_per_domain), dim=-1)


def domain_probabilities(logits: torch.Tensor, components_per_domain: int) -> torch.Tensor:
    """P(domain | x) = sums of the component probabilities of q(y|x) within each domain: N x K -> N x C."""
    n, k = logits.shape
    return F.softmax(logits, dim=-1).view(n, k // components_per_domain, components_per_domain).sum(dim=-1)


def label_cross_entropy(logits: torch.Tensor, domains: torch.Tensor, components_per_domain: int) -> torch.Tensor:
    """Cross-entropy of q(y|x)'s domain probabilities vs the true domains (N long), averaged over the batch."""
    return F.nll_loss(domain_log_probs(logits, components_per_domain), domains)


def label_similarity(class_logits: torch.Tensor, domains: torch.Tensor) -> torch.Tensor:
    """The report's L_GAN2 = CE(y_hat, y): cross-entropy of a discriminator's N x C domain logits vs the
    target domains (N long), per sample, averaged over the batch; differentiable w.r.t. the generated
    images (fixes the fork's defects 3 and 4 in docs/gmdrit.md, where it was computed on argmaxes and had no
    gradient)."""
    return F.cross_entropy(class_logits.float(), domains)


def thumbnail_target(images: torch.Tensor, size: int) -> torch.Tensor:
    """Images N x 3 x S x S in [-1, 1] -> N x 3 x size x size in [0, 1] (area when shrinking, else bilinear)."""
    if size <= images.shape[-1]:
        small = F.interpolate(images, size=(size, size), mode="area")
    else:
        small = F.interpolate(images, size=(size, size), mode="bilinear", align_corners=False)
    return (small * 0.5 + 0.5).clamp(0.0, 1.0)


def thumbnail_reconstruction(logits: torch.Tensor, target: torch.Tensor, kind: str = "bce") -> torch.Tensor:
    """p(x|z) reconstruction loss, mean over all elements (as MDMM's L1 reconstructions).

    logits: N x 3 x T x T pre-sigmoid thumbnail; target: same shape in [0, 1]. ``bce``: binary
    cross-entropy of sigmoid(logits) (computed with logits for stability); ``mse``: squared error of
    sigmoid(logits).
    """
    logits, target = logits.float(), target.float()
    if kind == "bce":
        return F.binary_cross_entropy_with_logits(logits, target)
    if kind == "mse":
        return F.mse_loss(torch.sigmoid(logits), target)
    raise ValueError(f"rec_type must be 'bce' or 'mse', got {kind!r}")
