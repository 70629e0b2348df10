"""MDMM (multi-domain DRIT++), the baseline family: the official MDMM code's networks and training
step, with the differences docs/mdmm.md lists."""

from __future__ import annotations

import torch
from torch import nn

from ...config.schema import Config
from ...data.unpaired import Batch
from ...training.engine import Engine
from .. import drit
from ..base import BenchmarkRow, Capabilities, ModelFamily, OptimizerGroup
from ..drit import Translation
from ..registry import register
from .nets import build_mdmm_networks


@register
class MDMM(ModelFamily):
    name = "mdmm"
    description = "MDMM / DRIT++ baseline: Gaussian attribute N(0, I), domain one-hot code (Lee et al. 2019)"
    benchmark_rows = (
        BenchmarkRow("mdmm", "MDMM [5.5]", "mdmm_baseline", 108, 0.313, in_report_table=True),
        BenchmarkRow("mdmm", "MDMM [5.5]", "mdmm_baseline", 216, 0.615, in_report_table=True),
    )

    def __init__(self, cfg: Config, device: torch.device, training: bool = True):
        super().__init__(cfg, device, training)
        m = cfg.model
        nets = build_mdmm_networks(
            cfg.num_domains,
            cfg.data.crop,
            nz=m.nz,
            width=m.width,
            dis_norm=m.dis_norm,
            dis_spectral_norm=m.dis_spectral_norm,
            track_aggregate=self.uses_aggregate,
            upsample=m.upsample,
        )
        self.networks = nn.ModuleDict(nets).to(device)

    def optimizer_groups(self) -> list[OptimizerGroup]:
        """Adam per network (the official ``model.py``'s); D_c's learning rate is never decayed (official update_lr)."""
        return drit.optimizer_groups(self)

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            components_per_domain=0, classifies_domains=False, paired_data=False, domain_conditioned=True
        )

    @property
    def uses_aggregate(self) -> bool:
        """Random attributes from the running aggregate posterior of each domain instead of N(0, I)."""
        return self.cfg.model.random_attributes == "aggregate"

    @property
    def mode_seeking(self) -> bool:
        """Two random attributes per input and the mode-seeking term (loss.mode_seeking > 0)."""
        return self.cfg.loss.mode_seeking > 0

    # -- forward --------------------------------------------------------------------------------

    def encode_attribute(self, images: torch.Tensor, code: torch.Tensor, generator=None):
        """(mean, logvar, sample) of the attribute of Bx3xSxS images with their Bx C domain code."""
        mean, logvar = self.networks["attribute_encoder"](images, code)
        sample = mean + drit.randn(mean.shape, mean, generator) * torch.exp(0.5 * logvar)
        return mean, logvar, sample

    def random_attribute(self, n: int, like: torch.Tensor, generator=None) -> torch.Tensor:
        return drit.randn((n, self.cfg.model.nz), like, generator)

    def random_attributes_per_half(self, code: torch.Tensor, like: torch.Tensor, generator=None) -> torch.Tensor:
        """B x nz random attributes for the two halves of a batch (code B x C): one h x nz N(0, 1) draw shared
        by both halves (MDMM); with the aggregate posterior, that draw scaled and shifted to each half's
        domain statistics."""
        h = code.shape[0] // 2
        noise = self.random_attribute(h, like, generator)
        if not self.uses_aggregate:
            return torch.cat([noise, noise])
        mean, std = self.networks["attribute_encoder"].aggregate(code.argmax(dim=1))
        return (mean + std * torch.cat([noise, noise]).float()).to(like.dtype)

    def forward_pass(self, images: torch.Tensor, code: torch.Tensor, generator=None) -> Translation:
        """MDMM's forward pass on a batch (images Bx3xSxS, code BxC one-hot), nothing detached."""
        E_c, G = self.networks["content_encoder"], self.networks["generator"]
        h = images.shape[0] // 2
        content = E_c(images)
        mean, logvar, attr = self.encode_attribute(images, code, generator)
        attr_random = self.random_attributes_per_half(code, mean, generator)
        attr_random2 = self.random_attributes_per_half(code, mean, generator) if self.mode_seeking else None

        # The official code calls G once per output domain (3h samples each); G is per-sample (instance
        # and per-sample layer norms), so one call on all 6h samples gives the same outputs, faster.
        out = G(*drit.cross_generator_inputs(content, attr, code, attr_random, code, attr_random2))
        parts = out.split(h)
        fake_a_enc, fake_aa, fake_a_rand, fake_b_enc, fake_bb, fake_b_rand = parts[:6]
        fake_random2 = torch.cat(parts[6:]) if self.mode_seeking else None

        fake_encoded = torch.cat([fake_a_enc, fake_b_enc])
        content2 = E_c(fake_encoded)
        content2_b, content2_a = content2[:h], content2[h:]  # fake_a_enc carries B's content
        _, _, attr2 = self.encode_attribute(fake_encoded, code, generator)
        recon_a, recon_b = G(torch.cat([content2_a, content2_b]), attr2, code).split(h)

        fake_random = torch.cat([fake_a_rand, fake_b_rand])
        random_attr_mean, _ = self.networks["attribute_encoder"](fake_random, code)
        return Translation(
            content,
            mean,
            logvar,
            attr_random,
            fake_encoded,
            fake_random,
            torch.cat([fake_aa, fake_bb]),
            torch.cat([recon_a, recon_b]),
            random_attr_mean,
            attr_random2,
            fake_random2,
        )

    # -- losses ---------------------------------------------------------------------------------

    def encoder_generator_terms(self, images, code, t: Translation) -> dict[str, torch.Tensor]:
        """Weighted terms of L_EG (the official ``update_EG``, step 1)."""
        return drit.mdmm_encoder_generator_terms(self, images, code, t)

    def generator_alone_terms(self, images, code, t: Translation) -> dict[str, torch.Tensor]:
        """Weighted terms of L_G_alone (the official ``update_EG``, step 2)."""
        return drit.mdmm_generator_alone_terms(self, images, code, t)

    # -- training -------------------------------------------------------------------------------

    def batches_per_step(self) -> int:
        return drit.batches_per_step(self)

    def train_step(self, batches: list[Batch], iteration: int, engine: Engine) -> dict[str, torch.Tensor]:
        """MDMM's interleaving (the official ``train.py``); with the aggregate posterior, its running statistics follow
        each forward pass."""
        return drit.train_step(self, batches, engine, self._update_aggregate if self.uses_aggregate else None)

    def _update_aggregate(self, t: Translation, code: torch.Tensor) -> None:
        self.networks["attribute_encoder"].update_aggregate(
            t.attr_mean, t.attr_logvar, code.argmax(dim=1), self.cfg.model.aggregate_momentum
        )

    def sample_grid(self, examples: Batch) -> torch.Tensor:
        return drit.sample_grid(self, examples)

    # -- test-time API --------------------------------------------------------------------------

    @torch.no_grad()
    def encode_content(self, images: torch.Tensor) -> torch.Tensor:
        """E_c(images N x 3 x S x S) -> content N x 4w x S/4 x S/4 (noise-free in eval mode)."""
        return self.networks["content_encoder"](images)

    @torch.no_grad()
    def sample_attributes(
        self,
        domain: int,
        n: int,
        component: int | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``n`` random attributes for ``domain``: (z ~ N(0, temperature^2 I) n x nz, code = domain one-hot
        n x C).

        MDMM has no mixture components: ``component`` must be None. With ``model.random_attributes:
        aggregate`` the draws come from the domain's aggregate posterior (mean + temperature * std * N(0, I)).
        """
        if not 0 <= domain < self.cfg.num_domains:
            raise ValueError(f"domain must be in 0..{self.cfg.num_domains - 1}, got {domain}")
        if component is not None:
            raise ValueError("MDMM has no mixture components (component must be None)")
        z = torch.randn((n, self.cfg.model.nz), device=self.device, generator=generator) * temperature
        code = self.onehot(torch.full((n,), domain, dtype=torch.long, device=self.device))
        if self.uses_aggregate:
            mean, std = self.attribute_prior(code)
            z = mean + std * z
        return z, code

    @torch.no_grad()
    def encode_reference(
        self, images: torch.Tensor, domains: torch.Tensor | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Attributes of reference images N x 3 x S x S of ``domains`` (N long, required): (z = mean of E_a
        N x nz, code N x C). MDMM's attribute encoder is conditioned on the reference's domain code."""
        if domains is None:
            raise ValueError("MDMM's encode_reference needs the reference domains")
        code = self.onehot(domains.to(images.device))
        mean, _ = self.networks["attribute_encoder"](images, code)
        return mean, code

    @torch.no_grad()
    def attribute_prior(self, code: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std) of the attribute prior at conditioning ``code`` (N x C): N(0, I) for MDMM, or the
        aggregate posterior of the code's domain with ``model.random_attributes: aggregate``."""
        if self.uses_aggregate:
            mean, std = self.networks["attribute_encoder"].aggregate(code.argmax(dim=1))
            return mean.to(code.dtype), std.to(code.dtype)
        shape = (code.shape[0], self.cfg.model.nz)
        return (
            torch.zeros(shape, device=code.device, dtype=code.dtype),
            torch.ones(shape, device=code.device, dtype=code.dtype),
        )

    @torch.no_grad()
    def generate(self, content: torch.Tensor, z: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """G(content N x 4w x S/4 x S/4, z N x nz, code N x C) -> images N x 3 x S x S in (-1, 1)."""
        return self.networks["generator"](content, z, code)
