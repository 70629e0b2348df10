"""GM-DRIT: MDMM with a Gaussian-mixture attribute space (the report [R1]; docs/gmdrit.md).

Everything not described here is the official MDMM code's (docs/mdmm.md): optimizers, discriminator update,
content discriminator, the two-step E/G update on one forward graph, the display grid.

Mixture: ``K = num_domains * components_per_domain``; component ``k`` belongs to domain
``k // components_per_domain``; domain probabilities are sums of component probabilities.

Two stages (``mixture.condition_on``):

* ``inferred`` (report 5.2 onwards; default): G is conditioned on the y inferred by q(y|x) for the
  image whose attribute it uses; random attributes are ``y = onehot(k)`` for a component k of the
  wanted domain and ``z ~ p(z|y)``, drawn per sample; GMVAE terms are added to MDMM's objective.
* ``domain`` (report 5.1, "integration"): the new E_a / G architecture with MDMM's losses only. The
  domain one-hot is expanded to K as the *uniform* distribution over the domain's components
  (``1 / components_per_domain`` on each; the plain one-hot for one component per domain, as in the
  report) and given both to G (in place of MDMM's code) and to q(z|x,y) (in place of the sampled y:
  the official MDMM attribute encoder is conditioned on c too). q(y|x), p(z|y) and p(x|z) exist but get no
  loss; the attribute KL is MDMM's KL(q(z|x,c) || N(0, I)) with log-variance ``log(var)``, and random
  attributes are MDMM's ``z ~ N(0, I)`` (one draw shared by both halves).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ...config.schema import Config
from ...data.unpaired import Batch
from ...training import shard
from ...training.engine import Engine
from .. import drit
from .. import drit_losses as losses
from ..base import BenchmarkRow, Capabilities, ModelFamily, OptimizerGroup
from ..drit import Translation
from ..registry import register
from . import losses as lm
from .nets import VAR_FLOOR, AttributeInference, build_gmdrit_networks

#: images encoded at once by refit_prior (memory, not results)
REFIT_BATCH = 50
#: refit_prior(method="discriminator"): draws of each component's prior judged, and the share of them kept (the
#: draws the run's random-attribute discriminator rates most real, whose mean and spread the prior then takes:
#: one step of the cross-entropy method; a quarter of 256 moved the prior off its off-colour draws on training
#: images while keeping most of its spread, see docs/results.md)
CRITIC_DRAWS = 256
CRITIC_KEEP = 0.25
#: draws translated at once by that refit (memory, not results)
CRITIC_BATCH_DRAWS = 8
#: refit_prior methods that select prior draws by a score (:meth:`GMDRIT._draw_scores`)
SELECTION_METHODS = ("discriminator", "neutral", "colour")


@dataclass
class MixtureTranslation(Translation):
    """DRIT's :class:`~gmdrit_cli.families.drit.Translation` plus the mixture tensors. Batch halves: A = first h,
    B = last h.

    ``attr_logvar`` holds ``log(attr_var)``. ``attr_random`` is B x nz: in the ``inferred`` stage one
    independent draw per sample, in the domain of its half; in ``domain`` one h x nz draw repeated for
    both halves (MDMM). ``attr_random2`` (mode seeking) is a second draw with the same y.
    """

    attr_var: torch.Tensor  # B x nz: variance of q(z|x,y) on the real images
    logits: torch.Tensor  # B x K: q(y|x) logits on the real images
    y: torch.Tensor  # B x K: the y given to G with the encoded attributes
    random_y: torch.Tensor  # (B or h) x K: the y given to G with the random attributes
    prior_mean: torch.Tensor  # B x nz: p(z|y) at the y of the same image
    prior_var: torch.Tensor  # B x nz
    thumbnail_logits: torch.Tensor  # B x 3 x T x T: p(x|z) of the real images' z (pre-sigmoid)


@register
class GMDRIT(ModelFamily):
    name = "gmdrit"
    description = "GM-DRIT: MDMM with a Gaussian-mixture attribute prior p(z|y) and inferred y (report, fixed)"
    #: the report's Table 3 (key, label, preset, T4 seconds at 108 px, at 216 px); attribute size = crop size there
    benchmark_rows = tuple(
        BenchmarkRow(key, label, preset, res, seconds[i], in_report_table=True, nz_is_crop=True)
        for key, label, preset, *seconds in (
            ("gmdrit", "GM-DRIT [5.2]", "loss_integration", 0.538, 2.261),
            ("double_gen_enc", "GM-DRIT double enc gen [5.3.3]", "double_gen_enc", 0.544, 2.307),
            ("half_discr", "GM-DRIT half discr [5.3.3]", "half_discr", 0.551, 2.326),
            ("adain", "GM-DRIT AdaIN [5.3.1]", "adain", 0.647, 2.339),
            ("double_conv", "GM-DRIT double conv [5.3.2]", "double_conv", 0.771, 3.716),
        )
        for i, res in enumerate((108, 216))
    )

    def __init__(self, cfg: Config, device: torch.device, training: bool = True):
        super().__init__(cfg, device, training)
        m, mix = cfg.model, cfg.mixture
        self.components_per_domain = mix.components_per_domain
        self.num_components = cfg.num_domains * mix.components_per_domain
        nets = build_gmdrit_networks(
            cfg.num_domains,
            cfg.data.crop,
            nz=m.nz,
            components_per_domain=mix.components_per_domain,
            thumbnail=mix.thumbnail,
            use_adain=m.use_adain,
            double_convT=m.double_convT,
            dis_norm=m.dis_norm,
            dis_spectral_norm=m.dis_spectral_norm,
            width=m.width,
            upsample=m.upsample,
        )
        self.networks = nn.ModuleDict(nets).to(device)
        self._tau = mix.init_temp
        self._test_time = False

    def optimizer_groups(self) -> list[OptimizerGroup]:
        """MDMM's optimizers (the official ``model.py``'s); p(z|y) in its own group with ``mixture.prior_lr_mult``."""
        return drit.optimizer_groups(self, self.parameter_groups)

    @property
    def capabilities(self) -> Capabilities:
        """Mixture components and q(y|x) in the ``inferred`` stage; the ``domain`` stage is conditioned on the
        domain code like MDMM."""
        inferred = self.inferred
        return Capabilities(
            components_per_domain=self.components_per_domain if inferred else 0,
            classifies_domains=inferred,
            paired_data=False,
            domain_conditioned=not inferred,
        )

    @property
    def mode_seeking(self) -> bool:
        """Two random attributes per input and the mode-seeking term (loss.mode_seeking > 0)."""
        return self.cfg.loss.mode_seeking > 0

    @property
    def inferred(self) -> bool:
        """True in the ``inferred`` stage (G conditioned on q(y|x)'s y, GMVAE losses on)."""
        return self.cfg.mixture.condition_on == "inferred"

    # -- mixture bookkeeping --------------------------------------------------------------------

    def temperature(self, iteration: int, iterations_per_epoch: int = 1) -> float:
        """Gumbel temperature ``max(init_temp * exp(-decay_temp_rate * epoch), min_temp)``.

        ``epoch = iteration / iterations_per_epoch`` (a float); the trainer's engine knows the epoch length.
        """
        mix = self.cfg.mixture
        epoch = iteration / max(1, int(iterations_per_epoch))
        return max(mix.init_temp * math.exp(-mix.decay_temp_rate * epoch), mix.min_temp)

    def extra_state(self, iteration: int, iterations_per_epoch: int) -> dict:
        return {"gumbel_temperature": self.temperature(iteration, iterations_per_epoch)}

    def component_domains(self) -> torch.Tensor:
        """K (long): the domain of each component, ``k // components_per_domain``."""
        return torch.arange(self.num_components, device=self.device) // self.components_per_domain

    def domain_code_to_y(self, code: torch.Tensor) -> torch.Tensor:
        """N x C domain one-hot -> N x K, uniform over the domain's components (the ``domain`` stage)."""
        return code.repeat_interleave(self.components_per_domain, dim=1) / self.components_per_domain

    def _random_attributes(
        self,
        domains: torch.Tensor,
        generator: torch.Generator | None = None,
        component: int | None = None,
        temperature: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """For each wanted domain (N long): a component of that domain (uniform, or ``component``-th of
        the domain), ``y = onehot(k)`` and ``z ~ p(z|y)``, independently per sample. Returned detached:
        like MDMM's N(0, I) draw, the random attribute is a constant of the step, and p(z|y) is fitted
        by the Gaussian KL only. ``temperature`` scales p(z|y)'s standard deviation (sampling only)."""
        cpd = self.components_per_domain
        if component is None:
            offset = shard.randint(cpd, domains.shape, device=domains.device, generator=generator)
        else:
            offset = torch.full_like(domains, component)
        k = domains * cpd + offset
        y = F.one_hot(k, self.num_components).float()
        return self._sample_prior(y, generator, temperature), y

    @torch.no_grad()
    def _sample_prior(
        self, y: torch.Tensor, generator: torch.Generator | None = None, temperature: float = 1.0
    ) -> torch.Tensor:
        """z ~ N(mean, temperature^2 var) of p(z|y) for each row of y (N x K), N x nz, detached."""
        mean, var = self.networks["generator"].prior(y)
        noise = shard.randn(mean.shape, device=mean.device, dtype=mean.dtype, generator=generator)
        return mean + noise * var.sqrt() * temperature

    def _encode(
        self, images: torch.Tensor, code: torch.Tensor, generator=None, test: bool = False, sample: bool = True
    ) -> AttributeInference:
        """q(z, y | x) as the current stage uses it: Gumbel sample at the current tau in training,
        one-hot argmax at test time, the domain code in the ``domain`` stage."""
        E_a = self.networks["attribute_encoder"]
        if not self.inferred:
            return E_a(images, generator=generator, y=self.domain_code_to_y(code), sample=sample)
        return E_a(images, self._tau, self.cfg.mixture.hard_gumbel, generator, argmax=test, sample=sample)

    # -- forward --------------------------------------------------------------------------------

    def random_attribute(self, n: int, like: torch.Tensor, generator=None) -> torch.Tensor:
        """n x nz draws of N(0, I) (the ``domain`` stage's prior, MDMM's)."""
        return drit.randn((n, self.cfg.model.nz), like, generator)

    def forward_pass(
        self, images: torch.Tensor, code: torch.Tensor, generator=None, test: bool | None = None
    ) -> MixtureTranslation:
        """MDMM's forward pass (the official ``forward()``) with y-conditioning; nothing detached but the random z.

        images B x 3 x S x S, code B x C one-hot. ``test`` (default: inside :meth:`sample_grid`) uses the
        one-hot argmax of q(y|x) instead of Gumbel samples.
        """
        test = self._test_time if test is None else test
        E_c, G = self.networks["content_encoder"], self.networks["generator"]
        h = images.shape[0] // 2
        content = E_c(images)
        enc = self._encode(images, code, generator, test)
        if self.inferred:
            attr_random, random_y = self._random_attributes(code.argmax(dim=1), generator)
        else:  # MDMM: one N(0, I) draw shared by both halves, in each half's domain
            attr_random = self.random_attribute(h, enc.mean, generator).repeat(2, 1)
            random_y = enc.y
        attr_random2 = None
        if self.mode_seeking:  # a second random attribute with the same y: diversity within a component
            attr_random2 = (
                self._sample_prior(random_y, generator)
                if self.inferred
                else self.random_attribute(h, enc.mean, generator).repeat(2, 1)
            )

        # one G call for both output domains (G is per-sample; see MDMM.forward_pass)
        out, res = G(*drit.cross_generator_inputs(content, enc.z, enc.y, attr_random, random_y, attr_random2))
        parts = out.split(h)
        fake_a_enc, fake_aa, fake_a_rand, fake_b_enc, fake_bb, fake_b_rand = parts[:6]
        fake_random2 = torch.cat(parts[6:]) if self.mode_seeking else None
        # blocks 1 and 4 (of h rows) hold (z, y) of the real images of each half, in batch order
        own = torch.cat([torch.arange(h, 2 * h), torch.arange(4 * h, 5 * h)]).to(out.device)
        prior_mean, prior_var, thumbs = res.y_mean[own], res.y_var[own], res.x_rec_logits[own]

        fake_encoded = torch.cat([fake_a_enc, fake_b_enc])
        content2 = E_c(fake_encoded)
        content2_b, content2_a = content2[:h], content2[h:]  # fake_a_enc carries B's content
        enc2 = self._encode(fake_encoded, code, generator, test)  # y re-inferred on the fakes
        recon, _ = G(torch.cat([content2_a, content2_b]), enc2.z, enc2.y)
        recon_a, recon_b = recon.split(h)

        fake_random = torch.cat([fake_a_rand, fake_b_rand])
        random_attr_mean = self._encode(fake_random, code, generator, test, sample=False).mean
        return MixtureTranslation(
            content=content,
            attr_mean=enc.mean,
            attr_logvar=torch.log(enc.var),
            attr_random=attr_random,
            fake_encoded=fake_encoded,
            fake_random=fake_random,
            self_recon=torch.cat([fake_aa, fake_bb]),
            cycle_recon=torch.cat([recon_a, recon_b]),
            random_attr_mean=random_attr_mean,
            attr_random2=attr_random2,
            fake_random2=fake_random2,
            attr_var=enc.var,
            logits=enc.logits,
            y=enc.y,
            random_y=random_y,
            prior_mean=prior_mean,
            prior_var=prior_var,
            thumbnail_logits=thumbs,
        )

    # -- losses ---------------------------------------------------------------------------------

    def encoder_generator_terms(self, images, code, t: MixtureTranslation) -> dict[str, torch.Tensor]:
        """L_EG (step 1): MDMM's terms; in the ``inferred`` stage the N(0, I) attribute KL is replaced by
        ``kl_gauss`` and the encoder-side GMVAE terms ``kl_categ``, ``label``, ``thumb_rec`` are added."""
        terms = drit.mdmm_encoder_generator_terms(self, images, code, t)
        if not self.inferred:
            return terms
        mix = self.cfg.mixture
        del terms["kl_attribute"]
        terms["kl_gauss"] = mix.w_gauss * lm.kl_gaussians(t.attr_mean, t.attr_var, t.prior_mean, t.prior_var)
        terms["kl_categ"] = mix.w_categ * lm.kl_categorical_uniform(t.logits)
        terms["label"] = mix.w_label * lm.label_cross_entropy(t.logits, code.argmax(dim=1), self.components_per_domain)
        target = lm.thumbnail_target(images, mix.thumbnail)
        terms["thumb_rec"] = mix.w_rec * lm.thumbnail_reconstruction(t.thumbnail_logits, target, mix.rec_type)
        return terms

    def generator_alone_terms(self, images, code, t: MixtureTranslation) -> dict[str, torch.Tensor]:
        """L_G_alone (step 2). ``inferred`` stage: the label similarity (CE of D2's domain classifier on the
        random-attribute fakes vs their target domain) replaces MDMM's realism term (kept as well with
        ``gan2_realism``); MDMM's ``lambda_cls_fake`` class term and the latent regression (mean of
        q(z|x,y) on the random fakes vs the drawn z, per half) stay."""
        if not self.inferred:
            return drit.mdmm_generator_alone_terms(self, images, code, t)
        w, mix = self.cfg.loss, self.cfg.mixture
        logits, cls = self.networks["dis_random"](t.fake_random)
        terms = {
            "label_sim": mix.w_label_sim * lm.label_similarity(cls, code.argmax(dim=1)),
            "cls_random": w.lambda_cls_fake * losses.domain_classification(cls, code),
            "latent": drit.latent_regression(self, t),
        }
        if mix.gan2_realism:
            terms["adv_random"] = losses.adversarial(logits, True)
        return drit.add_diversity_terms(self, terms, images, t)

    # -- training -------------------------------------------------------------------------------

    def parameter_groups(self, name: str, net: nn.Module) -> list[dict]:
        """The generator's p(z|y) parameters in their own group when ``mixture.prior_lr_mult`` != 1.

        p(z|y) is fitted only by the Gaussian KL (weight 0.01); at the generator's rate Adam moves it by
        at most about lr per step, too slowly to follow q(z|x,y) (docs/results.md "GM-DRIT vs MDMM")."""
        mult = self.cfg.mixture.prior_lr_mult
        if name != "generator" or mult == 1.0:
            return [{"params": list(net.parameters())}]
        prior = [p for n, p in net.named_parameters() if n.startswith(("prior_mean.", "prior_var."))]
        ids = {id(p) for p in prior}
        return [{"params": [p for p in net.parameters() if id(p) not in ids]}, {"params": prior, "lr_mult": mult}]

    def batches_per_step(self) -> int:
        return drit.batches_per_step(self)

    def train_step(self, batches: list[Batch], iteration: int, engine: Engine) -> dict[str, torch.Tensor]:
        """MDMM's step with the Gumbel temperature of ``iteration`` (in ``engine``'s epochs) applied to every
        encoder call."""
        self._tau = self.temperature(iteration, engine.iterations_per_epoch)
        out = drit.train_step(self, batches, engine)
        if self.inferred:
            out["gumbel_tau"] = torch.tensor(self._tau)
        return out

    # -- display --------------------------------------------------------------------------------

    @torch.no_grad()
    def sample_grid(self, examples: Batch) -> torch.Tensor:
        """MDMM's rows x 5 grid (input, translation with the encoded attribute, with a random attribute,
        self-reconstruction, cross-cycle reconstruction) with test-time y (one-hot argmax), all noise from
        a generator seeded with ``train.seed`` (global RNG untouched), networks in eval mode."""
        self._test_time = True
        try:
            return drit.sample_grid(self, examples)
        finally:
            self._test_time = False
            for net in self.networks.values():
                net.train()

    # -- test-time API --------------------------------------------------------------------------

    @torch.no_grad()
    def sample_attributes(
        self,
        domain: int,
        n: int,
        component: int | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random attributes for ``domain``: (z n x nz, y n x K); ``temperature`` scales the prior's
        standard deviation (1 = the prior itself).

        ``inferred`` stage: for each sample a component of the domain (uniform; ``component`` pins the
        ``component``-th component *of this domain*, 0 <= component < components_per_domain, i.e. global
        index ``domain * components_per_domain + component``), ``y = onehot(k)``, ``z ~ p(z|y)``.
        ``domain`` stage: ``z ~ N(0, I)`` and y the domain code expanded to K (``component`` must be None).
        """
        if not 0 <= domain < self.cfg.num_domains:
            raise ValueError(f"domain must be in 0..{self.cfg.num_domains - 1}, got {domain}")
        domains = torch.full((n,), domain, dtype=torch.long, device=self.device)
        if not self.inferred:
            if component is not None:
                raise ValueError("component is only meaningful with mixture.condition_on: inferred")
            z = torch.randn((n, self.cfg.model.nz), device=self.device, generator=generator) * temperature
            return z, self.domain_code_to_y(self.onehot(domains))
        if component is not None and not 0 <= component < self.components_per_domain:
            raise ValueError(f"component must be in 0..{self.components_per_domain - 1}, got {component}")
        return self._random_attributes(domains, generator, component, temperature)

    @torch.no_grad()
    def encode_reference(
        self, images: torch.Tensor, domains: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attributes of reference images N x 3 x S x S: (z = mean of q(z|x,y) N x nz, y N x K).

        ``inferred``: y = one-hot of argmax q(y|x). ``domain`` stage: y = the domain code of ``domains``
        (N long, required).
        """
        E_a = self.networks["attribute_encoder"]
        if self.inferred:
            enc = E_a(images, argmax=True, sample=False)
        else:
            if domains is None:
                raise ValueError("encode_reference needs the reference domains with mixture.condition_on: domain")
            enc = E_a(images, y=self.domain_code_to_y(self.onehot(domains.to(images.device))), sample=False)
        return enc.mean, enc.y

    @torch.no_grad()
    def encode_content(self, images: torch.Tensor) -> torch.Tensor:
        """E_c(images N x 3 x S x S) -> content N x 4w x S/4 x S/4 (noise-free in eval mode)."""
        return self.networks["content_encoder"](images)

    @torch.no_grad()
    def component_probabilities(self, images: torch.Tensor) -> torch.Tensor:
        """q(y|x) N x K of images N x 3 x S x S (eval mode, no sampling)."""
        return self.networks["attribute_encoder"](images, argmax=True, sample=False).prob

    @torch.no_grad()
    def classify(self, images: torch.Tensor) -> torch.Tensor:
        """Domain probabilities N x C: q(y|x)'s component probabilities summed per domain."""
        logits = self.networks["attribute_encoder"](images, argmax=True, sample=False).logits
        return lm.domain_probabilities(logits, self.components_per_domain)

    @torch.no_grad()
    def generate(self, content: torch.Tensor, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
        """G(z_c N x 4w x S/4 x S/4, z N x nz, y N x K) -> images N x 3 x S x S in (-1, 1)."""
        image, _ = self.networks["generator"](content, z, y)
        return image

    def refit_networks(self, method: str) -> tuple[str, ...]:
        return ("dis_random",) if method == "discriminator" else ()

    @torch.no_grad()
    def refit_prior(
        self, images: list[torch.Tensor], strength: float = 1.0, method: str = "posterior"
    ) -> tuple[dict[str, torch.Tensor], list[dict]]:
        """``posterior``: the mean of p(z|y=k) moved ``strength`` of the way to the mean of q(z|x, y=k) over the
        images of k's domain whose most probable component (within the domain) is k; a component no image chose
        keeps its mean. Only the means move: the prior's spread stays as trained.

        ``discriminator``, ``neutral`` and ``colour``: see :meth:`_refit_by_selection`."""
        if not self.inferred:
            from ...errors import InferenceError

            raise InferenceError(
                "this GM-DRIT model samples z from N(0, I) (mixture.condition_on: domain): no prior to refit"
            )
        if method in SELECTION_METHODS:
            return self._refit_by_selection(images, strength, method)
        if method != "posterior":
            raise ValueError(f"unknown refit method {method!r}")
        E_a, prior = self.networks["attribute_encoder"], self.networks["generator"].prior_mean
        weight, per = prior.weight.detach().clone(), self.components_per_domain  # weight: nz x K
        records = []
        for d, domain_images in enumerate(images):
            chosen, z = [], []
            for batch in domain_images.split(REFIT_BATCH):
                batch = batch.to(self.device)
                k = self.component_probabilities(batch)[:, d * per : (d + 1) * per].argmax(dim=1) + d * per
                chosen.append(k)
                z.append(E_a(batch, y=F.one_hot(k, self.num_components).float(), sample=False).mean)
            chosen, z = torch.cat(chosen), torch.cat(z)
            for k in range(d * per, (d + 1) * per):
                picked = z[chosen == k]
                if len(picked) == 0:
                    continue
                y = F.one_hot(torch.tensor([k], device=self.device), self.num_components).float()
                old_mean, std = self.attribute_prior(y)
                encoded = picked.mean(dim=0)
                new_mean = old_mean[0] + strength * (encoded - old_mean[0])
                weight[:, k] = new_mean - prior.bias.detach()
                gap = ((encoded - old_mean[0]) / std[0]).square().mean().sqrt()  # RMS, in prior standard deviations
                records.append(
                    {"domain": d, "component": k, "images": len(picked), "gap_rms_std": float(gap), "moved": strength}
                )
        return {"generator.prior_mean.weight": weight}, records

    @torch.no_grad()
    def _draw_scores(
        self,
        sources: torch.Tensor,
        content: torch.Tensor,
        z: torch.Tensor,
        y: torch.Tensor,
        method: str,
        targets: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """How good each draw is, higher better: sources n x 3 x S x S (in [-1, 1]) and their content codes, z M x
        nz and y M x K (the draws) -> M, each draw translating all n sources. ``discriminator``: the mean realism
        logit of ``dis_random``; ``neutral``: minus the mean change of the sources' colourless pixels
        (:func:`~gmdrit_cli.families.drit_losses.neutral_change`, the term of loss.keep_neutral); ``colour``: minus
        the sum of the draw's ranks (0 = best) by that change and by the share of its translations' pixels in hues
        the target domain's images ``targets`` (T x 3 x S x S in [-1, 1]) hardly have (the ``foreign_hue`` bins of
        docs/eval.md): a rank sum, so neither criterion's scale outweighs the other."""
        from ...evaluation.metrics import colour as hues
        from ..drit_losses import neutral_change

        def histograms(images: torch.Tensor) -> torch.Tensor:
            return hues.colour_histograms(((images.float().clamp(-1, 1) + 1) * 127.5).round().byte().cpu())

        if method == "colour":
            foreign = hues.foreign_bins(histograms(targets).mean(dim=0))
        n, realism, changes, off_colour = content.shape[0], [], [], []
        for m, out in self.translations_of_draws(content, z, y, CRITIC_BATCH_DRAWS):
            if method == "discriminator":
                logits, _ = self.networks["dis_random"](out)
                realism.append(logits.flatten(1).mean(dim=1).view(m, n).mean(dim=1))
                continue
            changes += [float(neutral_change(sources, o)) for o in out.float().split(n)]
            if method == "colour":
                off_colour += [float(hues.foreign_share(histograms(o), foreign).mean()) for o in out.split(n)]
        if method == "discriminator":
            return torch.cat(realism)
        changes = torch.tensor(changes, dtype=torch.float64)
        if method == "neutral":
            return -changes.to(z.device)

        def ranks(values: torch.Tensor) -> torch.Tensor:
            return values.argsort(stable=True).argsort().double()

        return -(ranks(changes) + ranks(torch.tensor(off_colour, dtype=torch.float64))).to(z.device)

    @torch.no_grad()
    def _refit_by_selection(
        self, images: list[torch.Tensor], strength: float, method: str
    ) -> tuple[dict[str, torch.Tensor], list[dict]]:
        """Each p(z|y=k) moved ``strength`` of the way (mean and standard deviation) to the Gaussian of its best
        draws: CRITIC_DRAWS draws (fixed seed), each translating every image of the *other* domains
        (``images[d]``: N_d x 3 x S x S in [-1, 1]) into k's domain, scored by :meth:`_draw_scores`
        (``discriminator``: the run's random-attribute discriminator, the one trained on such translations;
        ``neutral``: how well the translations keep their inputs' white, grey and black pixels; ``colour``: that and
        how little of their colour falls in hues k's domain's own images lack); the top
        CRITIC_KEEP share is kept and its per-dimension mean and standard deviation fitted. Guided sampling
        (rejection of the draws a score dislikes) folded into the prior itself, so the export, its ONNX graphs and
        every sampler stay as they are."""
        G, per = self.networks["generator"], self.components_per_domain
        mean_weight, var_weight = G.prior_mean.weight.detach().clone(), G.prior_var.weight.detach().clone()
        generator, records = torch.Generator().manual_seed(0), []
        for d in range(len(images)):
            sources = torch.cat([x for other, x in enumerate(images) if other != d]).to(self.device)
            content = self.encode_content(sources)
            for k in range(d * per, (d + 1) * per):
                y = F.one_hot(torch.full((CRITIC_DRAWS,), k, device=self.device), self.num_components).float()
                old_mean, old_std = (t[0] for t in self.attribute_prior(y[:1]))
                noise = torch.randn((CRITIC_DRAWS, old_mean.shape[0]), generator=generator).to(self.device)
                z = old_mean + old_std * noise
                scores = self._draw_scores(sources, content, z, y, method, targets=images[d].to(self.device))
                kept = scores.topk(max(2, round(CRITIC_KEEP * CRITIC_DRAWS))).indices
                mean = old_mean + strength * (z[kept].mean(dim=0) - old_mean)
                std = old_std + strength * (z[kept].std(dim=0) - old_std)
                mean_weight[:, k] = mean - G.prior_mean.bias
                variance = (std.square() - VAR_FLOOR).clamp_min(1e-6)  # p(z|y)'s variance: softplus(W y + b) + floor
                var_weight[:, k] = variance + torch.log(-torch.expm1(-variance)) - G.prior_var.bias
                shift = ((mean - old_mean) / old_std).square().mean().sqrt()
                records.append(
                    {
                        "domain": d,
                        "component": k,
                        "source_images": len(sources),
                        "draws": CRITIC_DRAWS,
                        "kept": len(kept),
                        "score_all": float(scores.mean()),
                        "score_kept": float(scores[kept].mean()),
                        "shift_rms_std": float(shift),
                        "std_ratio": [round(float(r), 4) for r in std / old_std],
                        "moved": strength,
                    }
                )
        return {"generator.prior_mean.weight": mean_weight, "generator.prior_var.weight": var_weight}, records

    @torch.no_grad()
    def attribute_prior(self, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the attribute prior at ``y`` (N x K): p(z|y) in the ``inferred`` stage (also for
        soft y, as interpolation uses it), N(0, I) in the ``domain`` stage."""
        if not self.inferred:
            shape = (y.shape[0], self.cfg.model.nz)
            return (
                torch.zeros(shape, device=y.device, dtype=y.dtype),
                torch.ones(shape, device=y.device, dtype=y.dtype),
            )
        mean, var = self.networks["generator"].prior(y)
        return mean, var.sqrt()
