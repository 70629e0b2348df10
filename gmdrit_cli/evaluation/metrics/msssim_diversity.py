"""Diversity as 1 - MS-SSIM between the outputs of one input, with the ``pytorch-msssim`` package.

Per input: the mean of 1 - MS-SSIM over all M (M - 1) / 2 pairs of its M outputs; then the mean over
inputs (the LPIPS protocol of StarGAN v2 with another distance). The reference line is the same distance
over random pairs of distinct real test images of the target.

Scale rule. MS-SSIM (Wang et al. 2003) computes contrast-structure at every scale and SSIM at the
coarsest, halving the image between scales (2x2 average pooling), with an 11-px Gaussian window
(sigma 1.5) and the weights [0.0448, 0.2856, 0.3001, 0.2363, 0.1333] for 5 scales. pytorch-msssim's
``ms_ssim`` asserts ``side > (win - 1) * 2**4`` (the coarsest of 5 scales must be larger than the window)
whatever the number of weights, so it refuses images of 160 px or less. gmdrit keeps the window and
that condition, and lowers the number of scales instead:

    scales L = the largest l in 1..5 with side > (win - 1) * 2**(l - 1)    (win = 11)
    weights  = the first L standard weights (finest scales first), renormalised to sum to 1 when L < 5

so 32 px -> 2 scales, 64 px -> 3, 108/128 px -> 4, 216 px -> 5 (the library's own setting, equal to
``pytorch_msssim.ms_ssim``). Images of 10 px or less use one scale (plain SSIM) with the largest odd
window not larger than the side. Each scale's SSIM and contrast-structure terms come from pytorch-msssim's own
``_ssim`` (the function its ``ms_ssim`` calls); the product over scales is the same code as its
``ms_ssim`` (ReLU on each term, ``cs_1^w_1 ... cs_{L-1}^w_{L-1} ssim_L^w_L``). Pixels are 8-bit values
(data range 255), K = (0.01, 0.03), per image the mean over the 3 channels.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from . import MetricError, random_pair_indices

WINDOW = 11
SIGMA = 1.5
WEIGHTS = (0.0448, 0.2856, 0.3001, 0.2363, 0.1333)
K = (0.01, 0.03)
DATA_RANGE = 255.0


def scale_rule(side: int, window: int = WINDOW) -> tuple[int, int, list[float]]:
    """(number of scales, window size, weights) for square images of ``side`` pixels (see the module doc)."""
    if side < 3:
        raise MetricError(f"MS-SSIM needs images of at least 3 px, got {side}")
    levels = max((lv for lv in range(1, len(WEIGHTS) + 1) if side > (window - 1) * 2 ** (lv - 1)), default=0)
    if levels == 0:  # not larger than the window: one scale, the largest odd window that fits
        window = side if side % 2 else side - 1
        levels = 1
    if levels == len(WEIGHTS):  # the library's own weights, as they are (they sum to 1.0001)
        return levels, window, list(WEIGHTS)
    w = np.array(WEIGHTS[:levels], dtype=np.float64)
    return levels, window, [float(v) for v in w / w.sum()]


def _library():
    try:
        from pytorch_msssim.ssim import _fspecial_gauss_1d, _ssim
    except ImportError as exc:  # pragma: no cover - depends on the installed version
        raise MetricError(
            f"diversity_msssim needs pytorch-msssim >= 1.0 with pytorch_msssim.ssim._ssim "
            f"({exc}); pip install 'pytorch-msssim>=1.0'"
        ) from None
    return _fspecial_gauss_1d, _ssim


def ms_ssim(
    x: torch.Tensor,
    y: torch.Tensor,
    levels: int,
    window: int,
    weights: list[float],
    sigma: float = SIGMA,
    data_range: float = DATA_RANGE,
) -> torch.Tensor:
    """MS-SSIM of matching rows of two N x 3 x H x W batches of 8-bit-valued floats (or of ``data_range``):
    N values (mean over channels), ``levels`` scales with ``weights`` (finest first); differentiable."""
    gauss_1d, ssim_terms = _library()
    win = gauss_1d(window, sigma).repeat(x.shape[1], 1, 1, 1)
    w = x.new_tensor(weights)
    mcs = []
    for i in range(levels):
        ssim_per_channel, cs = ssim_terms(x, y, data_range=data_range, win=win, size_average=False, K=K)
        if i < levels - 1:
            mcs.append(torch.relu(cs))
            padding = [s % 2 for s in x.shape[2:]]
            x = F.avg_pool2d(x, kernel_size=2, padding=padding)
            y = F.avg_pool2d(y, kernel_size=2, padding=padding)
    terms = torch.stack(mcs + [torch.relu(ssim_per_channel)], dim=0)  # levels x N x C
    return torch.prod(terms ** w.view(-1, 1, 1), dim=0).mean(dim=1)


class MSSSIMDiversity:
    """1 - MS-SSIM distances for square images of one size. Inputs are uint8 N x 3 x S x S (or floats
    holding 8-bit values)."""

    def __init__(self, side: int, device: torch.device | str = "cpu", batch_size: int = 256):
        self.side = int(side)
        self.levels, self.window, self.weights = scale_rule(self.side)
        self.device = torch.device(device)
        self.batch_size = batch_size

    def info(self) -> dict:
        from importlib.metadata import version

        return {
            "package": "pytorch-msssim",
            "package_version": version("pytorch-msssim"),
            "image_size": self.side,
            "scales": self.levels,
            "window": self.window,
            "window_sigma": SIGMA,
            "weights": [round(w, 6) for w in self.weights],
            "k": list(K),
            "data_range": DATA_RANGE,
            "scale_rule": "scales = largest L in 1..5 with side > (window - 1) * 2^(L - 1), window 11; "
            "weights = first L of [0.0448, 0.2856, 0.3001, 0.2363, 0.1333], renormalised when L < 5; "
            "average pooling 2x2 between scales; per image mean over RGB channels",
            "distance": "1 - MS-SSIM on the saved 8-bit values",
        }

    @torch.no_grad()
    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """1 - MS-SSIM between matching rows of two N x 3 x S x S batches: N distances (float64, CPU)."""
        if a.shape != b.shape or a.ndim != 4 or min(a.shape[-2:]) != self.side:
            raise MetricError(
                f"MS-SSIM needs two batches of N x 3 x {self.side} x {self.side} images, got "
                f"{tuple(a.shape)} and {tuple(b.shape)}"
            )
        out = []
        for i in range(0, len(a), self.batch_size):
            x = a[i : i + self.batch_size].to(self.device, torch.float32)
            y = b[i : i + self.batch_size].to(self.device, torch.float32)
            out.append(1.0 - ms_ssim(x, y, self.levels, self.window, self.weights).double().cpu())
        return torch.cat(out) if out else torch.zeros(0, dtype=torch.float64)

    def diversity(self, outputs: torch.Tensor) -> float:
        """Mean 1 - MS-SSIM over all pairs i < j of the M outputs (M x 3 x S x S) of one input."""
        m = len(outputs)
        if m < 2:
            raise MetricError("MS-SSIM diversity needs at least 2 outputs per input (--samples-per-input >= 2)")
        i, j = torch.triu_indices(m, m, offset=1)
        return float(self.distance(outputs[i], outputs[j]).mean())

    def random_pairs(self, images: torch.Tensor, n_pairs: int, seed: int = 0) -> tuple[float, int]:
        """Set-level: mean 1 - MS-SSIM over ``n_pairs`` random pairs of distinct images (all pairs when there
        are fewer), drawn with ``numpy.random.default_rng(seed)``. Returns (mean, pairs used)."""
        n = len(images)
        if n < 2:
            raise MetricError("set-level MS-SSIM needs at least 2 images")
        i, j = random_pair_indices(n, n_pairs, seed)
        d = self.distance(images[torch.as_tensor(i)], images[torch.as_tensor(j)])
        return float(d.mean()), len(i)
