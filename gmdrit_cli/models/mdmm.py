"""MDMM (multi-domain DRIT++), the baseline family: reference sections 2-3, design page decisions."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from .. import losses, speed
from ..config import Config
from ..data import Batch
from ..nets.mdmm import build_mdmm_networks
from . import register
from .base import ModelFamily


def _like_param(grad: torch.Tensor | None, param: torch.Tensor) -> torch.Tensor | None:
    """``grad`` in ``param``'s memory layout. ``autograd.grad`` does not promise it (``.backward()``
    does): a channels-last conv weight can get a contiguous gradient, and CUDA's fused Adam refuses
    tensors of different strides (seen on an H200 with torch 2.11). Same values; a copy only on a mismatch."""
    if grad is None or grad.stride() == param.stride():
        return grad
    return torch.empty_like(param, dtype=grad.dtype).copy_(grad)


def _randn(shape, like: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
    return torch.randn(shape, device=like.device, dtype=like.dtype, generator=generator)


@dataclass
class Translation:
    """Every tensor of MDMM's ``forward()`` (reference 3.2). Batch halves: A = first h, B = last h."""

    content: torch.Tensor          # B x 256 x S/4 x S/4, noisy in train mode
    attr_mean: torch.Tensor        # B x nz
    attr_logvar: torch.Tensor      # B x nz
    attr_random: torch.Tensor      # B x nz: the random attribute of each half's fake_random (MDMM's prior:
                                   # one h x nz draw, repeated for both halves)
    fake_encoded: torch.Tensor     # B x 3 x S x S: [B-content in A's attribute/domain; A-content in B's]
    fake_random: torch.Tensor      # B x 3 x S x S: other half's content, random attribute, own domain
    self_recon: torch.Tensor       # B x 3 x S x S
    cycle_recon: torch.Tensor      # B x 3 x S x S
    random_attr_mean: torch.Tensor  # B x nz: attribute encoder's mean on fake_random (latent regression)
    attr_random2: torch.Tensor | None    # B x nz, with loss.mode_seeking > 0: a second random attribute
    fake_random2: torch.Tensor | None    # B x 3 x S x S: fake_random's inputs with attr_random2


@register
class MDMM(ModelFamily):
    name = "mdmm"
    description = "MDMM / DRIT++ baseline: Gaussian attribute N(0, I), domain one-hot code (Lee et al. 2019)"
    constant_lr = frozenset({"dis_content"})

    def __init__(self, cfg: Config, device: torch.device, training: bool = True):
        super().__init__(cfg, device, training)
        m = cfg.model
        nets = build_mdmm_networks(cfg.num_domains, cfg.data.crop, nz=m.nz, width=m.width,
                                   dis_norm=m.dis_norm, dis_spectral_norm=m.dis_spectral_norm,
                                   track_aggregate=self.uses_aggregate)
        self.networks = nn.ModuleDict(nets).to(device)
        self._build_optimizers()

    def _build_optimizers(self) -> None:
        """Adam per network (reference 3.6), and the speed settings that go with the networks.

        At test time (``training=False``) there are no optimizers and the networks run in fp32, contiguous
        and not compiled: deterministic, and no optimizer import cost."""
        if not self.training:
            self.amp_dtype, self.scaler, self.channels_last = None, None, False
            return
        sp = self.cfg.speed
        self.amp_dtype = speed.amp_dtype(sp.amp, self.device)
        self.scaler = speed.LossScaler() if self.amp_dtype == torch.float16 else None
        self.channels_last = speed.channels_last(sp.channels_last, self.device, self.amp_dtype)
        speed.keep_freed_memory(sp.keep_freed_memory, self.device)
        if self.channels_last:
            self.networks.to(memory_format=torch.channels_last)
        if sp.compile:
            # the two-step update takes two gradients of one graph (retain_graph=True), which compiled
            # backwards with donated buffers refuse
            import torch._functorch.config as functorch_config

            functorch_config.donated_buffer = False
            for net in self.networks.values():
                net.compile()  # in place: state_dict keys stay as they are
        o = self.cfg.optim
        lrs = {"dis_encoded": o.lr_dis, "dis_random": o.lr_dis, "dis_content": o.lr_content_dis,
               "content_encoder": o.lr_eg, "attribute_encoder": o.lr_eg, "generator": o.lr_eg}
        for name, net in self.networks.items():
            lr = lrs.get(name, o.lr_eg)
            self.base_lrs[name] = lr
            groups = [{**g, "lr": lr * g.get("lr_mult", 1.0)} for g in self.parameter_groups(name, net)]
            self.optimizers[name] = torch.optim.Adam(groups, lr=lr, betas=(o.beta1, o.beta2),
                                                     weight_decay=o.weight_decay,
                                                     **speed.optimizer_options(sp.optimizer))

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
        sample = mean + _randn(mean.shape, mean, generator) * torch.exp(0.5 * logvar)
        return mean, logvar, sample

    def random_attribute(self, n: int, like: torch.Tensor, generator=None) -> torch.Tensor:
        return _randn((n, self.cfg.model.nz), like, generator)

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

    def translate(self, images: torch.Tensor, code: torch.Tensor, generator=None) -> Translation:
        """MDMM's forward pass on a batch (images Bx3xSxS, code BxC one-hot), nothing detached."""
        E_c, G = self.networks["content_encoder"], self.networks["generator"]
        h = images.shape[0] // 2
        content = E_c(images)
        content_a, content_b = content[:h], content[h:]
        mean, logvar, attr = self.encode_attribute(images, code, generator)
        attr_a, attr_b = attr[:h], attr[h:]
        attr_random = self.random_attributes_per_half(code, mean, generator)
        code_a, code_b = code[:h], code[h:]
        contents = [content_b, content_a, content_b, content_a, content_b, content_a]
        attrs = [attr_a, attr_a, attr_random[:h], attr_b, attr_b, attr_random[h:]]
        codes = [code_a, code_a, code_a, code_b, code_b, code_b]
        attr_random2 = None
        if self.mode_seeking:
            attr_random2 = self.random_attributes_per_half(code, mean, generator)
            contents += [content_b, content_a]
            attrs += [attr_random2[:h], attr_random2[h:]]
            codes += [code_a, code_b]

        # The official code calls G once per output domain (3h samples each); G is per-sample (instance
        # and per-sample layer norms), so one call on all 6h samples gives the same outputs, faster.
        out = G(torch.cat(contents), torch.cat(attrs), torch.cat(codes))
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
        return Translation(content, mean, logvar, attr_random, fake_encoded, fake_random,
                           torch.cat([fake_aa, fake_bb]), torch.cat([recon_a, recon_b]), random_attr_mean,
                           attr_random2, fake_random2)

    # -- losses ---------------------------------------------------------------------------------

    def discriminator_losses(self, images, code, t: Translation) -> dict[str, torch.Tensor]:
        """Loss of each image discriminator on detached fakes (reference 3.4)."""
        out = {}
        for name, fake in (("dis_encoded", t.fake_encoded), ("dis_random", t.fake_random)):
            # one call on fakes and reals: D is per-sample (no batch statistics), and one call casts
            # and convolves its large 1024-channel weights once instead of twice
            n = fake.shape[0]
            logits, cls = self.networks[name](torch.cat([fake.detach(), images]))
            fake_logits, real_logits, real_cls = logits[:n], logits[n:], cls[n:]
            gan = losses.adversarial(real_logits, True) + losses.adversarial(fake_logits, False)
            out[name] = gan + self.cfg.loss.lambda_cls * losses.domain_classification(real_cls, code)
        return out

    def encoder_generator_terms(self, images, code, t: Translation) -> dict[str, torch.Tensor]:
        """Weighted terms of L_EG (reference 3.5, step 1)."""
        w = self.cfg.loss
        logits, cls = self.networks["dis_encoded"](t.fake_encoded)
        terms = {
            "adv_encoded": losses.adversarial(logits, True),
            "cls_encoded": w.lambda_cls_fake * losses.domain_classification(cls, code),
            "self_recon": w.lambda_rec * losses.l1(images, t.self_recon),
            "cycle_recon": w.lambda_rec * losses.l1(images, t.cycle_recon),
            "kl_content": w.kl_content * losses.content_penalty(t.content),
            "kl_attribute": w.kl_attribute * losses.kl_standard_normal(t.attr_mean, t.attr_logvar),
        }
        if self.cfg.model.use_content_dis:
            content_logits = self.networks["dis_content"](t.content)
            terms["adv_content"] = losses.domain_classification(content_logits, 1.0 - code)
        return terms

    def generator_alone_terms(self, images, code, t: Translation) -> dict[str, torch.Tensor]:
        """Weighted terms of L_G_alone (reference 3.5, step 2)."""
        w = self.cfg.loss
        h = images.shape[0] // 2
        logits, cls = self.networks["dis_random"](t.fake_random)
        terms = {
            "adv_random": losses.adversarial(logits, True),
            "cls_random": w.lambda_cls_fake * losses.domain_classification(cls, code),
            "latent": w.lambda_latent * (losses.l1(t.random_attr_mean[:h], t.attr_random[:h])
                                         + losses.l1(t.random_attr_mean[h:], t.attr_random[h:])),
        }
        return self.add_mode_seeking(terms, t)

    def add_mode_seeking(self, terms: dict[str, torch.Tensor], t: Translation) -> dict[str, torch.Tensor]:
        """``terms`` plus the weighted mode-seeking term when the step drew two random attributes."""
        if t.fake_random2 is not None:
            terms["mode_seeking"] = self.cfg.loss.mode_seeking * losses.mode_seeking(
                t.fake_random, t.fake_random2, t.attr_random, t.attr_random2)
        return terms

    # -- updates --------------------------------------------------------------------------------

    def _grads(self, loss: torch.Tensor, params: list[nn.Parameter], retain_graph: bool = False):
        """Gradients of ``loss``, loss-scaled under fp16 (None where the update must be skipped)."""
        if self.scaler is None:
            return list(torch.autograd.grad(loss, params, retain_graph=retain_graph, allow_unused=True))
        grads = list(torch.autograd.grad(loss * self.scaler.scale, params, retain_graph=retain_graph,
                                         allow_unused=True))
        return grads if self.scaler.unscale(grads) else None

    def _step(self, names: tuple[str, ...], grads: dict[nn.Parameter, torch.Tensor | None]) -> None:
        for name in names:
            for p in self.networks[name].parameters():
                p.grad = _like_param(grads.get(p), p)
            self.optimizers[name].step()
            for p in self.networks[name].parameters():
                p.grad = None  # leave no stale gradients behind

    def update_content_discriminator(self, batch: Batch) -> torch.Tensor:
        """Reference 3.3: BCE of D_c on the (noisy, detached) content code; grad-norm clipped."""
        D_c = self.networks["dis_content"]
        images = self._to_device(batch.images)
        with torch.no_grad(), self.autocast():
            content = self.networks["content_encoder"](images)
        with self.autocast():
            loss = losses.domain_classification(D_c(content), self.onehot(batch.domains.to(self.device)))
        params = list(D_c.parameters())
        grads = self._grads(loss, params)
        if grads is not None:
            for p, g in zip(params, grads):
                p.grad = _like_param(g, p)
            nn.utils.clip_grad_norm_(params, self.cfg.optim.content_dis_clip)
            self.optimizers["dis_content"].step()
            for p in params:
                p.grad = None
        return loss.detach()

    def update_discriminators(self, images, code, t: Translation) -> dict[str, torch.Tensor]:
        with self.autocast():
            d_losses = self.discriminator_losses(images, code, t)
        for name, loss in d_losses.items():
            params = list(self.networks[name].parameters())
            grads = self._grads(loss, params)
            if grads is not None:
                self._step((name,), dict(zip(params, grads)))
        return {k: v.detach() for k, v in d_losses.items()}

    def update_encoders_generator(self, images, code, t: Translation) -> dict[str, torch.Tensor]:
        """The two-step E/G update, design page option 1.

        Gradients of L_EG (for E_c, E_a, G) and of L_G_alone (for E_c, G) are both taken on the one
        forward graph before any step; then E_c, E_a, G take an Adam step with the first and E_c, G a
        second Adam step with the second. Equal to the official numerics, without a second forward.
        """
        with self.autocast():
            eg_terms = self.encoder_generator_terms(images, code, t)
            g_terms = self.generator_alone_terms(images, code, t)
        return self._two_step_update(eg_terms, g_terms)

    def _two_step_update(self, eg_terms, g_terms) -> dict[str, torch.Tensor]:
        eg_names = ("content_encoder", "attribute_encoder", "generator")
        g_names = ("content_encoder", "generator")
        eg_params = [p for n in eg_names for p in self.networks[n].parameters()]
        g_params = [p for n in g_names for p in self.networks[n].parameters()]
        loss_eg = sum(eg_terms.values())
        loss_g = sum(g_terms.values())
        grads_eg = self._grads(loss_eg, eg_params, retain_graph=True)
        grads_g = self._grads(loss_g, g_params)
        if grads_eg is not None and grads_g is not None:  # fp16 overflow skips the whole update
            self._step(eg_names, dict(zip(eg_params, grads_eg)))
            self._step(g_names, dict(zip(g_params, grads_g)))
            if self.scaler is not None:
                self.scaler.update()
        out = {k: v.detach() for k, v in {**eg_terms, **g_terms}.items()}
        out["loss_eg"] = loss_eg.detach()
        out["loss_g_alone"] = loss_g.detach()
        return out

    def autocast(self):
        return speed.autocast(self.device, self.amp_dtype)

    def _to_device(self, images: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cuda" and not images.is_pinned():
            images = images.pin_memory()  # lets the copy below overlap with compute
        images = images.to(self.device, non_blocking=True)
        return images.contiguous(memory_format=torch.channels_last) if self.channels_last else images

    def batches_per_step(self) -> int:
        return self.cfg.model.content_dis_every if self.cfg.model.use_content_dis else 1

    def train_step(self, batches: list[Batch], iteration: int) -> dict[str, torch.Tensor]:
        """MDMM's interleaving: with D_c on, every batch but the last updates D_c only (reference 3.1)."""
        out: dict[str, torch.Tensor] = {}
        for batch in batches[:-1]:
            out["dis_content"] = self.update_content_discriminator(batch)
        batch = batches[-1]
        images = self._to_device(batch.images)
        code = self.onehot(batch.domains.to(self.device, non_blocking=True))
        for net in self.networks.values():
            net.train()
        with self.autocast():
            t = self.translate(images, code)
        if self.uses_aggregate:
            self.networks["attribute_encoder"].update_aggregate(t.attr_mean, t.attr_logvar, code.argmax(dim=1),
                                                               self.cfg.model.aggregate_momentum)
        out.update(self.update_discriminators(images, code, t))
        out.update(self.update_encoders_generator(images, code, t))
        return out

    # -- display --------------------------------------------------------------------------------

    @torch.no_grad()
    def sample_grid(self, examples: Batch) -> torch.Tensor:
        """Row i: input of domain i, its translation to domain i+1 with the encoded attribute of the
        domain-(i+1) example and with a random attribute, its self-reconstruction and its cross-cycle
        reconstruction (the report's 2 x 5 layout for two domains). With ``train.grid_random`` = R > 1 the
        random-attribute column is followed by R - 1 more random-attribute outputs of the same input
        (rows x (4 + R)): several translations of one image, side by side."""
        for net in self.networks.values():
            net.eval()
        generator = torch.Generator(device=self.device).manual_seed(self.cfg.train.seed)
        images = examples.images.to(self.device)
        c = images.shape[0]
        rows = []
        for i in range(c):
            pair = torch.stack([images[i], images[(i + 1) % c]])
            code = self.onehot(torch.tensor([i, (i + 1) % c], device=self.device))
            t = self.translate(pair, code, generator)
            # B's call outputs (index 1) hold A's content in B's domain: the translation of row i
            extra = self.cfg.train.grid_random - 1
            more = []
            if extra > 0:
                z, y = self.sample_attributes((i + 1) % c, extra, None, generator)
                content = t.content[:1].expand(extra, -1, -1, -1)  # eval mode: the noise-free content of row i
                more = list(self.generate(content, z, y))
            rows.append(torch.stack([pair[0], t.fake_encoded[1], t.fake_random[1], *more, t.self_recon[0],
                                     t.cycle_recon[0]]))
        for net in self.networks.values():
            net.train()
        return torch.stack(rows)

    # -- test-time API (translate, interpolate; GM-DRIT overrides each with its mixture version) -------

    def eval_mode(self) -> None:
        """Networks in eval mode: the content encoder adds no noise."""
        for net in self.networks.values():
            net.eval()

    @torch.no_grad()
    def encode_content(self, images: torch.Tensor) -> torch.Tensor:
        """E_c(images N x 3 x S x S) -> content N x 4w x S/4 x S/4 (noise-free in eval mode)."""
        return self.networks["content_encoder"](images)

    @torch.no_grad()
    def sample_attributes(self, domain: int, n: int, component: int | None = None,
                          generator: torch.Generator | None = None,
                          temperature: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
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
    def encode_reference(self, images: torch.Tensor, domains: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Attributes of reference images N x 3 x S x S of ``domains`` (N long): (z = mean of E_a N x nz,
        code N x C). MDMM's attribute encoder is conditioned on the reference's domain code."""
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
        return (torch.zeros(shape, device=code.device, dtype=code.dtype),
                torch.ones(shape, device=code.device, dtype=code.dtype))

    @torch.no_grad()
    def generate(self, content: torch.Tensor, z: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        """G(content N x 4w x S/4 x S/4, z N x nz, code N x C) -> images N x 3 x S x S in (-1, 1)."""
        return self.networks["generator"](content, z, code)
