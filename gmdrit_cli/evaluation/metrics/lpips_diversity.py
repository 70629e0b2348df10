"""LPIPS diversity with the ``lpips`` package (richzhang), AlexNet trunk.

Diversity of a translation model (StarGAN v2 protocol): for each input, the LPIPS distance of every
pair among its M outputs (M (M - 1) / 2 pairs), averaged; then the mean over inputs.

The 1x1 linear layers ship inside the ``lpips`` wheel (``lpips/weights/v0.1/alex.pth``, or ``v0.0`` for
the BicycleGAN/MUNIT-era numbers, which are about 2.4x smaller); the AlexNet trunk is torchvision's
ImageNet AlexNet, taken from ``--lpips-backbone-weights PATH`` or torch-hub's cache/download
(``alexnet-owt-7be5be79.pth``). The network is built with ``pnet_rand=True`` (no download) and the trunk
weights are then loaded into it, so the same code path serves real weights and random test weights.

Each image's trunk features are computed once and every pair is compared from them; the result is the
same as calling ``lpips.LPIPS(a, b)`` on each pair.
"""

from __future__ import annotations

import re
import warnings
from pathlib import Path

import torch

from . import MetricError, WeightsError, random_pair_indices, sha256_file
from .fid import fetch_weights, load_state_dict_safely

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"
ALEXNET_URL = f"https://download.pytorch.org/models/{ALEXNET_FILE}"
VERSIONS = ("0.1", "0.0")
_SLICE_KEY = re.compile(r"^slice\d+\.(\d+)\.(weight|bias)$")


def load_alexnet_trunk(net: torch.nn.Module, state: dict[str, torch.Tensor], source: str) -> None:
    """Copy torchvision AlexNet weights (``features.<i>.weight/bias``; ``classifier.*`` ignored) into the
    ``lpips`` AlexNet trunk, whose layers keep torchvision's indices inside ``slice1..slice5``."""
    own = net.state_dict()
    new = {}
    for key, value in own.items():
        m = _SLICE_KEY.match(key)
        if not m:
            raise WeightsError(f"unexpected LPIPS trunk parameter {key}")
        name = f"features.{m.group(1)}.{m.group(2)}"
        if name not in state:
            raise WeightsError(
                f"LPIPS backbone weights {source} are not torchvision AlexNet weights: {name} is missing"
            )
        if tuple(state[name].shape) != tuple(value.shape):
            raise WeightsError(
                f"LPIPS backbone weights {source}: {name} has shape {tuple(state[name].shape)}, "
                f"AlexNet needs {tuple(value.shape)}"
            )
        new[key] = state[name].to(value.dtype)
    net.load_state_dict(new, strict=True)


class LPIPSDiversity:
    """LPIPS (AlexNet) distances and the per-input all-pairs diversity. Inputs are in [-1, 1]."""

    def __init__(
        self,
        version: str = "0.1",
        backbone_weights: str | Path | None = None,
        device: torch.device | str = "cpu",
        batch_size: int = 64,
        metric: str = "lpips",
    ):
        """``metric``: the --metrics name an error message tells the user to leave out."""
        if version not in VERSIONS:
            raise MetricError(f"--lpips-version must be one of {', '.join(VERSIONS)}, got {version!r}")
        self.version = version
        self.path, self.source = fetch_weights(
            backbone_weights, ALEXNET_FILE, ALEXNET_URL, "LPIPS (AlexNet backbone)", "--lpips-backbone-weights", metric
        )
        state, self.sha256 = load_state_dict_safely(self.path, "LPIPS AlexNet backbone", "--lpips-backbone-weights")
        import lpips

        with warnings.catch_warnings():  # lpips passes torchvision's deprecated `pretrained=`
            warnings.simplefilter("ignore")
            model = lpips.LPIPS(net="alex", version=version, pnet_rand=True, verbose=False)
        load_alexnet_trunk(model.net, state, str(self.path))
        self.linear_path = Path(lpips.__file__).parent / "weights" / f"v{version}" / "alex.pth"
        self.device = torch.device(device)
        self.model = model.to(self.device).eval()
        self.batch_size = batch_size

    def info(self) -> dict:
        from importlib.metadata import version

        return {
            "package": "lpips",
            "package_version": version("lpips"),
            "version": self.version,
            "net": "alex",
            "backbone": {"path": str(self.path), "source": self.source, "sha256": self.sha256, "file": self.path.name},
            "linear": {"file": f"lpips/weights/v{self.version}/alex.pth", "sha256": sha256_file(self.linear_path)},
            "input_range": "[-1, 1]",
            "resolution": "as generated (no resize)",
        }

    # -- features and distances -----------------------------------------------------------------

    @torch.no_grad()
    def features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Unit-normalised trunk features per layer (on this object's device) of N x 3 x H x W images in
        [-1, 1], computed in batches."""
        import lpips

        parts: list[list[torch.Tensor]] = []
        for i in range(0, len(images), self.batch_size):
            x = images[i : i + self.batch_size].to(self.device, torch.float32)
            if self.version == "0.1":
                x = self.model.scaling_layer(x)
            parts.append([lpips.normalize_tensor(f) for f in self.model.net(x)])
        return [torch.cat([p[layer] for p in parts]) for layer in range(len(parts[0]))]

    @torch.no_grad()
    def _pair_distances(self, feats: list[torch.Tensor], i: torch.Tensor, j: torch.Tensor) -> torch.Tensor:
        out = []
        for s in range(0, len(i), self.batch_size):
            a, b = i[s : s + self.batch_size], j[s : s + self.batch_size]
            total = 0
            for layer, f in enumerate(feats):
                diff = (f[a] - f[b]) ** 2
                total = total + self.model.lins[layer](diff).mean(dim=(2, 3)).flatten()
            out.append(total)
        return torch.cat(out) if out else torch.zeros(0, device=self.device)

    @torch.no_grad()
    def distance(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """LPIPS between matching rows of two N x 3 x H x W batches in [-1, 1]: N distances (CPU)."""
        if a.shape != b.shape:
            raise MetricError(f"LPIPS needs two batches of one shape, got {tuple(a.shape)} and {tuple(b.shape)}")
        feats = self.features(torch.cat([a, b]))
        n = len(a)
        idx = torch.arange(n, device=self.device)
        return self._pair_distances(feats, idx, idx + n).cpu()

    @torch.no_grad()
    def all_pairs(self, outputs: torch.Tensor) -> torch.Tensor:
        """LPIPS of every pair i < j of M outputs (M x 3 x H x W): M (M - 1) / 2 distances (CPU)."""
        m = len(outputs)
        if m < 2:
            raise MetricError("LPIPS diversity needs at least 2 outputs per input (--samples-per-input >= 2)")
        i, j = torch.triu_indices(m, m, offset=1, device=self.device)
        return self._pair_distances(self.features(outputs), i, j).cpu()

    def diversity(self, outputs: torch.Tensor) -> float:
        """Mean LPIPS over all pairs of the outputs of one input."""
        return float(self.all_pairs(outputs).double().mean())

    @torch.no_grad()
    def random_pairs(self, images: torch.Tensor, n_pairs: int, seed: int = 0) -> tuple[float, int]:
        """Set-level diversity: mean LPIPS over ``n_pairs`` random pairs of distinct images (all pairs when
        there are fewer), drawn with ``numpy.random.default_rng(seed)``. Returns (mean, pairs used)."""
        n = len(images)
        if n < 2:
            raise MetricError("set-level LPIPS needs at least 2 images")
        i_all, j_all = random_pair_indices(n, n_pairs, seed)
        feats = self.features(images)
        d = self._pair_distances(
            feats, torch.as_tensor(i_all, device=self.device), torch.as_tensor(j_all, device=self.device)
        )
        return float(d.double().mean()), len(i_all)


def write_random_alexnet_weights(path: str | Path, seed: int = 0) -> Path:
    """Save a randomly initialised torchvision AlexNet trunk (``features.*`` only, 10 MB) for offline tests.
    LPIPS with it is a valid computation but not a perceptual distance: its numbers mean nothing."""
    from torchvision.models import alexnet

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        trunk = alexnet(weights=None).features
    path = Path(path)
    torch.save({f"features.{k}": v.clone() for k, v in trunk.state_dict().items()}, path)
    return path
