"""Building blocks shared by the MDMM / GM-DRIT networks (those of the official MDMM code's ``networks.py``).

Conventions: tensors are ``N x C x H x W``; "IN" is ``InstanceNorm2d(affine=False)`` without
running statistics; "LN" is the MUNIT-style :class:`LayerNorm` defined here. Every convolution
has a bias unless said otherwise.

All blocks are pure ``nn.Module`` code: no device handling, no I/O.
"""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.nn.utils import parametrize
from torch.nn.utils.parametrizations import spectral_norm as _spectral_norm

from ..training import shard

__all__ = [
    "ReflectionPad2dSafe",
    "LeakyReLUConv2d",
    "ReLUINSConv2d",
    "INSResBlock",
    "LayerNorm",
    "ReLUINSConvTranspose2d",
    "ReLUINSResizeConv2d",
    "resize_conv",
    "UPSAMPLE_MODES",
    "upsample_block",
    "BasicBlock",
    "GaussianNoiseLayer",
    "tile",
    "conv_transpose_tiled",
    "init_conv_weights",
]

_NORMS = ("none", "instance")


def _check_norm(norm: str) -> str:
    norm = norm.lower()
    if norm not in _NORMS:
        raise ValueError(f"norm must be one of {_NORMS}, got {norm!r}")
    return norm


class ReflectionPad2dSafe(nn.Module):
    """Reflection padding by ``padding`` on all four sides: ``N x C x H x W -> N x C x (H+2p) x (W+2p)``.

    Identical to ``nn.ReflectionPad2d`` whenever that is defined (``padding < H`` and ``padding < W``).
    On maps too small to reflect (e.g. the 1x1 map reached by the image discriminator at crop 32)
    it falls back to replicate padding, the natural limit of reflecting a single pixel, so the
    networks also run at tiny crop sizes. Has no parameters.
    """

    def __init__(self, padding: int) -> None:
        super().__init__()
        self.padding = int(padding)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        p = self.padding
        if p == 0:
            return x
        mode = "reflect" if (p < x.shape[-2] and p < x.shape[-1]) else "replicate"
        return F.pad(x, (p, p, p, p), mode=mode)

    def extra_repr(self) -> str:
        return f"padding={self.padding}"


class LeakyReLUConv2d(nn.Module):
    """RP(p) -> Conv(k, stride s, pad 0, bias) -> [IN] -> LReLU(0.01).

    ``N x cin x H x W -> N x cout x H' x W'`` with ``H' = floor((H + 2p - k) / s) + 1``.

    ``norm``: ``"none"`` (default; this is what the official code always does, because its norm
    test compares two string literals and never fires) or ``"instance"`` (IN after the conv, as
    the official code intended). ``spectral_norm`` wraps the conv weight in spectral normalisation.
    IN has no parameters, so the parameter count does not depend on ``norm``.
    """

    def __init__(
        self,
        cin: int,
        cout: int,
        kernel_size: int,
        stride: int,
        padding: int = 0,
        norm: str = "none",
        spectral_norm: bool = False,
    ) -> None:
        super().__init__()
        norm = _check_norm(norm)
        conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=0, bias=True)
        # Gaussian init before (optionally) parametrising, so spectral norm's power iteration
        # starts from the weight actually used.
        nn.init.normal_(conv.weight, 0.0, 0.02)
        if spectral_norm:
            conv = _spectral_norm(conv)
        layers: list[nn.Module] = [ReflectionPad2dSafe(padding), conv]
        if norm == "instance":
            layers.append(nn.InstanceNorm2d(cout, affine=False, track_running_stats=False))
        layers.append(nn.LeakyReLU(0.01))
        self.model = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class ReLUINSConv2d(nn.Module):
    """RP(p) -> Conv(k, stride s, bias) -> IN -> ReLU.

    ``N x cin x H x W -> N x cout x H' x W'`` with ``H' = floor((H + 2p - k) / s) + 1``.
    """

    def __init__(self, cin: int, cout: int, kernel_size: int, stride: int, padding: int = 0) -> None:
        super().__init__()
        self.model = nn.Sequential(
            ReflectionPad2dSafe(padding),
            nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=0, bias=True),
            nn.InstanceNorm2d(cout, affine=False, track_running_stats=False),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


class INSResBlock(nn.Module):
    """Residual block ``x + [RP1 -> Conv3x3 -> IN -> ReLU -> RP1 -> Conv3x3 -> IN](x)``.

    ``N x c x H x W -> N x c x H x W``. No activation after the addition, no dropout.
    """

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.model = nn.Sequential(
            ReflectionPad2dSafe(1),
            nn.Conv2d(channels, channels, 3, stride=1, padding=0, bias=True),
            nn.InstanceNorm2d(channels, affine=False, track_running_stats=False),
            nn.ReLU(),
            ReflectionPad2dSafe(1),
            nn.Conv2d(channels, channels, 3, stride=1, padding=0, bias=True),
            nn.InstanceNorm2d(channels, affine=False, track_running_stats=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.model(x)


class LayerNorm(nn.Module):
    """MUNIT-style layer norm: ``N x C x H x W -> N x C x H x W``.

    Each sample is normalised jointly over (C, H, W) (biased variance, ``eps`` inside the square
    root), then a per-channel affine map is applied with ``weight``/``bias`` of shape ``C x 1 x 1``
    (init 1 / 0): 2*C parameters.
    """

    def __init__(self, num_channels: int, eps: float = 1e-5) -> None:
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_channels, 1, 1))
        self.bias = nn.Parameter(torch.zeros(num_channels, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # Expanding the per-channel affine to the normalised shape lets F.layer_norm do normalisation
        # and affine in one fused call.
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last):
            # channels-last: normalise the N x H x W x C view (contiguous, same elements per sample)
            # instead of letting F.layer_norm copy the map to NCHW and back
            nhwc = x.permute(0, 2, 3, 1)
            shape = nhwc.shape[1:]
            weight, bias = self.weight.permute(1, 2, 0).expand(shape), self.bias.permute(1, 2, 0).expand(shape)
            return F.layer_norm(nhwc, shape, weight, bias, self.eps).permute(0, 3, 1, 2)
        shape = x.shape[1:]
        return F.layer_norm(x, shape, self.weight.expand(shape), self.bias.expand(shape), self.eps)


class ReLUINSConvTranspose2d(nn.Module):
    """ConvTranspose 3x3 (bias) -> LN -> ReLU.

    ``stride=2`` (default, the official block): pad 1, output_padding 1, so
    ``N x cin x H x W -> N x cout x 2H x 2W`` exactly.
    ``stride=1``: pad 1, output_padding 0, resolution unchanged (the extra layer of the fork's
    "double transposed conv" option, the report [R1], section 5.3.2).
    """

    def __init__(self, cin: int, cout: int, stride: int = 2) -> None:
        super().__init__()
        if stride not in (1, 2):
            raise ValueError("stride must be 1 or 2")
        self.model = nn.Sequential(
            nn.ConvTranspose2d(cin, cout, 3, stride=stride, padding=1, output_padding=stride - 1, bias=True),
            LayerNorm(cout),
            nn.ReLU(),
        )

    def forward(self, x: torch.Tensor, vec: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: N x c x H x W; ``vec`` (N x L, optional): a vector tiled over space after ``x``'s
        channels (c + L = cin), computed without building the tiled map (:func:`conv_transpose_tiled`)."""
        conv, norm, relu = self.model
        out = conv(x) if vec is None else conv_transpose_tiled(conv, x, vec)
        return relu(norm(out))


class ReLUINSResizeConv2d(nn.Module):
    """Nearest-neighbour x2 resize -> RP1 -> Conv 3x3 (bias) -> LN -> ReLU: ``N x cin x H x W -> N x cout x 2H x 2W``.

    The drop-in replacement of :class:`ReLUINSConvTranspose2d` (stride 2) without its grid pattern: a 3x3 kernel
    at stride 2 covers the output pixels unevenly (some by one input tap per axis, some by two), which prints a
    period-2 grid on every image (Odena, Dumoulin and Olah 2016); a resize followed by a convolution treats every
    output pixel alike (MUNIT, StarGAN v2). Same parameter count as the transposed block.

    Computed without the resized map (:func:`resize_conv`): 2.25x fewer multiplications, the same numbers.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.conv = nn.Conv2d(cin, cout, 3, stride=1, padding=0, bias=True)
        self.norm = LayerNorm(cout)
        self.relu = nn.ReLU()

    def forward(self, x: torch.Tensor, vec: torch.Tensor | None = None) -> torch.Tensor:
        """``x``: N x c x H x W; ``vec`` (N x L, optional): a vector tiled over space after ``x``'s channels
        (c + L = cin). A tiled vector stays constant through the resize and the reflection pad, so its part of
        the convolution is one number per (sample, channel): added without building the tiled map."""
        weight = self.conv.weight
        if vec is None:
            return self.relu(self.norm(resize_conv(x, weight, self.conv.bias)))
        c = x.shape[1]
        out = resize_conv(x, weight[:, :c], self.conv.bias)
        per_channel = torch.einsum("nl,ol->no", vec.to(out.dtype), weight[:, c:].sum(dim=(2, 3)).to(out.dtype))
        return self.relu(self.norm(out + per_channel[:, :, None, None]))


def resize_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``conv3x3(reflection_pad1(nearest_x2(x)))`` in sub-pixel form: N x c x H x W -> N x cout x 2H x 2W.

    After a nearest x2 resize, a 3x3 kernel sees only 2 distinct input pixels per axis: even outputs ``2i`` take
    ``x[i-1]`` with tap 0 and ``x[i]`` with taps 1 + 2, odd outputs ``2i+1`` take ``x[i]`` with taps 0 + 1 and
    ``x[i+1]`` with tap 2. That is a stride-2 transposed convolution with the 4-tap kernel ``(w2, w1 + w2,
    w0 + w1, w0)`` per axis (``M @ w @ M^T`` below), 16 multiplications per input pixel instead of 36. The
    reflection pad of the resized map repeats the border pixel, i.e. a replicate pad of ``x``.
    """
    taps = torch.tensor([[0, 0, 1], [0, 1, 1], [1, 1, 0], [1, 0, 0]], dtype=weight.dtype, device=weight.device)
    kernel = torch.einsum("ak,oikl,bl->ioab", taps, weight, taps)  # cin x cout x 4 x 4, ConvTranspose layout
    return F.conv_transpose2d(F.pad(x, (1, 1, 1, 1), mode="replicate"), kernel, bias, stride=2, padding=3)


#: ``model.upsample``: how the MDMM / GM-DRIT generators double the resolution
UPSAMPLE_MODES = ("transposed", "resize_conv")


def upsample_block(cin: int, cout: int, mode: str = "transposed") -> nn.Module:
    """The x2 upsampling block of the generator: the official transposed 3x3 convolution or a resize-convolution."""
    if mode == "transposed":
        return ReLUINSConvTranspose2d(cin, cout, stride=2)
    if mode == "resize_conv":
        return ReLUINSResizeConv2d(cin, cout)
    raise ValueError(f"upsample must be one of {UPSAMPLE_MODES}, got {mode!r}")


class BasicBlock(nn.Module):
    """Down-sampling residual block of the attribute encoder (norm=None, nl=LReLU(0.2)).

    main:     LReLU(0.2) -> RP1 -> Conv3x3(cin->cin) -> LReLU(0.2) -> RP1 -> Conv3x3(cin->cout) -> AvgPool(2)
    shortcut: AvgPool(2) -> Conv1x1(cin->cout)
    output = main + shortcut; ``N x cin x H x W -> N x cout x floor(H/2) x floor(W/2)``.
    """

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.main = nn.Sequential(
            nn.LeakyReLU(0.2),
            ReflectionPad2dSafe(1),
            nn.Conv2d(cin, cin, 3, stride=1, padding=0, bias=True),
            nn.LeakyReLU(0.2),
            ReflectionPad2dSafe(1),
            nn.Conv2d(cin, cout, 3, stride=1, padding=0, bias=True),
            nn.AvgPool2d(2, 2),
        )
        self.shortcut = nn.Sequential(
            nn.AvgPool2d(2, 2),
            nn.Conv2d(cin, cout, 1, stride=1, padding=0, bias=True),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.main(x) + self.shortcut(x)


class GaussianNoiseLayer(nn.Module):
    """Adds i.i.d. N(0, 1) noise in training mode; identity in eval mode. Shape-preserving.

    The noise is drawn like ``torch.randn_like`` (input's device and dtype, global torch RNG), so a
    seeded global RNG makes it reproducible, and independent of how a batch is split across processes
    (:mod:`gmdrit_cli.training.shard`).
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return x
        return x + shard.randn_like(x)


def tile(vec: torch.Tensor, h: int, w: int) -> torch.Tensor:
    """Broadcast an ``N x L`` vector over space: returns an ``N x L x h x w`` view (no copy)."""
    n, length = vec.shape
    return vec.reshape(n, length, 1, 1).expand(n, length, h, w)


@lru_cache(maxsize=64)
def _constant_input_taps(size_in: int, kernel: int, stride: int, padding: int, output_padding: int):
    """Which kernel taps of a transposed convolution reach each output position along one axis.

    Returns (types: T x kernel 0/1 float, index: size_out long): output position o receives tap k
    from input position i when ``o = i*stride - padding + k`` and ``0 <= i < size_in``; positions with
    the same tap set share a type (at most three for the generator's layers: interior even, interior
    odd, border).
    """
    size_out = (size_in - 1) * stride - 2 * padding + kernel + output_padding
    rows, index = {}, []
    for o in range(size_out):
        taps = tuple(
            float((o + padding - k) % stride == 0 and 0 <= (o + padding - k) // stride < size_in) for k in range(kernel)
        )
        index.append(rows.setdefault(taps, len(rows)))
    return torch.tensor(list(rows)), torch.tensor(index)


def conv_transpose_tiled(conv: nn.ConvTranspose2d, x: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    """``conv(cat([x, tile(vec)], 1))`` without building the tiled map, exactly (up to rounding).

    x: N x c x H x W, vec: N x L with c + L = conv.in_channels -> N x cout x H' x W'.
    The convolution is linear, so the tiled part contributes ``sum over the taps that reach each output
    position of W[c:, :, ky, kx]^T vec``: a map with at most 3 x 3 distinct values per (sample, channel).
    MDMM's generator concatenates the attribute to every up-sampling layer this way; at nz = 108 the
    tiled channels are a third of dec3's input, convolved here as 3 x 3 numbers instead of a full map.
    """
    if conv.groups != 1 or conv.dilation != (1, 1):
        raise ValueError("conv_transpose_tiled supports groups=1 and dilation=1 (the generator's layers)")
    c = x.shape[1]
    weight = conv.weight
    out = F.conv_transpose2d(x, weight[:c], conv.bias, conv.stride, conv.padding, conv.output_padding)
    row_types, row_index = _constant_input_taps(
        x.shape[2], weight.shape[2], conv.stride[0], conv.padding[0], conv.output_padding[0]
    )
    col_types, col_index = _constant_input_taps(
        x.shape[3], weight.shape[3], conv.stride[1], conv.padding[1], conv.output_padding[1]
    )
    dev = out.device
    per_tap = torch.einsum("nl,lokj->nokj", vec.to(out.dtype), weight[c:].to(out.dtype))
    per_type = torch.einsum("ak,nokj,bj->noab", row_types.to(dev, out.dtype), per_tap, col_types.to(dev, out.dtype))
    return out + per_type.index_select(2, row_index.to(dev)).index_select(3, col_index.to(dev))


def init_conv_weights(module: nn.Module, std: float = 0.02) -> nn.Module:
    """Draw every Conv2d / ConvTranspose2d weight in ``module`` from N(0, std^2) (std 0.02).

    Biases keep PyTorch's default init; Linear and LN parameters are untouched (as the official MDMM init).
    For spectrally normalised convs the underlying (original) weight is re-drawn.
    Returns ``module`` for chaining.
    """
    # through nn.init (the same draws as Tensor.normal_) so that model loaders can switch it off
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            if parametrize.is_parametrized(m, "weight"):
                nn.init.normal_(m.parametrizations.weight.original, 0.0, std)
            else:
                nn.init.normal_(m.weight, 0.0, std)
    return module
