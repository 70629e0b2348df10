"""Synthetic "neither" images for the domain classifier: what a failed translation looks like.

Every function returns float N x 3 x S x S images in [0, 1] and draws its randomness from the given
``torch.Generator`` only, so a seed fixes the whole set. Eight kinds:

* made from nothing: ``uniform`` (one random colour), ``pixel_noise`` (per-pixel noise, grey or per
  channel, around a random colour), ``smooth_noise`` (a 2-8 px random colour field upsampled bicubically),
  ``gradient`` (a linear ramp between two random colours at a random angle, a little noise);
* made from real images: ``blurred`` (downscaled to 2-6 px and back: colour blobs), ``channel_permuted``
  (the channel with the highest mean in the central half moved into blue, one of the two permutations
  doing so at random), ``inverted`` (255 - x) and ``hue_shifted`` (chroma rotated in YIQ so that the
  central half's mean hue lands in blue/cyan/violet, 100-190 degrees, chroma x 1-2).

The recoloured kinds aim at the failure gmdrit must catch, generator outputs that are a blue texture,
while avoiding colours real apples and oranges have: a free hue rotation or a red/green swap of a red
apple gives a green apple, which is a real apple, so recolouring always moves the dominant colour into
blue, cyan or violet.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

SYNTHETIC = ("uniform", "pixel_noise", "smooth_noise", "gradient")
FROM_REAL = ("blurred", "channel_permuted", "inverted", "hue_shifted")
KINDS = SYNTHETIC + FROM_REAL

# YIQ (NTSC) transform: hue is the angle of (I, Q), chroma its length
_RGB2YIQ = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ2RGB = torch.linalg.inv(_RGB2YIQ)
HUE_TARGET_DEG = (100.0, 190.0)


def _rand(gen: torch.Generator, *shape: int) -> torch.Tensor:
    return torch.rand(shape, generator=gen)


def uniform(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    return _rand(gen, n, 3, 1, 1).expand(n, 3, size, size).clone()


def pixel_noise(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    mean = _rand(gen, n, 3, 1, 1)
    amplitude = 0.1 + 0.9 * _rand(gen, n, 1, 1, 1)
    noise = _rand(gen, n, 3, size, size) - 0.5
    grey = _rand(gen, n, 1, 1, 1) < 0.5  # half the images: one noise value for all channels (tinted grey)
    noise = torch.where(grey, noise[:, :1].expand_as(noise), noise)
    return (mean + amplitude * noise).clamp(0, 1)


def smooth_noise(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    out = torch.empty(n, 3, size, size)
    res = torch.randint(2, 9, (n,), generator=gen)
    for i in range(n):
        r = int(res[i])
        field = _rand(gen, 1, 3, r, r)
        out[i] = F.interpolate(field, size=(size, size), mode="bicubic", align_corners=False)[0]
    return out.clamp(0, 1)


def gradient(n: int, size: int, gen: torch.Generator) -> torch.Tensor:
    c0, c1 = _rand(gen, n, 3, 1, 1), _rand(gen, n, 3, 1, 1)
    angle = _rand(gen, n, 1, 1) * 2 * math.pi
    coords = torch.linspace(-1, 1, size)
    yy, xx = torch.meshgrid(coords, coords, indexing="ij")
    t = (xx * torch.cos(angle) + yy * torch.sin(angle)) / math.sqrt(2) * 0.5 + 0.5  # n x S x S in [0, 1]
    img = c0 * (1 - t[:, None]) + c1 * t[:, None]
    noise = (_rand(gen, n, 3, size, size) - 0.5) * 0.1 * _rand(gen, n, 1, 1, 1)
    return (img + noise).clamp(0, 1)


def blurred(real: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n, _, size, _ = real.shape
    out = torch.empty_like(real)
    res = torch.randint(2, 7, (n,), generator=gen)
    for i in range(n):
        small = F.interpolate(real[i : i + 1], size=(int(res[i]),) * 2, mode="area")
        out[i] = F.interpolate(small, size=(size, size), mode="bilinear", align_corners=False)[0]
    return out.clamp(0, 1)


def _centre(x: torch.Tensor) -> torch.Tensor:
    s = x.shape[-1]
    return x[..., s // 4 : s - s // 4, s // 4 : s - s // 4]


def channel_permuted(real: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    dominant = _centre(real).mean(dim=(2, 3)).argmax(dim=1)  # N
    out = torch.empty_like(real)
    coin = torch.randint(0, 2, (len(real),), generator=gen)
    for i, c in enumerate(dominant.tolist()):
        others = [k for k in range(3) if k != c]
        if coin[i]:
            others.reverse()
        out[i] = real[i, [others[0], others[1], c]]  # new blue = the dominant channel
    return out


def inverted(real: torch.Tensor, gen: torch.Generator | None = None) -> torch.Tensor:
    return 1.0 - real


def hue_shifted(real: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    n = len(real)
    yiq = torch.einsum("ij,njhw->nihw", _RGB2YIQ, real)
    centre = _centre(yiq)
    chroma = centre[:, 1:].norm(dim=1, keepdim=True)  # weight the mean hue by chroma
    mean_iq = (centre[:, 1:] * chroma).sum(dim=(2, 3)) / chroma.sum(dim=(2, 3)).clamp_min(1e-6)
    current = torch.atan2(mean_iq[:, 1], mean_iq[:, 0])
    lo, hi = (math.radians(v) for v in HUE_TARGET_DEG)
    target = lo + (hi - lo) * _rand(gen, n)
    phi = (target - current)[:, None, None]
    gain = (1.0 + _rand(gen, n))[:, None, None]
    i, q = yiq[:, 1], yiq[:, 2]
    rotated = torch.stack(
        [yiq[:, 0], gain * (i * torch.cos(phi) - q * torch.sin(phi)), gain * (i * torch.sin(phi) + q * torch.cos(phi))],
        dim=1,
    )
    return torch.einsum("ij,njhw->nihw", _YIQ2RGB, rotated).clamp(0, 1)


def make(kind: str, n: int, size: int, gen: torch.Generator, real: torch.Tensor | None = None) -> torch.Tensor:
    """``n`` junk images of ``kind``; the kinds of :data:`FROM_REAL` transform ``real`` (N x 3 x S x S in
    [0, 1], exactly ``n`` of them)."""
    if kind in SYNTHETIC:
        return globals()[kind](n, size, gen)
    if kind not in FROM_REAL:
        raise ValueError(f"unknown junk kind {kind!r}")
    if real is None or len(real) != n:
        raise ValueError(f"junk kind {kind} needs {n} real images")
    return globals()[kind](real, gen)


def mixed(n: int, size: int, gen: torch.Generator, real_pool: torch.Tensor) -> torch.Tensor:
    """``n`` junk images, each of a kind drawn uniformly; the real-image kinds draw their sources
    uniformly from ``real_pool`` (M x 3 x S x S in [0, 1])."""
    kinds = torch.randint(0, len(KINDS), (n,), generator=gen)
    out = torch.empty(n, 3, size, size)
    for k, kind in enumerate(KINDS):
        idx = torch.nonzero(kinds == k).flatten()
        if len(idx) == 0:
            continue
        real = None
        if kind in FROM_REAL:
            real = real_pool[torch.randint(0, len(real_pool), (len(idx),), generator=gen)]
        out[idx] = make(kind, len(idx), size, gen, real)
    return out
