"""BicycleGAN (Zhu et al. 2017) for diverse paired translation A -> B, as the official code trains it
(docs/bicyclegan.md).

Domains: ``data.domains`` names [input A, output B] (after ``data.direction``); the model translates domain 0
into domain 1 only. Attributes are (z, condition) with z N x nz and the condition the one-hot of domain 1
(the generator is not conditioned on it; it is there for the common attribute interface). The "content" of
an input is the input image itself, reduced to ``data.input_channels``.

One training iteration (the official code's update of G, E and the two D) on a batch split into halves (A1, B1)
and (A2, B2):

1. (mu, logvar) = E(B1), z_enc = mu + eps * exp(logvar / 2), z_rand ~ N(0, I); F_enc = G(A1, z_enc) and
   F_rand = G(A1, z_rand) (A2 is never fed to G); mu2 = the mean of E(F_rand), computed with E's parameters
   kept out of autograd, so the latent L1 reaches G only.
2. One gradient of L_GAN + L_GAN2 + lambda_L1 L1 + lambda_kl KL + lambda_z |mu2 - z_rand| for G and E
   together (the discriminators only pass gradients) and one step of each: the official two backward
   passes give exactly these gradients.
3. D on (B1 real, F_enc fake), D2 on (B2 real, F_rand fake), with the fakes of step 1, detached; with
   ``use_same_d`` both losses on one D and one step.
"""

from __future__ import annotations

import torch
from torch import nn

from ...config.schema import Config
from ...data.unpaired import Batch
from ...training.engine import Engine
from ..base import Attributes, BenchmarkRow, Capabilities, ModelFamily, OptimizerGroup
from ..registry import register
from . import losses as L
from .nets import (
    MultiScalePatchGAN,
    ResnetEncoder,
    ResnetGenerator,
    UNetGenerator,
    encoder_blocks,
    init_xavier,
    unet_depth,
)

INPUT, OUTPUT = 0, 1
#: ITU-R 601 luma weights, Pillow's RGB -> L conversion: reduces a 3-channel input to the 1-channel A of
#: edges models (exact on the replicated gray images the paired loader gives)
LUMA = (0.299, 0.587, 0.114)


@register
class BicycleGAN(ModelFamily):
    name = "bicyclegan"
    description = "BicycleGAN: paired A -> B, U-Net G(A, z), residual E(B), two PatchGANs (Zhu et al. 2017)"
    #: 128 px (the report's setting: unet_128, resnet_128, batch 32) and 256 px (official edges2shoes: unet_256,
    #: resnet_256, batch 2); the sources give no time per iteration
    benchmark_rows = (
        BenchmarkRow(
            "bicyclegan",
            "BicycleGAN report unet_128, batch 32 [R2]",
            "bicyclegan_report_unet",
            128,
            resize_is_crop=True,
        ),
        BenchmarkRow("bicyclegan", "BicycleGAN official unet_256, batch 2", "edges2shoes", 256, resize_is_crop=True),
    )
    test_time_networks = ("generator", "encoder")
    # basic_128_multi: at 32 px the second scale of the 3-layer PatchGAN has no patch left
    tiny_overrides = ("bicyclegan.d_layers=2",)

    def __init__(self, cfg: Config, device: torch.device, training: bool = True):
        super().__init__(cfg, device, training)
        b, m, crop = cfg.bicyclegan, cfg.model, cfg.data.crop
        cin = cfg.data.input_channels
        if b.generator.startswith("unet"):
            generator = UNetGenerator(cin, 3, m.nz, m.width, unet_depth(crop), b.where_add, b.upsample, b.use_dropout)
        else:
            generator = ResnetGenerator(cin, 3, m.nz, m.width, blocks=6 if b.generator == "resnet_6blocks" else 9)
        nets = {"generator": generator, "encoder": ResnetEncoder(3, m.nz, m.width, encoder_blocks(crop))}
        d_in = cin + 3 if b.conditional_d else 3
        nets["discriminator"] = MultiScalePatchGAN(d_in, m.width, b.d_layers, b.num_ds)
        if not b.use_same_d:
            nets["discriminator2"] = MultiScalePatchGAN(d_in, m.width, b.d_layers, b.num_ds)
        for net in nets.values():
            init_xavier(net, 0.02)
        self.networks = nn.ModuleDict(nets).to(device)

    # -- training -------------------------------------------------------------------------------

    def optimizer_groups(self) -> list[OptimizerGroup]:
        """Adam for G, E (optim.lr_eg) and each D (optim.lr_dis); official: 2e-4, betas (0.5, 0.999), no decay."""
        o = self.cfg.optim
        return [
            OptimizerGroup(
                name, o.lr_dis if name.startswith("discriminator") else o.lr_eg, [{"params": list(net.parameters())}]
            )
            for name, net in self.networks.items()
        ]

    def iterations_per_epoch(self, dataset_len: int) -> int:
        """Full batches per epoch: the official loop skips the last partial batch."""
        return max(1, dataset_len // self.cfg.train.batch_size)

    def to_input_channels(self, images: torch.Tensor) -> torch.Tensor:
        """N x 3 x S x S -> N x C_in x S x S: the luma of each pixel when ``data.input_channels`` is 1."""
        if self.cfg.data.input_channels == 3 or images.shape[1] == 1:
            return images
        weights = images.new_tensor(LUMA).view(1, 3, 1, 1)
        return (images * weights).sum(dim=1, keepdim=True)

    def _d_input(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cat([a, b], dim=1) if self.cfg.bicyclegan.conditional_d else b

    def _d2(self) -> nn.Module:
        return self.networks["discriminator" if self.cfg.bicyclegan.use_same_d else "discriminator2"]

    def encoder_mean_without_parameter_gradients(self, images: torch.Tensor) -> torch.Tensor:
        """mu of E(images) with E's parameters out of autograd for this call: gradients reach ``images`` only."""
        encoder = self.networks["encoder"]
        flags = [p.requires_grad for p in encoder.parameters()]
        for p in encoder.parameters():
            p.requires_grad_(False)
        try:
            mu, _ = encoder(images)
        finally:
            for p, flag in zip(encoder.parameters(), flags):
                p.requires_grad_(flag)
        return mu

    def forward_pass(self, a: torch.Tensor, b: torch.Tensor, z_noise: torch.Tensor, z_rand: torch.Tensor) -> dict:
        """Step 1 on inputs ``a`` and outputs ``b`` (N x C x S x S, N even) with eps ``z_noise`` and z_rand
        (h x nz each): every tensor the losses need, nothing detached."""
        G, E = self.networks["generator"], self.networks["encoder"]
        h = a.shape[0] // 2
        a_in = self.to_input_channels(a)
        a1, b1, a2, b2 = a_in[:h], b[:h], a_in[h:], b[h:]
        mu, logvar = E(b1)
        z_enc = mu + z_noise * torch.exp(0.5 * logvar)
        # one G call on both halves: G is per-sample (instance norm), so this equals two calls
        fake_enc, fake_rand = G(torch.cat([a1, a1]), torch.cat([z_enc, z_rand.to(z_enc.dtype)])).split(h)
        mu2 = self.encoder_mean_without_parameter_gradients(fake_rand)
        return {
            "a1": a1,
            "b1": b1,
            "a2": a2,
            "b2": b2,
            "mu": mu,
            "logvar": logvar,
            "z_rand": z_rand,
            "fake_enc": fake_enc,
            "fake_rand": fake_rand,
            "mu2": mu2,
        }

    def encoder_generator_terms(self, t: dict) -> dict[str, torch.Tensor]:
        """The unweighted terms of the E/G objective (the official losses and reductions)."""
        D, D2 = self.networks["discriminator"], self._d2()
        return {
            "gan": L.lsgan(D(self._d_input(t["a1"], t["fake_enc"])), 1.0),
            "gan2": L.lsgan(D2(self._d_input(t["a1"], t["fake_rand"])), 1.0),
            "l1": L.l1_mean(t["fake_enc"], t["b1"]),
            "kl": L.kl_divergence(t["mu"], t["logvar"], self.cfg.bicyclegan.kl_reduction),
            "latent_l1": L.l1_mean(t["mu2"], t["z_rand"]),
        }

    def weighted_total(self, terms: dict[str, torch.Tensor]) -> torch.Tensor:
        b = self.cfg.bicyclegan
        return (
            b.lambda_gan * terms["gan"]
            + b.lambda_gan2 * terms["gan2"]
            + b.lambda_l1 * terms["l1"]
            + b.lambda_kl * terms["kl"]
            + b.lambda_z * terms["latent_l1"]
        )

    def discriminator_terms(self, t: dict) -> dict[str, torch.Tensor]:
        """D on (real B1, fake F_enc) and D2 on (real B2, fake F_rand); fakes detached (as the official step)."""
        D, D2 = self.networks["discriminator"], self._d2()
        fake_enc, fake_rand = t["fake_enc"].detach(), t["fake_rand"].detach()
        return {
            "dis": L.discriminator_loss(D(self._d_input(t["a1"], t["b1"])), D(self._d_input(t["a1"], fake_enc))),
            "dis2": L.discriminator_loss(D2(self._d_input(t["a2"], t["b2"])), D2(self._d_input(t["a1"], fake_rand))),
        }

    def train_step(self, batches: list[Batch], iteration: int, engine: Engine) -> dict[str, torch.Tensor]:
        batch = batches[-1]
        if batch.targets is None:
            raise ValueError("BicycleGAN trains on paired batches (Batch.targets); use a paired dataset")
        a, b = engine.to_device(batch.images), engine.to_device(batch.targets)
        h, nz = a.shape[0] // 2, self.cfg.model.nz
        z_noise = torch.randn(h, nz, device=a.device)
        z_rand = torch.randn(h, nz, device=a.device)
        with engine.autocast():
            t = self.forward_pass(a, b, z_noise, z_rand)
            terms = self.encoder_generator_terms(t)
        engine.joint_update(("encoder", "generator"), self.weighted_total(terms))
        with engine.autocast():
            d_terms = self.discriminator_terms(t)
        if self.cfg.bicyclegan.use_same_d:
            engine.update("discriminator", d_terms["dis"] + d_terms["dis2"])
        else:
            engine.update("discriminator", d_terms["dis"])
            engine.update("discriminator2", d_terms["dis2"])
        return {k: v.detach() for k, v in {**terms, **d_terms}.items()}

    @torch.no_grad()
    def sample_grid(self, examples: Batch) -> torch.Tensor:
        """One row per example pair: input, ground truth, the output with E(B)'s mean, then max(3,
        train.grid_random) outputs with random z (dropout off; the global RNG untouched)."""
        if examples.targets is None:
            raise ValueError("BicycleGAN's sample grid needs paired examples (Batch.targets)")
        self.eval_mode()
        try:
            a, b = examples.images.to(self.device), examples.targets.to(self.device)
            gen = torch.Generator(device=self.device).manual_seed(self.cfg.train.seed)
            k = max(3, self.cfg.train.grid_random)
            z_enc, _ = self.encode_reference(b)
            rows = []
            for i in range(a.shape[0]):
                z = torch.cat([z_enc[i : i + 1], torch.randn(k, self.cfg.model.nz, device=self.device, generator=gen)])
                condition = self.onehot(torch.full((k + 1,), OUTPUT, dtype=torch.long, device=self.device))
                fakes = self.generate(self.encode_content(a[i : i + 1]).expand(k + 1, -1, -1, -1), z, condition)
                shown = a[i].expand(3, -1, -1) if a.shape[1] == 1 else a[i]
                rows.append(torch.cat([shown[None], b[i : i + 1], fakes]))
            return torch.stack(rows)
        finally:
            for net in self.networks.values():
                net.train()

    # -- test time ------------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            components_per_domain=0,
            classifies_domains=False,
            paired_data=True,
            domain_conditioned=False,
            translation_tasks=((INPUT, OUTPUT),),
        )

    def _check_target(self, domain: int) -> None:
        if domain != OUTPUT:
            names = self.cfg.data.domains
            raise ValueError(
                f"BicycleGAN translates '{names[INPUT]}' into '{names[OUTPUT]}' only "
                f"(domain {OUTPUT}), not into domain {domain}"
            )

    @torch.no_grad()
    def translate(
        self,
        images: torch.Tensor,
        target: int,
        attributes: Attributes | None = None,
        generator: torch.Generator | None = None,
    ) -> torch.Tensor:
        self._check_target(target)
        return super().translate(images, target, attributes, generator)

    @torch.no_grad()
    def encode_content(self, images: torch.Tensor) -> torch.Tensor:
        """The input itself: N x 3 x S x S -> N x C_in x S x S."""
        return self.to_input_channels(images)

    @torch.no_grad()
    def generate(self, content: torch.Tensor, z: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """G(A N x C_in x S x S, z N x nz) -> N x 3 x S x S in (-1, 1); ``condition`` is not used."""
        return self.networks["generator"](content, z)

    @torch.no_grad()
    def sample_attributes(
        self,
        domain: int,
        n: int,
        component: int | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> Attributes:
        """n draws z ~ N(0, temperature^2 I) for the output domain, with its one-hot."""
        self._check_target(domain)
        if component is not None:
            raise ValueError("BicycleGAN has no mixture components (component must be None)")
        z = torch.randn((n, self.cfg.model.nz), device=self.device, generator=generator) * temperature
        return z, self.onehot(torch.full((n,), OUTPUT, dtype=torch.long, device=self.device))

    @torch.no_grad()
    def encode_reference(self, images: torch.Tensor, domains: torch.Tensor | None = None) -> Attributes:
        """z = the mean of E on output-domain images N x 3 x S x S (the official 'encoded' sample)."""
        if domains is not None and bool((domains != OUTPUT).any()):
            self._check_target(int(domains[domains != OUTPUT][0]))
        mu, _ = self.networks["encoder"](images)
        return mu, self.onehot(torch.full((images.shape[0],), OUTPUT, dtype=torch.long, device=images.device))

    @torch.no_grad()
    def attribute_prior(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """N(0, I): (zeros, ones) N x nz."""
        shape = (condition.shape[0], self.cfg.model.nz)
        return (
            torch.zeros(shape, device=condition.device, dtype=condition.dtype),
            torch.ones(shape, device=condition.device, dtype=condition.dtype),
        )
