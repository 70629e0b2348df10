"""MDMM networks with ``concat=1``, as the official MDMM code's ``networks.py`` builds them (docs/mdmm.md).

Notation: ``N`` batch, ``C`` number of domains, ``S`` crop size (square images), ``s = S/4`` the
content-code resolution, ``nz`` the attribute-code length (8 in MDMM).

Pure ``nn.Module`` definitions: no I/O, optimisers or device logic. At 216 and 108 px every
network has exactly the official layers and parameter counts (reference table 2.7); the only
behavioural deviations are the project's documented fixes (working ``dis_norm``, size-agnostic
content discriminator, padding fall-backs that only engage where the official code would crash).
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..blocks import (
    BasicBlock,
    GaussianNoiseLayer,
    INSResBlock,
    LeakyReLUConv2d,
    ReflectionPad2dSafe,
    ReLUINSConv2d,
    ReLUINSConvTranspose2d,
    ReLUINSResizeConv2d,
    conv_transpose_tiled,
    init_conv_weights,
    tile,
    upsample_block,
)

__all__ = [
    "ContentEncoder",
    "AttributeBackbone",
    "AttributeEncoder",
    "Generator",
    "ImageDiscriminator",
    "ContentDiscriminator",
    "build_mdmm_networks",
]


class ContentEncoder(nn.Module):
    """Content encoder ``E_c`` (official ``MD_E_content``).

    forward(x: N x 3 x S x S) -> z_c: N x 256 x S/4 x S/4.
    In training mode N(0, 1) noise is added to the output (the noisy code is what the losses use);
    in eval mode the encoder is deterministic.
    """

    def __init__(self, width: int = 64) -> None:
        super().__init__()
        self.out_channels = 4 * width
        self.model = nn.Sequential(
            LeakyReLUConv2d(3, width, 7, 1, 3),
            ReLUINSConv2d(width, 2 * width, 3, 2, 1),
            ReLUINSConv2d(2 * width, 4 * width, 3, 2, 1),
            *[INSResBlock(4 * width) for _ in range(4)],
            GaussianNoiseLayer(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class AttributeBackbone(nn.Module):
    """Convolutional trunk of the attribute encoder (the first five layers of the official ``MD_E_attr_concat``).

    forward(x: N x in_channels x S x S) -> N x 256 pooled feature.
    RP1 -> Conv4x4 s2 (in->64) -> BasicBlock 64->128 -> 128->192 -> 192->256 -> LReLU(0.2)
    -> global average pool -> flatten. Reusable by encoders with other heads (GM-DRIT).
    """

    def __init__(self, in_channels: int, width: int = 64) -> None:
        super().__init__()
        self.out_features = 4 * width
        self.model = nn.Sequential(
            ReflectionPad2dSafe(1),
            nn.Conv2d(in_channels, width, 4, stride=2, padding=0, bias=True),
            BasicBlock(width, 2 * width),
            BasicBlock(2 * width, 3 * width),
            BasicBlock(3 * width, 4 * width),
            nn.LeakyReLU(0.2),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class AttributeEncoder(nn.Module):
    """Attribute encoder ``E_a``, concat version (official ``MD_E_attr_concat``).

    forward(x: N x 3 x S x S, c: N x C one-hot float) -> (mu: N x nz, logvar: N x nz).
    The domain code is tiled to S x S and concatenated after the image channels (3 + C input
    channels). No activation on mu or logvar; sampling is left to the model.
    """

    def __init__(self, num_domains: int, nz: int = 8, width: int = 64, track_aggregate: bool = False) -> None:
        super().__init__()
        self.num_domains = num_domains
        self.nz = nz
        self.backbone = AttributeBackbone(3 + num_domains, width)
        self.fc = nn.Linear(self.backbone.out_features, nz)
        self.fcVar = nn.Linear(self.backbone.out_features, nz)
        self.track_aggregate = track_aggregate
        if track_aggregate:
            # running per-domain mean and second moment of q(z|x,c) over the training images (C x nz),
            # starting at N(0, I); saved with the weights like BatchNorm's running statistics
            self.register_buffer("aggregate_mean", torch.zeros(num_domains, nz))
            self.register_buffer("aggregate_sq", torch.ones(num_domains, nz))

    def forward(self, x: torch.Tensor, c: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x_c = torch.cat([x, tile(c, x.shape[2], x.shape[3])], dim=1)
        h = self.backbone(x_c)
        return self.fc(h), self.fcVar(h)

    @torch.no_grad()
    def update_aggregate(
        self, mean: torch.Tensor, logvar: torch.Tensor, domains: torch.Tensor, momentum: float
    ) -> None:
        """Move the running statistics of each domain present in ``domains`` (N long) towards the batch's.

        mean, logvar: N x nz of q(z|x,c). The aggregate posterior's second moment per dimension is
        E[mu^2 + sigma^2] (a mixture of the per-image Gaussians), so its variance covers both the spread
        of the means across images and each posterior's own variance.
        """
        mean, var = mean.detach().float(), logvar.detach().float().exp()
        for d in domains.unique().tolist():
            rows = domains == d
            self.aggregate_mean[d].lerp_(mean[rows].mean(0), momentum)
            self.aggregate_sq[d].lerp_((mean[rows].pow(2) + var[rows]).mean(0), momentum)

    def aggregate(self, domains: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(mean, std), each N x nz, of the aggregate posterior of ``domains`` (N long)."""
        mean = self.aggregate_mean[domains]
        var = (self.aggregate_sq[domains] - mean.pow(2)).clamp_min(1e-6)
        return mean, var.sqrt()


class Generator(nn.Module):
    """Generator ``G``, concat version (official ``MD_G_multi_concat``; options of the report authors' fork).

    forward(z_c: N x 256 x s x s, z: N x nz, code: N x code_dim) -> image N x 3 x 4s x 4s in (-1, 1).

    ``code_dim`` defaults to ``num_domains`` (the domain one-hot); other families may pass a
    different conditioning vector. Channel arithmetic (t = 256 + code_dim + nz):
    dec_share INSResBlock(256) -> concat [out, code, z] (t) -> dec1 3 x INSResBlock(t)
    -> concat z (t + nz) -> dec2 ConvT up to floor((t + nz)/2) -> concat z -> dec3 ConvT up to
    floor(dec3_in/2) -> concat z -> dec4 ConvT1x1 -> 3, tanh. The code enters once, z four times.

    ``upsample``: ``transposed`` (the official ConvT 3x3 s2) or ``resize_conv`` (nearest x2, RP1, conv 3x3:
    no grid pattern, same parameters; :class:`~gmdrit_cli.families.blocks.ReLUINSResizeConv2d`) for dec2 and dec3.
    ``double_convT``: dec2 and dec3 each get an extra ConvT 3x3 s1 p1 (cout->cout) -> LN -> ReLU
    after the upsampling one. ``adain``: optional module applied to the dec_share output as
    ``adain(features, style)`` with ``style = cat([z, code], 1)`` (N x (nz + code_dim)); it must
    return features of the same shape.
    """

    def __init__(
        self,
        num_domains: int,
        nz: int = 8,
        code_dim: int | None = None,
        double_convT: bool = False,
        adain: nn.Module | None = None,
        width: int = 64,
        upsample: str = "transposed",
    ) -> None:
        super().__init__()
        self.num_domains = num_domains
        self.upsample = upsample
        self.nz = nz
        self.code_dim = num_domains if code_dim is None else code_dim
        self.double_convT = double_convT

        content_channels = 4 * width
        t = content_channels + self.code_dim + nz
        dec2_in = t + nz
        dec2_out = dec2_in // 2
        dec3_in = dec2_out + nz
        dec3_out = dec3_in // 2
        dec4_in = dec3_out + nz

        self.dec_share = INSResBlock(content_channels)
        self.adain = adain
        self.dec1 = nn.Sequential(*[INSResBlock(t) for _ in range(3)])
        self.dec2 = self._up(dec2_in, dec2_out)
        self.dec3 = self._up(dec3_in, dec3_out)
        self.dec4 = nn.Sequential(nn.ConvTranspose2d(dec4_in, 3, 1, stride=1, padding=0, bias=True), nn.Tanh())

    def _up(self, cin: int, cout: int) -> nn.Module:
        up = upsample_block(cin, cout, self.upsample)
        if not self.double_convT:
            return up
        return nn.Sequential(up, ReLUINSConvTranspose2d(cout, cout, stride=1))

    def forward(self, z_c: torch.Tensor, z: torch.Tensor, code: torch.Tensor) -> torch.Tensor:
        out = self.dec_share(z_c)
        if self.adain is not None:
            out = self.adain(out, torch.cat([z, code], dim=1))
        h, w = out.shape[2], out.shape[3]
        out = self.dec1(torch.cat([out, tile(code, h, w), tile(z, h, w)], dim=1))
        # dec2..dec4 see cat([out, tile(z)]) as in the official code; the tiled part is convolved
        # in closed form (conv_transpose_tiled), the same numbers without the big tiled maps
        out = self._up_with(self.dec2, out, z)
        out = self._up_with(self.dec3, out, z)
        return self.dec4[1](conv_transpose_tiled(self.dec4[0], out, z))

    @staticmethod
    def _up_with(block: nn.Module, x: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        if isinstance(block, (ReLUINSConvTranspose2d, ReLUINSResizeConv2d)):
            return block(x, z)
        up, extra = block
        return extra(up(x, z))


class ImageDiscriminator(nn.Module):
    """Image discriminator ``D1`` / ``D2`` (official ``MD_Dis``), single scale.

    forward(x: N x 3 x S x S) -> (realfake: N x 1 x (H6+2) x (W6+2) logits, cls: N x C logits),
    where H6 = size after six stride-2 convs (4 at S=216, 2 at S=108, 1 at S=32/64).

    Body: six LeakyReLUConv2d k3 s2 RP1, channels 3-64-128-256-512-1024-1024 (``norm`` and
    ``spectral_norm`` apply to these only). Head A: Conv1x1 1024->1 with zero padding 1 and no
    bias, so its outer ring is exactly 0 (kept on purpose: it is part of the official loss
    values). Head B: Conv kxk 1024->C, k = max(1, int(S/64)), no bias, then global average pool.
    """

    def __init__(
        self, crop_size: int, num_domains: int, norm: str = "none", spectral_norm: bool = False, width: int = 64
    ) -> None:
        super().__init__()
        chans = [3, width, 2 * width, 4 * width, 8 * width, 16 * width, 16 * width]
        self.body = nn.Sequential(
            *[
                LeakyReLUConv2d(chans[i], chans[i + 1], 3, 2, 1, norm=norm, spectral_norm=spectral_norm)
                for i in range(6)
            ]
        )
        self.cls_kernel = max(1, int(crop_size / 64))
        self.head_realfake = nn.Conv2d(chans[-1], 1, 1, stride=1, padding=1, bias=False)
        self.head_class = nn.Conv2d(chans[-1], num_domains, self.cls_kernel, stride=1, padding=0, bias=False)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.body(x)
        realfake = self.head_realfake(h)
        cls = self.head_class(h).mean(dim=(2, 3))
        return realfake, cls


class _PadForKernel(nn.Module):
    """Padding in front of a content-discriminator conv with kernel ``kernel``.

    Per spatial dimension of size L: if ``L + 2*reflect`` >= ``kernel`` (always true at 216 px),
    pad by ``reflect`` exactly as the official layer does (reflection; nothing for reflect=0).
    Otherwise zero-pad the unpadded map symmetrically by ``ceil((kernel - L)/2)`` per side, so
    the conv sees at least one full window. Has no parameters.
    """

    def __init__(self, reflect: int, kernel: int) -> None:
        super().__init__()
        self.reflect = reflect
        self.kernel = kernel
        self.reflect_pad = ReflectionPad2dSafe(reflect)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[2], x.shape[3]
        if h + 2 * self.reflect >= self.kernel and w + 2 * self.reflect >= self.kernel:
            return self.reflect_pad(x)
        ph = math.ceil((self.kernel - h) / 2) if h + 2 * self.reflect < self.kernel else self.reflect
        pw = math.ceil((self.kernel - w) / 2) if w + 2 * self.reflect < self.kernel else self.reflect
        return F.pad(x, (pw, pw, ph, ph), mode="constant", value=0.0)

    def extra_repr(self) -> str:
        return f"reflect={self.reflect}, kernel={self.kernel}"


class ContentDiscriminator(nn.Module):
    """Content discriminator ``D_c`` (official ``MD_Dis_content``), made size-agnostic (docs/mdmm.md).

    forward(z_c: N x 256 x s x s) -> N x C domain logits.

    Layers: 3 x [pad, Conv7x7 s2 256->256, LReLU(0.01)], [pad, Conv4x4 s1 256->256, LReLU(0.01)],
    global average pool, Conv1x1 256->C (bias). At z_c 54x54 (crop 216) the pads are the official
    RP1 / none, the 4x4 conv already outputs 1x1 and the pool is a no-op, so this is exactly the
    official network. On smaller maps a pad that would leave the map smaller than the kernel is
    replaced by a symmetric zero pad up to the kernel size (see ``_PadForKernel``). Same parameters
    at every size (10,683,906 for C=2). The official "Instance" request is not applied (as in
    the official code, where it never took effect).
    """

    def __init__(self, num_domains: int, width: int = 64) -> None:
        super().__init__()
        c = 4 * width
        layers: list[nn.Module] = []
        for _ in range(3):
            layers += [_PadForKernel(1, 7), LeakyReLUConv2d(c, c, 7, 2, 0)]
        layers += [_PadForKernel(0, 4), LeakyReLUConv2d(c, c, 4, 1, 0)]
        layers += [nn.AdaptiveAvgPool2d(1), nn.Conv2d(c, num_domains, 1, stride=1, padding=0, bias=True)]
        self.model = nn.Sequential(*layers)

    def forward(self, z_c: torch.Tensor) -> torch.Tensor:
        return self.model(z_c).flatten(1)


def build_mdmm_networks(
    num_domains: int,
    crop_size: int,
    nz: int = 8,
    dis_norm: str = "none",
    dis_spectral_norm: bool = False,
    width: int = 64,
    track_aggregate: bool = False,
    upsample: str = "transposed",
) -> dict[str, nn.Module]:
    """Construct and initialise the six MDMM networks (the official init: conv weights ~ N(0, 0.02^2)).

    Keys: "content_encoder", "attribute_encoder", "generator", "dis_encoded" (D1, judges images
    generated from encoded attributes), "dis_random" (D2, judges images from random attributes),
    "dis_content".
    """
    return assemble_networks(
        lambda: AttributeEncoder(num_domains, nz=nz, width=width, track_aggregate=track_aggregate),
        lambda: Generator(num_domains, nz=nz, width=width, upsample=upsample),
        num_domains,
        crop_size,
        dis_norm,
        dis_spectral_norm,
        width,
    )


def assemble_networks(
    make_attribute_encoder,
    make_generator,
    num_domains: int,
    crop_size: int,
    dis_norm: str,
    dis_spectral_norm: bool,
    width: int,
) -> dict[str, nn.Module]:
    """The six networks of a family: its own attribute encoder and generator (built by the two callables)
    with MDMM's content encoder and discriminators, in a fixed construction order, MDMM's init applied."""
    nets: dict[str, nn.Module] = {
        "content_encoder": ContentEncoder(width),
        "attribute_encoder": make_attribute_encoder(),
        "generator": make_generator(),
        "dis_encoded": ImageDiscriminator(crop_size, num_domains, dis_norm, dis_spectral_norm, width),
        "dis_random": ImageDiscriminator(crop_size, num_domains, dis_norm, dis_spectral_norm, width),
        "dis_content": ContentDiscriminator(num_domains, width),
    }
    for net in nets.values():
        init_conv_weights(net)
    return nets
