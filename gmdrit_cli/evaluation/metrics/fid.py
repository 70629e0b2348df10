"""FID and KID: the math on feature vectors, and torch-fidelity's InceptionV3 as the feature extractor.

Features are torch-fidelity's ``inception-v3-compat`` 2048-d pool features (the TF-FID Inception with
its TF1-compatible bilinear resize to 299 px), so numbers are comparable with the TTUR/MSGAN-era
protocol. The weights come from ``--inception-weights PATH`` or from torch-hub's cache/download
(``$TORCH_HOME/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth``); their SHA-256 is reported.
Weight files (``.pth``, the format these weights are published in) are read only with PyTorch's
restricted weights-only loader, which accepts tensors and plain containers and refuses anything that
would need arbitrary unpickling (see :func:`load_state_dict_safely`).
"""

from __future__ import annotations

import io
import os
import re
import socket
import stat
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import MetricError, WeightsError, sha256_bytes

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_URL = f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_FILE}"
#: set to 1 to forbid downloads of metric weights (then a missing file is an error at once)
OFFLINE_ENV = "GMDRIT_OFFLINE"


# ------------------------------------------------------------------------------------------ FID math


def feature_statistics(features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean (d) and unbiased covariance (d x d, ``np.cov`` with n - 1) of N x d features, in float64."""
    f = np.asarray(features, dtype=np.float64)
    if f.ndim != 2 or f.shape[0] < 2:
        raise MetricError(f"FID needs at least 2 feature vectors, got an array of shape {f.shape}")
    return f.mean(axis=0), np.cov(f, rowvar=False)


def psd_sqrt(sigma: np.ndarray) -> np.ndarray:
    """Symmetric square root of a symmetric positive semi-definite matrix (negative eigenvalues -> 0)."""
    sigma = (np.asarray(sigma, dtype=np.float64) + np.asarray(sigma, dtype=np.float64).T) / 2
    w, v = np.linalg.eigh(sigma)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


def frechet_distance(
    mu1: np.ndarray, sigma1: np.ndarray, mu2: np.ndarray, sigma2: np.ndarray, sqrt_sigma1: np.ndarray | None = None
) -> float:
    """Frechet distance between N(mu1, sigma1) and N(mu2, sigma2):

    ``|mu1 - mu2|^2 + tr(sigma1) + tr(sigma2) - 2 tr((sigma1 sigma2)^(1/2))``.

    The trace term is computed as ``sum(sqrt(eig(A sigma2 A)))`` with ``A = sigma1^(1/2)``: ``A sigma2 A``
    is symmetric PSD and similar to ``sigma1 sigma2``, so its eigenvalues are real and the result needs
    no complex arithmetic. Pass ``sqrt_sigma1`` to reuse ``A`` across many comparisons with one reference.
    """
    mu1, mu2 = np.asarray(mu1, dtype=np.float64), np.asarray(mu2, dtype=np.float64)
    sigma1, sigma2 = np.atleast_2d(sigma1).astype(np.float64), np.atleast_2d(sigma2).astype(np.float64)
    if mu1.shape != mu2.shape or sigma1.shape != sigma2.shape or sigma1.shape != (mu1.size, mu1.size):
        raise MetricError(f"FID statistics do not match: {mu1.shape}/{sigma1.shape} vs {mu2.shape}/{sigma2.shape}")
    a = psd_sqrt(sigma1) if sqrt_sigma1 is None else sqrt_sigma1
    m = a @ sigma2 @ a
    eig = np.linalg.eigvalsh((m + m.T) / 2)
    tr_covmean = float(np.sqrt(np.clip(eig, 0, None)).sum())
    diff = mu1 - mu2
    return float(diff @ diff + np.trace(sigma1) + np.trace(sigma2) - 2.0 * tr_covmean)


class FeatureSet:
    """Features of one image set (N x d) with their mean, centred copy and, when needed, covariance.

    :meth:`fid_to` avoids the d x d covariance when a set has fewer vectors than dimensions (the usual
    case with 2048-d Inception features): with centred feature matrices X1, X2 the covariances are
    ``Xi^T Xi / (ni - 1)``, the nonzero eigenvalues of ``sigma1 sigma2`` are the squared singular values
    of ``X2 X1^T / sqrt((n1 - 1)(n2 - 1))``, so ``tr((sigma1 sigma2)^(1/2))`` is that matrix's nuclear
    norm. Same number as :func:`frechet_distance` on the statistics, far less work.
    """

    def __init__(self, features: np.ndarray):
        f = np.asarray(features, dtype=np.float64)
        if f.ndim != 2 or f.shape[0] < 2:
            raise MetricError(f"FID needs at least 2 feature vectors, got an array of shape {f.shape}")
        self.features = f
        self.n, self.dims = f.shape
        self.mu = f.mean(axis=0)
        self.centred = f - self.mu
        self.trace = float((self.centred**2).sum() / (self.n - 1))
        self._sigma: np.ndarray | None = None
        self._sqrt: np.ndarray | None = None

    @classmethod
    def from_features(cls, features: np.ndarray) -> FeatureSet:
        return cls(features)

    @property
    def sigma(self) -> np.ndarray:
        if self._sigma is None:
            self._sigma = self.centred.T @ self.centred / (self.n - 1)
        return self._sigma

    @property
    def sqrt_sigma(self) -> np.ndarray:
        if self._sqrt is None:
            self._sqrt = psd_sqrt(self.sigma)
        return self._sqrt

    def fid_to(self, other: FeatureSet) -> float:
        """FID between this (reference) set and ``other``."""
        if other.dims != self.dims:
            raise MetricError(f"FID feature sizes differ: {self.dims} and {other.dims}")
        if min(self.n, other.n) < self.dims:
            cross = other.centred @ self.centred.T
            tr_covmean = float(np.linalg.svd(cross, compute_uv=False).sum() / np.sqrt((self.n - 1) * (other.n - 1)))
            diff = self.mu - other.mu
            return float(diff @ diff + self.trace + other.trace - 2.0 * tr_covmean)
        return frechet_distance(self.mu, self.sigma, other.mu, other.sigma, sqrt_sigma1=self.sqrt_sigma)


# ------------------------------------------------------------------------------------------ KID math


def polynomial_kernel(
    x: np.ndarray, y: np.ndarray, degree: int = 3, gamma: float | None = None, coef0: float = 1.0
) -> np.ndarray:
    """``(gamma <x, y> + coef0) ^ degree`` with ``gamma = 1 / d`` by default (the KID kernel)."""
    gamma = 1.0 / x.shape[1] if gamma is None else gamma
    return (x @ y.T * gamma + coef0) ** degree


def mmd2_unbiased(k_xx: np.ndarray, k_xy: np.ndarray, k_yy: np.ndarray) -> float:
    """Unbiased MMD^2 estimate from kernel matrices of two equally large samples (m x m each):
    mean of the off-diagonal k_xx, plus that of k_yy, minus twice the mean of all of k_xy."""
    m = k_xx.shape[0]
    if m < 2 or k_xx.shape != (m, m) or k_yy.shape != (m, m) or k_xy.shape != (m, m):
        raise MetricError(f"KID needs two samples of equal size >= 2, got kernels {k_xx.shape}, {k_yy.shape}")
    off_xx = k_xx.sum() - np.trace(k_xx)
    off_yy = k_yy.sum() - np.trace(k_yy)
    return float((off_xx + off_yy) / (m * (m - 1)) - 2.0 * k_xy.sum() / (m * m))


@dataclass
class KIDResult:
    mean: float
    std: float
    subset_size: int
    subsets: int

    def to_dict(self) -> dict:
        return {"mean": self.mean, "std": self.std, "subset_size": self.subset_size, "subsets": self.subsets}


def kernel_inception_distance(
    features_1: np.ndarray,
    features_2: np.ndarray,
    subsets: int = 100,
    subset_size: int = 1000,
    seed: int = 2020,
    degree: int = 3,
    gamma: float | None = None,
    coef0: float = 1.0,
) -> KIDResult:
    """KID (Binkowski et al. 2018) as torch-fidelity computes it: for each of ``subsets`` rounds, draw
    ``subset_size`` vectors without replacement from each side (one ``np.random.RandomState(seed)``,
    side 1 then side 2) and take the unbiased MMD^2 with the cubic polynomial kernel; report the mean and
    std over rounds. ``subset_size`` is lowered to the smaller sample size when that is smaller (the size
    used is returned), so small test sets still get a number."""
    f1 = np.asarray(features_1, dtype=np.float64)
    f2 = np.asarray(features_2, dtype=np.float64)
    if f1.ndim != 2 or f2.ndim != 2 or f1.shape[1] != f2.shape[1]:
        raise MetricError(f"KID needs two N x d feature arrays of the same d, got {f1.shape} and {f2.shape}")
    size = min(subset_size, len(f1), len(f2))
    if size < 2:
        raise MetricError(f"KID needs at least 2 samples on each side, got {len(f1)} and {len(f2)}")
    rng = np.random.RandomState(seed)
    values = np.empty(subsets)
    for i in range(subsets):
        x = f1[rng.choice(len(f1), size, replace=False)]
        y = f2[rng.choice(len(f2), size, replace=False)]
        values[i] = mmd2_unbiased(
            polynomial_kernel(x, x, degree, gamma, coef0),
            polynomial_kernel(x, y, degree, gamma, coef0),
            polynomial_kernel(y, y, degree, gamma, coef0),
        )
    return KIDResult(float(values.mean()), float(values.std()), size, subsets)


# ------------------------------------------------------------------------------------ Inception weights


def hub_checkpoint_dir() -> Path:
    """torch-hub's checkpoint cache (``$TORCH_HOME/hub/checkpoints``), where downloads land."""
    return Path(torch.hub.get_dir()) / "checkpoints"


def offline() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() in ("1", "true", "yes", "on")


def fetch_weights(
    path: str | Path | None, file_name: str, url: str, what: str, flag: str, metrics: str = ""
) -> tuple[Path, str]:
    """The weights file to use and where it came from (``flag``, ``cache`` or ``download``).

    ``path`` (the user's flag) must exist. Otherwise torch-hub's cache is used when it holds
    ``file_name``, else the file is downloaded there; when that fails (no network, or ``GMDRIT_OFFLINE=1``)
    a :class:`WeightsError` names the file, where to get it and the flag that takes it.
    """
    if path is not None:
        path = Path(path).expanduser()
        if not path.is_file():
            state = "is not a file" if Path(path).exists() else "does not exist"
            raise WeightsError(f"{what} weights file {path} {state} (given with {flag})")
        return path, "flag"
    cached = hub_checkpoint_dir() / file_name
    if cached.is_file():
        return cached, "cache"
    hint = (
        f"{what} needs the weights file {file_name}: download it from {url} on a machine with internet "
        f"and pass {flag} PATH (or put it in {cached.parent})"
    )
    if metrics:
        hint += f", or leave {metrics} out of --metrics"
    if offline():
        raise WeightsError(f"{hint}; downloads are off ({OFFLINE_ENV}=1)")
    old_timeout = socket.getdefaulttimeout()
    socket.setdefaulttimeout(60)
    try:
        cached.parent.mkdir(parents=True, exist_ok=True)
        prefix = re.search(r"-([0-9a-f]{8,})\.pth$", file_name)  # torch-hub names carry a SHA-256 prefix
        torch.hub.download_url_to_file(
            url, str(cached), hash_prefix=prefix.group(1) if prefix else None, progress=False
        )
    except Exception as exc:  # URLError, HTTPError, timeouts, disk errors: all mean "no weights"
        reason = getattr(exc, "reason", None) or exc
        raise WeightsError(f"{hint}; the download failed ({reason})") from None
    finally:
        socket.setdefaulttimeout(old_timeout)
    return cached, "download"


#: the largest weights file read (whole, into memory) by :func:`load_state_dict_safely`
MAX_WEIGHTS_BYTES = 2**30


def load_state_dict_safely(path: Path, what: str, flag: str) -> tuple[dict, str]:
    """Read a weights file once: its state dict and its SHA-256.

    The ``.pth`` file is parsed by PyTorch's restricted weights-only unpickler (``weights_only=True``):
    only tensors and plain containers are accepted; a file needing any other class is refused with a
    :class:`WeightsError`. This is the one place gmdrit reads a pickle-format file a user hands in.
    """
    try:
        info = os.stat(path)
        if not stat.S_ISREG(info.st_mode):  # /dev/zero, a FIFO, a folder: never read to the end
            raise WeightsError(f"{what} weights {path} ({flag}) is not a regular file; give the file named in --help")
        if info.st_size > MAX_WEIGHTS_BYTES:
            raise WeightsError(
                f"{what} weights {path} ({flag}) is {info.st_size / 2**30:.1f} GiB; a weights file "
                f"is read whole into memory, so at most {MAX_WEIGHTS_BYTES // 2**30} GiB (InceptionV3's "
                f"is 95 MB, AlexNet's 233 MB): give the file named in --help"
            )
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise WeightsError(f"cannot read {what} weights {path}: {exc.strerror or exc}") from None
    try:
        # the restricted loader: tensors and plain containers only, never arbitrary objects
        state = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:
        if not raw.startswith((b"PK", b"\x80")):  # neither torch's zip format nor a pickle: an image, text, ...
            raise WeightsError(
                f"{what} weights {path} ({flag}) is not a PyTorch weights file (.pth); give the file named in --help"
            ) from None
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise WeightsError(f"{what} weights {path} ({flag}) are not a plain PyTorch state dict: {first}") from None
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not all(torch.is_tensor(v) for v in state.values()):
        raise WeightsError(f"{what} weights {path} ({flag}) are not a state dict of tensors")
    return state, sha256_bytes(raw)


def _inception_class():
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    return FeatureExtractorInceptionV3


class InceptionFeatures:
    """torch-fidelity's InceptionV3 (``inception-v3-compat``): uint8 images N x 3 x H x W -> N x 2048.

    Any input size is resized inside the network to 299 x 299 with torch-fidelity's TF1-compatible
    bilinear interpolation, exactly as ``fidelity --fid`` does for image folders.
    """

    feature_layer = "2048"

    def __init__(self, weights: str | Path | None = None, device: torch.device | str = "cpu", batch_size: int = 32):
        self.path, self.source = fetch_weights(
            weights, INCEPTION_FILE, INCEPTION_URL, "FID/KID (InceptionV3)", "--inception-weights", "fid,kid"
        )
        state, self.sha256 = load_state_dict_safely(self.path, "InceptionV3", "--inception-weights")
        buf = io.BytesIO()
        torch.save(state, buf)  # re-serialised from the checked tensors: torch-fidelity fully loads what it gets
        buf.seek(0)
        try:
            net = _inception_class()("inception-v3-compat", [self.feature_layer], feature_extractor_weights_path=buf)
        except RuntimeError as exc:
            first = str(exc).strip().splitlines()[0]
            raise WeightsError(
                f"InceptionV3 weights {self.path} do not fit torch-fidelity's FeatureExtractorInceptionV3: {first}"
            ) from None
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.batch_size = batch_size

    def info(self) -> dict:
        import torch_fidelity

        return {
            "path": str(self.path),
            "source": self.source,
            "sha256": self.sha256,
            "file": self.path.name,
            "network": "torch-fidelity inception-v3-compat",
            "feature": self.feature_layer,
            "torch_fidelity": torch_fidelity.__version__,
            "resize": "torch-fidelity TF1-compatible bilinear to 299 x 299, inside the network",
        }

    @torch.no_grad()
    def __call__(self, images: torch.Tensor) -> np.ndarray:
        """uint8 N x 3 x H x W (any H, W) -> float64 N x 2048."""
        if images.dtype != torch.uint8 or images.dim() != 4 or images.shape[1] != 3:
            raise MetricError(
                f"Inception features need uint8 N x 3 x H x W images, got {images.dtype} {tuple(images.shape)}"
            )
        out = []
        for i in range(0, len(images), self.batch_size):
            (feats,) = self.net(images[i : i + self.batch_size].to(self.device))
            out.append(feats.double().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, 2048))


def write_random_inception_weights(path: str | Path, seed: int = 0) -> Path:
    """Save a randomly initialised state dict for torch-fidelity's InceptionV3 (``torch.save``, the format
    torch-fidelity loads). For offline tests and smoke runs only: its features are near-constant, so FID
    and KID come out near 0 and mean nothing."""
    cls = _inception_class()

    class _Random(cls):
        def load_state_dict(self, *args, **kwargs):  # keep the random init
            return None

    import torch_fidelity.feature_extractor_inceptionv3 as tfi

    original = tfi.load_state_dict_from_url
    tfi.load_state_dict_from_url = lambda *a, **k: {}
    try:
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            net = _Random("inception-v3-compat", ["2048"])
    finally:
        tfi.load_state_dict_from_url = original
    path = Path(path)
    torch.save({k: v.clone() for k, v in net.state_dict().items()}, path)
    return path
