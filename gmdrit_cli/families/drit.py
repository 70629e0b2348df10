"""Plain helpers shared by the DRIT-style families (MDMM and GM-DRIT): the cross-translation inputs, the
discriminator and MDMM loss terms, the interleaved training step and the display grid.

Every function takes the family (``networks``, ``cfg``, ``onehot`` and, for the step and the grid, its
``forward_pass``, ``encoder_generator_terms``, ``generator_alone_terms``, ``sample_attributes`` and
``generate``) as its first argument; nothing here is a base class. Batch halves: A = first h, B = last h.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..data.unpaired import Batch
from ..training import shard
from . import drit_losses as losses
from .base import OptimizerGroup

if TYPE_CHECKING:
    from ..training.engine import Engine

#: the networks of the first and of the second step of the E/G update (the official MDMM ``update_EG``)
EG_NETWORKS = ("content_encoder", "attribute_encoder", "generator")
G_ALONE_NETWORKS = ("content_encoder", "generator")


def optimizer_groups(family, parameter_groups: Callable | None = None) -> list[OptimizerGroup]:
    """Adam per network (as the official MDMM ``model.py``) at MDMM's learning rates; D_c's is never decayed (official
    update_lr skips it). ``parameter_groups(name, net)`` splits a network into groups (default: one)."""
    o = family.cfg.optim
    lrs = {
        "dis_encoded": o.lr_dis,
        "dis_random": o.lr_dis,
        "dis_content": o.lr_content_dis,
        "content_encoder": o.lr_eg,
        "attribute_encoder": o.lr_eg,
        "generator": o.lr_eg,
    }
    return [
        OptimizerGroup(
            name,
            lrs.get(name, o.lr_eg),
            parameter_groups(name, net) if parameter_groups else [{"params": list(net.parameters())}],
            scheduled=name != "dis_content",
        )
        for name, net in family.networks.items()
    ]


def randn(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return shard.randn(shape, device=like.device, dtype=like.dtype, generator=generator)


@dataclass
class Translation:
    """Every tensor of the official MDMM ``forward()``. Batch halves: A = first h, B = last h."""

    content: torch.Tensor  # B x 256 x S/4 x S/4, noisy in train mode
    attr_mean: torch.Tensor  # B x nz
    attr_logvar: torch.Tensor  # B x nz
    attr_random: torch.Tensor  # B x nz: the random attribute of each half's fake_random (MDMM's prior:
    # one h x nz draw, repeated for both halves)
    fake_encoded: torch.Tensor  # B x 3 x S x S: [B-content in A's attribute/domain; A-content in B's]
    fake_random: torch.Tensor  # B x 3 x S x S: other half's content, random attribute, own domain
    self_recon: torch.Tensor  # B x 3 x S x S
    cycle_recon: torch.Tensor  # B x 3 x S x S
    random_attr_mean: torch.Tensor  # B x nz: attribute encoder's mean on fake_random (latent regression)
    attr_random2: torch.Tensor | None  # B x nz, with loss.mode_seeking > 0: a second random attribute
    fake_random2: torch.Tensor | None  # B x 3 x S x S: fake_random's inputs with attr_random2


def cross_generator_inputs(
    content: torch.Tensor,
    attr: torch.Tensor,
    cond: torch.Tensor,
    attr_random: torch.Tensor,
    cond_random: torch.Tensor,
    attr_random2: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The generator inputs (content, attribute, conditioning) of DRIT's cross translation, 6h rows
    (8h with ``attr_random2``), in blocks of h: [B-content with A's attribute (fake_a_enc), A-content
    with A's (self A), B-content with A's random attribute, then the same three for B], and with a
    second random attribute [B-content, A-content] in their random conditioning.

    content B x ..., attr / attr_random / attr_random2 B x nz, cond / cond_random B x D (the
    conditioning given with the encoded and with the random attributes).
    """
    h = content.shape[0] // 2
    content_a, content_b = content[:h], content[h:]
    contents = [content_b, content_a, content_b, content_a, content_b, content_a]
    attrs = [attr[:h], attr[:h], attr_random[:h], attr[h:], attr[h:], attr_random[h:]]
    conds = [cond[:h], cond[:h], cond_random[:h], cond[h:], cond[h:], cond_random[h:]]
    if attr_random2 is not None:
        contents += [content_b, content_a]
        attrs += [attr_random2[:h], attr_random2[h:]]
        conds += [cond_random[:h], cond_random[h:]]
    return torch.cat(contents), torch.cat(attrs), torch.cat(conds)


# -- losses -------------------------------------------------------------------------------------


def discriminator_losses(family, images, code, t: Translation) -> dict[str, torch.Tensor]:
    """Loss of each image discriminator on detached fakes (the official ``update_D``)."""
    out = {}
    for name, fake in (("dis_encoded", t.fake_encoded), ("dis_random", t.fake_random)):
        # one call on fakes and reals: D is per-sample (no batch statistics), and one call casts
        # and convolves its large 1024-channel weights once instead of twice
        n = fake.shape[0]
        logits, cls = family.networks[name](torch.cat([fake.detach(), images]))
        fake_logits, real_logits, real_cls = logits[:n], logits[n:], cls[n:]
        gan = losses.adversarial(real_logits, True) + losses.adversarial(fake_logits, False)
        out[name] = gan + family.cfg.loss.lambda_cls * losses.domain_classification(real_cls, code)
    return out


def mdmm_encoder_generator_terms(family, images, code, t: Translation) -> dict[str, torch.Tensor]:
    """Weighted terms of MDMM's L_EG (the official ``update_EG``, step 1)."""
    w = family.cfg.loss
    logits, cls = family.networks["dis_encoded"](t.fake_encoded)
    terms = {
        "adv_encoded": losses.adversarial(logits, True),
        "cls_encoded": w.lambda_cls_fake * losses.domain_classification(cls, code),
        "self_recon": w.lambda_rec * losses.l1(images, t.self_recon),
        "cycle_recon": w.lambda_rec * losses.l1(images, t.cycle_recon),
        "kl_content": w.kl_content * losses.content_penalty(t.content),
        "kl_attribute": w.kl_attribute * losses.kl_standard_normal(t.attr_mean, t.attr_logvar),
    }
    if family.cfg.model.use_content_dis:
        content_logits = family.networks["dis_content"](t.content)
        terms["adv_content"] = losses.domain_classification(content_logits, 1.0 - code)
    if w.keep_neutral > 0:  # here the encoders learn to leave the background out of the attribute
        terms["keep_neutral_encoded"] = keep_neutral(family, cross_sources(images), [t.fake_encoded])
    return terms


def cross_sources(images: torch.Tensor) -> torch.Tensor:
    """The input of each cross translation (``fake_random`` / ``fake_encoded`` order: B's content into A, then A's
    into B) of a batch ``images`` (B x 3 x S x S, A's half first): the halves swapped."""
    h = images.shape[0] // 2
    return torch.cat([images[h:], images[:h]])


def keep_neutral(family, sources: torch.Tensor, fakes: list[torch.Tensor]) -> torch.Tensor:
    """loss.keep_neutral x the mean :func:`~.drit_losses.neutral_change` of cross translations ``fakes`` (each
    B x 3 x S x S) from their inputs ``sources`` (:func:`cross_sources`)."""
    return family.cfg.loss.keep_neutral * sum(losses.neutral_change(sources, f) for f in fakes) / len(fakes)


def latent_regression(family, t: Translation) -> torch.Tensor:
    """Weighted L1 between the attribute encoder's mean on the random fakes and the drawn z, per half."""
    h = t.random_attr_mean.shape[0] // 2
    return family.cfg.loss.lambda_latent * (
        losses.l1(t.random_attr_mean[:h], t.attr_random[:h]) + losses.l1(t.random_attr_mean[h:], t.attr_random[h:])
    )


def mdmm_generator_alone_terms(family, images, code, t: Translation) -> dict[str, torch.Tensor]:
    """Weighted terms of MDMM's L_G_alone (the official ``update_EG``, step 2)."""
    w = family.cfg.loss
    logits, cls = family.networks["dis_random"](t.fake_random)
    terms = {
        "adv_random": losses.adversarial(logits, True),
        "cls_random": w.lambda_cls_fake * losses.domain_classification(cls, code),
        "latent": latent_regression(family, t),
    }
    return add_diversity_terms(family, terms, images, t)


def add_diversity_terms(family, terms: dict[str, torch.Tensor], images, t: Translation) -> dict[str, torch.Tensor]:
    """``terms`` plus the weighted mode-seeking term when the step drew two random attributes, and the terms on the
    random-attribute translations each weighted above 0: ``keep_neutral`` (where the random attributes may
    differ), ``match_encoded_colour`` and ``dark_patches`` (what colour they may give the subject)."""
    if t.fake_random2 is not None:
        terms["mode_seeking"] = family.cfg.loss.mode_seeking * losses.mode_seeking(
            t.fake_random, t.fake_random2, t.attr_random, t.attr_random2
        )
    randoms = [f for f in (t.fake_random, t.fake_random2) if f is not None]
    sources = cross_sources(images)
    if family.cfg.loss.keep_neutral > 0:
        terms["keep_neutral"] = keep_neutral(family, sources, randoms)
    if family.cfg.loss.match_encoded_colour > 0:
        terms["match_encoded_colour"] = match_encoded_colour(family, sources, randoms, t.fake_encoded)
    if family.cfg.loss.dark_patches > 0:
        terms["dark_patches"] = dark_patches(family, sources, randoms)
    return terms


def match_encoded_colour(family, sources: torch.Tensor, fakes: list[torch.Tensor], encoded: torch.Tensor):
    """loss.match_encoded_colour x the mean L1 between the subject colour of each random-attribute translation in
    ``fakes`` and that of ``encoded`` (the same inputs ``sources`` translated with real target images' encoded
    attributes, a constant here), in the order of :func:`cross_sources`."""
    target = losses.subject_colour(encoded.detach(), sources)
    mean = sum((losses.subject_colour(f, sources) - target).abs().mean() for f in fakes) / len(fakes)
    return family.cfg.loss.match_encoded_colour * mean


def dark_patches(family, sources: torch.Tensor, fakes: list[torch.Tensor]) -> torch.Tensor:
    """loss.dark_patches x the mean :func:`~.drit_losses.dark_patches` of the random-attribute translations
    ``fakes`` from their inputs ``sources`` (:func:`cross_sources`)."""
    return family.cfg.loss.dark_patches * sum(losses.dark_patches(sources, f) for f in fakes) / len(fakes)


# -- updates ------------------------------------------------------------------------------------


def update_content_discriminator(family, engine: Engine, batch: Batch) -> torch.Tensor:
    """Reference 3.3: BCE of D_c on the (noisy, detached) content code; grad-norm clipped."""
    images = engine.to_device(batch.images)
    with torch.no_grad(), engine.autocast():
        content = family.networks["content_encoder"](images)
    with engine.autocast():
        loss = losses.domain_classification(
            family.networks["dis_content"](content), family.onehot(batch.domains.to(family.device))
        )
    engine.clipped_update("dis_content", loss, family.cfg.optim.content_dis_clip)
    return loss.detach()


def update_discriminators(family, engine: Engine, images, code, t: Translation) -> dict[str, torch.Tensor]:
    with engine.autocast():
        d_losses = discriminator_losses(family, images, code, t)
    for name, loss in d_losses.items():
        engine.update(name, loss)
    return {k: v.detach() for k, v in d_losses.items()}


def update_encoders_generator(family, engine: Engine, images, code, t: Translation) -> dict[str, torch.Tensor]:
    """The two-step E/G update, both gradients before any step (docs/mdmm.md, differences).

    Gradients of L_EG (for E_c, E_a, G) and of L_G_alone (for E_c, G) are both taken on the one
    forward graph before any step; then E_c, E_a, G take an Adam step with the first and E_c, G a
    second Adam step with the second. Equal to the official numerics, without a second forward.
    """
    with engine.autocast():
        eg_terms = family.encoder_generator_terms(images, code, t)
        g_terms = family.generator_alone_terms(images, code, t)
    loss_eg = sum(eg_terms.values())
    loss_g = sum(g_terms.values())
    engine.two_step_update((EG_NETWORKS, loss_eg), (G_ALONE_NETWORKS, loss_g))
    out = {k: v.detach() for k, v in {**eg_terms, **g_terms}.items()}
    out["loss_eg"] = loss_eg.detach()
    out["loss_g_alone"] = loss_g.detach()
    return out


def train_step(
    family,
    batches: list[Batch],
    engine: Engine,
    after_forward: Callable[[Translation, torch.Tensor], None] | None = None,
) -> dict[str, torch.Tensor]:
    """MDMM's interleaving: with D_c on, every batch but the last updates D_c only (the official ``train.py``); then
    one forward pass (``after_forward(t, code)`` sees it before any update), the discriminators' update
    and the two-step E/G update."""
    out: dict[str, torch.Tensor] = {}
    for batch in batches[:-1]:
        out["dis_content"] = update_content_discriminator(family, engine, batch)
    batch = batches[-1]
    images = engine.to_device(batch.images)
    code = family.onehot(batch.domains.to(family.device, non_blocking=True))
    for net in family.networks.values():
        net.train()
    with engine.autocast():
        t = family.forward_pass(images, code)
    if after_forward is not None:
        after_forward(t, code)
    out.update(update_discriminators(family, engine, images, code, t))
    out.update(update_encoders_generator(family, engine, images, code, t))
    return out


def batches_per_step(family) -> int:
    return family.cfg.model.content_dis_every if family.cfg.model.use_content_dis else 1


# -- display ------------------------------------------------------------------------------------


@torch.no_grad()
def sample_grid(family, examples: Batch) -> torch.Tensor:
    """Row i: input of domain i, its translation to domain i+1 with the encoded attribute of the
    domain-(i+1) example and with a random attribute, its self-reconstruction and its cross-cycle
    reconstruction (the report's 2 x 5 layout for two domains). With ``train.grid_random`` = R > 1 the
    random-attribute column is followed by R - 1 more random-attribute outputs of the same input
    (rows x (4 + R)): several translations of one image, side by side."""
    for net in family.networks.values():
        net.eval()
    device = family.device
    generator = torch.Generator(device=device).manual_seed(family.cfg.train.seed)
    images = examples.images.to(device)
    c = images.shape[0]
    rows = []
    for i in range(c):
        pair = torch.stack([images[i], images[(i + 1) % c]])
        code = family.onehot(torch.tensor([i, (i + 1) % c], device=device))
        t = family.forward_pass(pair, code, generator)
        # B's call outputs (index 1) hold A's content in B's domain: the translation of row i
        extra = family.cfg.train.grid_random - 1
        more = []
        if extra > 0:
            z, y = family.sample_attributes((i + 1) % c, extra, None, generator)
            content = t.content[:1].expand(extra, -1, -1, -1)  # eval mode: the noise-free content of row i
            more = list(family.generate(content, z, y))
        rows.append(
            torch.stack([pair[0], t.fake_encoded[1], t.fake_random[1], *more, t.self_recon[0], t.cycle_recon[0]])
        )
    for net in family.networks.values():
        net.train()
    return torch.stack(rows)
