"""The single-encoder VAE's networks (the VAE report [R3]'s code; docs/vae.md): one encoder, decoders of one shape.

Layer count and image size (the report's code): every encoder layer halves the image (3x3 conv, stride 2, padding 1)
and every decoder layer doubles it (3x3 transposed conv, stride 2, padding 1, output padding 1), so with L
layers the bottleneck is S / 2^L pixels square and the fully connected layers have C_L * (S / 2^L)^2 inputs:
5 layers give 2 x 2 at 64 px (the stock PyTorch-VAE), 4 x 4 at 128 px and 8 x 8 at 256 px (the report).

Channels: ``width`` / 2 * 2^i in layer i (width 64: 32, 64, 128, 256, 512 as the report's code). BatchNorm with
PyTorch's defaults and LeakyReLU with PyTorch's default slope 0.01 after every (transposed) convolution;
PyTorch's default initialisation everywhere.
"""

from __future__ import annotations

import torch
from torch import nn

LEAKY_SLOPE = 0.01  # PyTorch's default, what the report's code used


def channels(width: int, layers: int) -> list[int]:
    """Channels of the encoder's layers, finest first (the decoder uses them in reverse)."""
    return [max(1, width // 2) * 2**i for i in range(layers)]


def bottleneck_side(image_size: int, layers: int) -> int:
    """Side of the bottleneck feature map: ``image_size / 2^layers``; ValueError unless a whole number >= 1."""
    side, rest = divmod(image_size, 2**layers)
    if side < 1 or rest:
        raise ValueError(
            f"{image_size} px does not halve {layers} times into whole pixels; use a size that is a "
            f"multiple of {2**layers} or fewer layers"
        )
    return side


class VAEEncoder(nn.Module):
    """Images B x 3 x S x S -> (mu, logvar), each B x J (logvar = log sigma^2)."""

    def __init__(self, image_size: int, latent: int, width: int = 64, layers: int = 5):
        super().__init__()
        dims = channels(width, layers)
        self.side = bottleneck_side(image_size, layers)
        blocks, c_in = [], 3
        for c in dims:
            blocks += [nn.Conv2d(c_in, c, 3, stride=2, padding=1), nn.BatchNorm2d(c), nn.LeakyReLU(LEAKY_SLOPE)]
            c_in = c
        self.convs = nn.Sequential(*blocks)
        features = dims[-1] * self.side**2
        self.fc_mu = nn.Linear(features, latent)
        self.fc_var = nn.Linear(features, latent)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The flattened bottleneck B x (C_L * side^2), in (C, H, W) order."""
        return self.convs(x).flatten(1)

    def heads(self, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.fc_mu(h), self.fc_var(h)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.heads(self.features(x))


class VAEDecoder(nn.Module):
    """Codes B x J -> images B x 3 x S x S in (-1, 1) (Tanh): a linear layer to the bottleneck (no norm or
    activation after it), ``layers`` transposed convolutions back to S px (the last keeps the finest channel
    count), then a 3x3 convolution to RGB."""

    def __init__(self, image_size: int, latent: int, width: int = 64, layers: int = 5):
        super().__init__()
        dims = channels(width, layers)
        self.side = bottleneck_side(image_size, layers)
        self.bottleneck_channels = dims[-1]
        self.fc = nn.Linear(latent, dims[-1] * self.side**2)
        ups = list(reversed(dims)) + [dims[0]]  # 512, 256, 128, 64, 32, 32 at width 64
        blocks = []
        for c_in, c_out in zip(ups[:-1], ups[1:]):
            blocks += [
                nn.ConvTranspose2d(c_in, c_out, 3, stride=2, padding=1, output_padding=1),
                nn.BatchNorm2d(c_out),
                nn.LeakyReLU(LEAKY_SLOPE),
            ]
        self.ups = nn.Sequential(*blocks)
        self.to_rgb = nn.Sequential(nn.Conv2d(dims[0], 3, 3, padding=1), nn.Tanh())

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        h = self.fc(z).view(-1, self.bottleneck_channels, self.side, self.side)
        return self.to_rgb(self.ups(h))
