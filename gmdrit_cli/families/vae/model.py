"""The single-encoder VAE translator (family ``vae``; the VAE report [R3]; docs/vae.md).

One encoder E shared by both domains X and Y (``data.domains`` order) and decoders of one shape, trained in
phases (the trainer runs them, :meth:`VAE.phases`):

1. ``shared``: E and the shared decoder on X and Y together (``vae.epochs_shared`` epochs);
2. ``decoder_x``: a fresh decoder D_X on X alone, E frozen (``vae.epochs_decoder`` epochs);
3. ``decoder_y``: a fresh decoder D_Y on Y alone, E frozen.

Each phase starts fresh Adam states and restarts the exponential schedule. ``vae.encoder_freeze: full`` (as the
report says) freezes all of E and runs its BatchNorm on the running statistics; ``conv_only`` (the report's code)
keeps training the fc_mu / fc_var heads, with a fresh optimizer per decoder phase, and lets BatchNorm update.

Test time, in the contract's terms: the content code of x is its posterior (mu, logvar), N x 2J; an
attribute is (z, condition) with condition = [target one-hot, a]:

* a = 0: z is the reparameterisation noise, the decoded code is mu + sigma * z (z = 0: gmdrit's default translation
  D_target(mu_E(x)); random attributes z ~ N(0, T^2 I): draws from q(z|x));
* a = 1 (a reference): z is the reference's own code mu_E(r), decoded as it is; interpolating two references
  walks between their codes. The input's code is not used.

Condition rows that are not one-hot mix the decoders' outputs with those weights (``--between domains``).
Images enter as [-1, 1] and are trained against [0, 1] targets (the report's ToTensor range); outputs are
clamped to [0, 1] and returned in [-1, 1].
"""

from __future__ import annotations

import torch
from torch import nn

from ...config.schema import Config
from ...data.unpaired import Batch
from ...errors import ConfigError
from ...training.engine import Engine
from .. import drit
from ..base import Attributes, BenchmarkRow, Capabilities, ModelFamily, OptimizerGroup, Phase
from ..registry import register
from .losses import vae_loss
from .nets import VAEDecoder, VAEEncoder

DECODERS = ("decoder_x", "decoder_y")  # the decoders of domains 0 (X) and 1 (Y)


def to_unit(images: torch.Tensor) -> torch.Tensor:
    """[-1, 1] -> [0, 1] (the report's targets)."""
    return (images + 1.0) / 2.0


def from_unit(images: torch.Tensor) -> torch.Tensor:
    """Decoder outputs -> images in [-1, 1]: clamped to [0, 1] first, as the report's image writer does."""
    return images.clamp(0.0, 1.0) * 2.0 - 1.0


@register
class VAE(ModelFamily):
    name = "vae"
    description = "single-encoder VAE: one encoder, a shared then one decoder per domain, two phases (VAE report)"
    #: the report's 256 px and batch 64, one row per phase (the VAE report gives only the wall time of a whole
    #: run, about 80 min on one Colab GPU, so there is no figure per iteration to compare with)
    benchmark_rows = (
        BenchmarkRow("vae_phase1", "VAE phase 1: E + shared D, batch 64", "vae_apple2orange", 256, phase="shared"),
        BenchmarkRow(
            "vae_phase2", "VAE phase 2: one D, E frozen, batch 64", "vae_apple2orange", 256, phase="decoder_x"
        ),
    )
    test_time_networks = ("encoder", *DECODERS)

    def __init__(self, cfg: Config, device: torch.device, training: bool = True):
        super().__init__(cfg, device, training)
        if cfg.num_domains != 2:
            raise ConfigError(f"model.family vae: data.domains must name two domains (X and Y), got {cfg.data.domains}")
        m, v = cfg.model, cfg.vae
        size = cfg.data.crop
        try:
            nets = {"encoder": VAEEncoder(size, m.nz, m.width, v.layers)}
            nets.update({name: VAEDecoder(size, m.nz, m.width, v.layers) for name in ("decoder_shared", *DECODERS)})
        except ValueError as exc:
            raise ConfigError(f"data.crop / vae.layers: {exc}") from None
        self.networks = nn.ModuleDict(nets).to(device)

    # -- training -------------------------------------------------------------------------------

    def optimizer_groups(self) -> list[OptimizerGroup]:
        """Adam per network at ``optim.lr_eg`` (the report's code: 5e-4); the phases say which of them step when."""
        return [
            OptimizerGroup(name, self.cfg.optim.lr_eg, [{"params": list(net.parameters())}])
            for name, net in self.networks.items()
        ]

    def phases(self) -> list[Phase]:
        v = self.cfg.vae
        heads = ("encoder",) if v.encoder_freeze == "conv_only" else ()
        return [
            Phase("shared", v.epochs_shared, (0, 1), ("encoder", "decoder_shared")),
            *(Phase(name, v.epochs_decoder, (d,), (*heads, name)) for d, name in enumerate(DECODERS)),
        ]

    def train_step(self, batches: list[Batch], iteration: int, engine: Engine) -> dict[str, torch.Tensor]:
        """One Adam step on the batch, in the phase of ``iteration`` (phase 1 without a phase plan)."""
        span = engine.span_at(iteration)
        phase = span.phase.name if span is not None else "shared"
        x = engine.to_device(batches[-1].images)
        encoder = self.networks["encoder"]
        decoder_name = "decoder_shared" if phase == "shared" else phase
        full_freeze = phase != "shared" and self.cfg.vae.encoder_freeze == "full"
        with engine.autocast():
            if phase == "shared":
                mu, logvar = encoder(x)
            elif full_freeze:  # nothing of E changes: no gradient, BatchNorm on its running statistics
                encoder.eval()
                with torch.no_grad():
                    mu, logvar = encoder(x)
                encoder.train()
            else:  # conv_only: the conv stack frozen (its BatchNorm statistics still move), the heads train
                with torch.no_grad():
                    h = encoder.features(x)
                mu, logvar = encoder.heads(h)
            z = mu + torch.randn_like(mu) * torch.exp(0.5 * logvar)
            reconstruction = self.networks[decoder_name](z)
        # the loss in fp32 whatever the autocast precision (MS-SSIM multiplies small differences)
        terms = vae_loss(reconstruction.float(), to_unit(x).float(), mu.float(), logvar.float(), self.cfg.vae.kl_weight)
        if phase == "shared":
            names: tuple[str, ...] = ("encoder", "decoder_shared")
        else:
            names = (decoder_name,) if full_freeze else ("encoder", decoder_name)
        engine.joint_update(names, terms["loss"])
        return {k: v.detach() for k, v in terms.items()}

    @torch.no_grad()
    def sample_grid(self, examples: Batch) -> torch.Tensor:
        """One row per domain: input, shared-decoder reconstruction, own-decoder reconstruction, translation
        D_other(mu), translation with z drawn from q(z|x) (a fixed seed; global RNG untouched)."""
        was = {name: net.training for name, net in self.networks.items()}
        self.eval_mode()
        try:
            x = examples.images.to(self.device)
            mu, logvar = self.networks["encoder"](x)
            noise = torch.randn(mu.shape, generator=torch.Generator().manual_seed(0)).to(mu)
            sampled = mu + noise * torch.exp(0.5 * logvar)
            rows = []
            for d in range(x.shape[0]):
                own, other = DECODERS[d % 2], DECODERS[1 - d % 2]
                code, draw = mu[d : d + 1], sampled[d : d + 1]
                rows.append(
                    torch.cat(
                        [
                            x[d : d + 1],
                            *(
                                from_unit(self.networks[n](c))
                                for n, c in (("decoder_shared", code), (own, code), (other, code), (other, draw))
                            ),
                        ]
                    )
                )
            return torch.stack(rows).float().cpu()
        finally:
            for name, net in self.networks.items():
                net.train(was[name])

    # -- test time ------------------------------------------------------------------------------

    @property
    def capabilities(self) -> Capabilities:
        return Capabilities(
            components_per_domain=0,
            classifies_domains=False,
            paired_data=False,
            domain_conditioned=True,
            random_by_default=self.cfg.vae.test_sample_z,
        )

    @torch.no_grad()
    def encode_content(self, images: torch.Tensor) -> torch.Tensor:
        """Images N x 3 x S x S -> the posterior [mu, logvar], N x 2J."""
        mu, logvar = self.networks["encoder"](images)
        return torch.cat([mu, logvar], dim=1)

    @torch.no_grad()
    def generate(self, content: torch.Tensor, z: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """Decode: content [mu, logvar] N x 2J, z N x J, condition [domain weights, a] N x 3 (module doc) ->
        images N x 3 x S x S in [-1, 1]."""
        mu, logvar = content.chunk(2, dim=1)
        weights, a = condition[:, :2], condition[:, 2:3]
        code = (1 - a) * (mu + torch.exp(0.5 * logvar) * z) + a * z
        out = torch.zeros(code.shape[0], 3, self.cfg.data.crop, self.cfg.data.crop, device=code.device)
        for d, name in enumerate(DECODERS):
            rows = (weights[:, d] > 0).nonzero().squeeze(1)
            if len(rows):
                out[rows] += weights[rows, d, None, None, None] * self.networks[name](code[rows]).clamp(0.0, 1.0)
        return out * 2.0 - 1.0

    def generate_for_export(self, content: torch.Tensor, z: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        """:meth:`generate` without its row selection by domain (which a traced graph would freeze): every
        decoder runs on every row, weighted by the row's domain weight (0 for the other decoder, so the sum is
        the same image)."""
        mu, logvar = content.chunk(2, dim=1)
        weights, a = condition[:, :2], condition[:, 2:3]
        code = (1 - a) * (mu + torch.exp(0.5 * logvar) * z) + a * z
        out = 0
        for d, name in enumerate(DECODERS):
            out = out + weights[:, d, None, None, None] * self.networks[name](code).clamp(0.0, 1.0)
        return out * 2.0 - 1.0

    def _condition(self, domains: torch.Tensor, reference: bool) -> torch.Tensor:
        a = torch.full((domains.shape[0], 1), float(reference), device=domains.device)
        return torch.cat([self.onehot(domains), a], dim=1)

    @torch.no_grad()
    def sample_attributes(
        self,
        domain: int,
        n: int,
        component: int | None = None,
        generator: torch.Generator | None = None,
        temperature: float = 1.0,
    ) -> Attributes:
        """``n`` draws of the reparameterisation noise z ~ N(0, temperature^2 I) (n x J) for ``domain``:
        decoded as mu + sigma * z, samples of q(z|x)."""
        if not 0 <= domain < self.cfg.num_domains:
            raise ValueError(f"domain must be in 0..{self.cfg.num_domains - 1}, got {domain}")
        if component is not None:
            raise ValueError("the VAE has no mixture components (component must be None)")
        z = drit.randn((n, self.cfg.model.nz), torch.empty(0, device=self.device), generator) * temperature
        return z, self._condition(torch.full((n,), domain, dtype=torch.long, device=self.device), False)

    @torch.no_grad()
    def encode_reference(self, images: torch.Tensor, domains: torch.Tensor | None = None) -> Attributes:
        """The codes mu_E(r) of reference images N x 3 x S x S (N x J), to be decoded by the decoders of
        ``domains`` (N long, required)."""
        if domains is None:
            raise ValueError("the VAE's encode_reference needs the domains whose decoders decode the references")
        mu, _ = self.networks["encoder"](images)
        return mu, self._condition(domains.to(images.device), True)

    @torch.no_grad()
    def attribute_prior(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """N(0, I) for the reparameterisation noise: (zeros, ones), N x J."""
        shape = (condition.shape[0], self.cfg.model.nz)
        return (
            torch.zeros(shape, device=condition.device, dtype=condition.dtype),
            torch.ones(shape, device=condition.device, dtype=condition.dtype),
        )
