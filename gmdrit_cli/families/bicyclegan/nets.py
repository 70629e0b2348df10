"""BicycleGAN's networks, as the official code's ``models/networks.py`` builds them (docs/bicyclegan.md): the U-Net
generator with z injection, the residual encoder, the multi-scale PatchGAN discriminator, and the BicycleGAN
report [R2]'s ResNet generator.

Conventions (the official code's): tensors are N x C x H x W; "IN" is ``InstanceNorm2d(affine=False)`` without running
statistics (no parameters, the same in train and eval mode); every convolution has a bias; activations are
out of place. Weights are drawn by :func:`init_xavier` (gain 0.02) when the family builds them.
"""

from __future__ import annotations

import math

import torch
import torch.nn as nn

__all__ = [
    "UNetGenerator",
    "ResnetGenerator",
    "ResnetEncoder",
    "MultiScalePatchGAN",
    "init_xavier",
    "unet_depth",
    "encoder_blocks",
    "tile_z",
]


def init_xavier(net: nn.Module, gain: float = 0.02) -> nn.Module:
    """Every Conv*/Linear weight ~ xavier_normal(gain) (std = gain * sqrt(2 / (fan_in + fan_out))), biases 0."""
    for m in net.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Linear)):
            nn.init.xavier_normal_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


def unet_depth(size: int) -> int:
    """Down blocks that take a ``size`` square down to 1 x 1 (7 at 128 px = unet_128, 8 at 256 px = unet_256)."""
    return int(round(math.log2(size)))


def encoder_blocks(size: int) -> int:
    """Residual blocks after the first stride-2 conv that leave an 8 x 8 map (3 at 128 px, 4 at 256 px)."""
    return int(round(math.log2(size))) - 4


def tile_z(z: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """z N x nz broadcast (not projected) to N x nz x H x W of ``like`` N x C x H x W."""
    return z[:, :, None, None].expand(-1, -1, like.shape[2], like.shape[3]).to(like.dtype)


class UNetGenerator(nn.Module):
    """G(A, z): A N x C_in x S x S in [-1, 1], z N x nz -> N x 3 x S x S in (-1, 1) (official
    ``G_Unet_add_all`` / ``G_Unet_add_input``).

    ``depth`` down blocks halve the size down to 1 x 1 (S = 2^depth). Block k (0 = outermost) maps
    ``width * min(2^(k-1), 8)`` channels (``C_in`` for k = 0) to ``width * min(2^k, 8)``; its down path is
    [LeakyReLU 0.2, Conv 4x4 s2, IN] (the outermost only the conv, the innermost no IN), its up path
    [ReLU, ConvT 4x4 s2 (or bilinear x2 + reflection pad + Conv 3x3), IN or Tanh (outermost), Dropout 0.5 on
    the 8*width blocks k = 4 .. depth - 2]. Every block but the outermost returns cat(up, its input without z).
    z (tiled to the block's input size) is concatenated after the features at the input of every block
    (``where_add='all'``) or of the outermost one only (``'input'``); never on the up path or the skips.
    """

    def __init__(
        self,
        in_channels: int = 3,
        out_channels: int = 3,
        nz: int = 8,
        width: int = 64,
        depth: int = 8,
        where_add: str = "all",
        upsample: str = "basic",
        use_dropout: bool = True,
    ):
        super().__init__()
        if where_add not in ("all", "input"):
            raise ValueError(f"where_add must be 'all' or 'input', got {where_add!r}")
        if depth < 2:
            raise ValueError(f"a U-Net needs at least 2 down blocks, got {depth}")
        self.nz, self.depth = nz, depth
        self.z_at = [nz > 0 and (where_add == "all" or k == 0) for k in range(depth)]
        outer = [in_channels] + [width * min(2 ** (k - 1), 8) for k in range(1, depth)]  # block inputs
        inner = [width * min(2**k, 8) for k in range(depth)]  # down outputs
        self.downs, self.ups = nn.ModuleList(), nn.ModuleList()
        for k in range(depth):
            conv = nn.Conv2d(outer[k] + (nz if self.z_at[k] else 0), inner[k], 4, 2, 1)
            if k == 0:
                self.downs.append(conv)
            elif k == depth - 1:
                self.downs.append(nn.Sequential(nn.LeakyReLU(0.2), conv))
            else:
                self.downs.append(nn.Sequential(nn.LeakyReLU(0.2), conv, nn.InstanceNorm2d(inner[k])))
            up_in = inner[k] if k == depth - 1 else 2 * inner[k]
            up_out = out_channels if k == 0 else outer[k]
            layers = [nn.ReLU(), *self._upsample(up_in, up_out, upsample)]
            if k == 0:
                layers.append(nn.Tanh())
            else:
                layers.append(nn.InstanceNorm2d(up_out))
                if use_dropout and 4 <= k <= depth - 2:
                    layers.append(nn.Dropout(0.5))
            self.ups.append(nn.Sequential(*layers))

    @staticmethod
    def _upsample(cin: int, cout: int, mode: str) -> list[nn.Module]:
        if mode == "basic":
            return [nn.ConvTranspose2d(cin, cout, 4, 2, 1)]
        if mode == "bilinear":
            return [nn.Upsample(scale_factor=2, mode="bilinear"), nn.ReflectionPad2d(1), nn.Conv2d(cin, cout, 3)]
        raise ValueError(f"upsample must be 'basic' or 'bilinear', got {mode!r}")

    def forward(self, a: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        skips = []
        h = a
        for k, down in enumerate(self.downs):
            skips.append(h)
            h = down(torch.cat([h, tile_z(z, h)], dim=1) if self.z_at[k] else h)
        for k in range(self.depth - 1, -1, -1):
            h = self.ups[k](h)
            if k > 0:
                h = torch.cat([h, skips[k]], dim=1)
        return h


class _ResidualBlock(nn.Module):
    """x + [ReflectPad 1, Conv 3x3, IN, ReLU, ReflectPad 1, Conv 3x3, IN](x), C x H x W -> C x H x W."""

    def __init__(self, channels: int):
        super().__init__()
        self.body = nn.Sequential(
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
            nn.ReLU(),
            nn.ReflectionPad2d(1),
            nn.Conv2d(channels, channels, 3),
            nn.InstanceNorm2d(channels),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.body(x)


class ResnetGenerator(nn.Module):
    """The BicycleGAN report [R2]'s ResNet generator (the report gives no layer detail; this is CycleGAN's
    ResNet generator, an assumption): z tiled and concatenated to A at the input;
    7x7 conv, two stride-2 downs, ``blocks`` residual blocks at S/4, two transposed-conv ups, 7x7 conv, Tanh.
    A N x C_in x S x S, z N x nz -> N x 3 x S x S."""

    def __init__(self, in_channels: int = 3, out_channels: int = 3, nz: int = 8, width: int = 64, blocks: int = 6):
        super().__init__()
        w = width
        layers: list[nn.Module] = [
            nn.ReflectionPad2d(3),
            nn.Conv2d(in_channels + nz, w, 7),
            nn.InstanceNorm2d(w),
            nn.ReLU(),
        ]
        for m in (1, 2):
            layers += [nn.Conv2d(w * m, w * 2 * m, 3, 2, 1), nn.InstanceNorm2d(w * 2 * m), nn.ReLU()]
        layers += [_ResidualBlock(4 * w) for _ in range(blocks)]
        for m in (4, 2):
            layers += [
                nn.ConvTranspose2d(w * m, w * m // 2, 3, 2, 1, output_padding=1),
                nn.InstanceNorm2d(w * m // 2),
                nn.ReLU(),
            ]
        layers += [nn.ReflectionPad2d(3), nn.Conv2d(w, out_channels, 7), nn.Tanh()]
        self.model = nn.Sequential(*layers)
        self.nz = nz

    def forward(self, a: torch.Tensor, z: torch.Tensor) -> torch.Tensor:
        return self.model(torch.cat([a, tile_z(z, a)], dim=1) if self.nz else a)


class _EncoderBlock(nn.Module):
    """Residual down block (official ``BasicBlock``): [IN, LReLU, Conv3x3 in->in, IN, LReLU, Conv3x3 in->out, AvgPool 2]
    + [AvgPool 2, Conv1x1 in->out]; in x H x W -> out x H/2 x W/2."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.main = nn.Sequential(
            nn.InstanceNorm2d(cin),
            nn.LeakyReLU(0.2),
            nn.Conv2d(cin, cin, 3, 1, 1),
            nn.InstanceNorm2d(cin),
            nn.LeakyReLU(0.2),
            nn.Conv2d(cin, cout, 3, 1, 1),
            nn.AvgPool2d(2),
        )
        self.shortcut = nn.Sequential(nn.AvgPool2d(2), nn.Conv2d(cin, cout, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x)


class ResnetEncoder(nn.Module):
    """E(B): B N x C x S x S -> (mu, logvar), each N x nz (official ``E_ResNet``; ``blocks`` = 3 is
    resnet_128, 4 resnet_256).

    Conv 4x4 s2 (C -> width), then ``blocks`` residual blocks width*min(4, i) -> width*min(4, i + 1) for i = 1..,
    then LeakyReLU 0.2 and AvgPool 8 on the 8 x 8 map, and two linear heads (mu, log sigma^2; no activation).
    """

    def __init__(self, in_channels: int = 3, nz: int = 8, width: int = 64, blocks: int = 4):
        super().__init__()
        layers: list[nn.Module] = [nn.Conv2d(in_channels, width, 4, 2, 1)]
        for i in range(1, blocks + 1):
            layers.append(_EncoderBlock(width * min(4, i), width * min(4, i + 1)))
        layers += [nn.LeakyReLU(0.2), nn.AvgPool2d(8)]
        self.trunk = nn.Sequential(*layers)
        features = width * min(4, blocks + 1)
        self.fc = nn.Linear(features, nz)
        self.fc_var = nn.Linear(features, nz)

    def forward(self, b: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        h = self.trunk(b).flatten(1)
        return self.fc(h), self.fc_var(h)


class MultiScalePatchGAN(nn.Module):
    """The official ``D_NLayersMulti``: ``scales`` PatchGANs without shared weights; scale s sees the input average-
    pooled s times (3x3, stride 2, padding 1, padding not counted) with width round(width / 2^s).
    x N x C x S x S -> list of ``scales`` patch maps N x 1 x H_s x H_s (no sigmoid)."""

    def __init__(self, in_channels: int = 3, width: int = 64, layers: int = 3, scales: int = 2):
        super().__init__()
        self.nets = nn.ModuleList(self._patchgan(in_channels, int(round(width / 2**s)), layers) for s in range(scales))
        self.down = nn.AvgPool2d(3, stride=2, padding=1, count_include_pad=False)

    @staticmethod
    def _patchgan(cin: int, f: int, layers: int) -> nn.Sequential:
        mods: list[nn.Module] = [nn.Conv2d(cin, f, 4, 2, 1), nn.LeakyReLU(0.2)]
        for n in range(1, layers):
            mods += [
                nn.Conv2d(f * min(2 ** (n - 1), 8), f * min(2**n, 8), 4, 2, 1),
                nn.InstanceNorm2d(f * min(2**n, 8)),
                nn.LeakyReLU(0.2),
            ]
        last = f * min(2 ** (layers - 1), 8)
        mods += [
            nn.Conv2d(last, f * min(2**layers, 8), 4, 1, 1),
            nn.InstanceNorm2d(f * min(2**layers, 8)),
            nn.LeakyReLU(0.2),
            nn.Conv2d(f * min(2**layers, 8), 1, 4, 1, 1),
        ]
        return nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        out = []
        for s, net in enumerate(self.nets):
            if s:
                x = self.down(x)
            out.append(net(x))
        return out
