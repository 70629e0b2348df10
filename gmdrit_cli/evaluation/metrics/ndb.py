"""NDB and JSD (Richardson & Weiss, "On GANs and GMMs", NeurIPS 2018), implemented here.

The algorithm of the authors' code (gans-n-gmms, ``utils/ndb.py``), as gmdrit follows it (docs/eval.md):

1. Reference (training) images are flattened to pixel vectors in [0, 1] (here after downscaling to
   ``size`` x ``size``) and whitened per dimension with the training mean and std (+ 1e-6).
2. If there are more than 1000 dimensions, K-means runs on a random subset of ``d // 6`` of them, chosen
   once from the seed.
3. K-means (k-means++ init, best of ``n_init`` runs, at most ``max_iter`` Lloyd steps) on the training
   vectors gives K bins; a bin's centre is the mean of its members; bins are sorted by size, largest first.
4. Query (generated) vectors go to the nearest centre (L2 over the used dimensions).
5. Per bin, a two-proportion z-test with the pooled proportion; a bin is *statistically different* when
   the two-sided p-value is below ``alpha``. NDB = the number of such bins (NDB / K is also reported).
6. JSD = Jensen-Shannon divergence between the two bin-proportion vectors, natural log (<= ln 2).

K-means is our own numpy code (the authors' scikit-learn call no longer runs); results depend
on K, alpha, image size, sample counts, whitening, the dimension subset and the seed, all of which
:meth:`NDB.settings` returns for the report.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F

from . import MetricError

WHITEN_EPS = 1e-6


def downscale(images: torch.Tensor, size: int) -> np.ndarray:
    """uint8 N x 3 x H x W -> float32 N x (3 * size * size) pixel vectors in [0, 1] (bilinear, antialiased)."""
    x = images.float().div(255.0)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
    return x.reshape(len(x), -1).cpu().numpy().astype(np.float32)


# --------------------------------------------------------------------------------------- k-means


def _sq_distances(x: np.ndarray, x_sq: np.ndarray, c: np.ndarray) -> np.ndarray:
    d = x_sq[:, None] - 2.0 * (x @ c.T) + (c * c).sum(axis=1)[None, :]
    return np.maximum(d, 0.0)


def _cluster_sums(x: np.ndarray, labels: np.ndarray, k: int) -> np.ndarray:
    """k x d sums of the rows of ``x`` per label, in O(N d)."""
    from scipy.sparse import csr_matrix

    n = len(labels)
    member = csr_matrix((np.ones(n), (labels, np.arange(n))), shape=(k, n))
    return np.asarray(member @ x)


def _kmeans_pp(x: np.ndarray, x_sq: np.ndarray, k: int, rng: np.random.Generator) -> np.ndarray:
    n = len(x)
    centres = np.empty((k, x.shape[1]))
    centres[0] = x[rng.integers(n)]
    closest = _sq_distances(x, x_sq, centres[:1])[:, 0]
    for i in range(1, k):
        total = closest.sum()
        idx = rng.integers(n) if total <= 0 else rng.choice(n, p=closest / total)
        centres[i] = x[idx]
        closest = np.minimum(closest, _sq_distances(x, x_sq, centres[i : i + 1])[:, 0])
    return centres


def kmeans(
    x: np.ndarray, k: int, seed: int = 0, n_init: int = 10, max_iter: int = 100, tol: float = 1e-4
) -> tuple[np.ndarray, np.ndarray, float]:
    """Lloyd's k-means with k-means++ seeding; the run with the lowest inertia of ``n_init`` wins.

    Returns (labels N, centres k x d, inertia). An emptied cluster is moved to the point farthest from
    its centre. Stops when the squared centre shift is below ``tol`` times the mean per-dimension
    variance of ``x`` (scikit-learn's criterion) or after ``max_iter`` steps.
    """
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if not 1 <= k <= n:
        raise MetricError(f"k-means needs 1 <= K <= number of samples, got K={k} for {n} samples")
    x_sq = (x * x).sum(axis=1)
    threshold = tol * float(x.var(axis=0).mean())
    rng = np.random.default_rng(seed)
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for _ in range(n_init):
        centres = _kmeans_pp(x, x_sq, k, rng)
        for _ in range(max_iter):
            dist = _sq_distances(x, x_sq, centres)
            labels = dist.argmin(axis=1)
            counts = np.bincount(labels, minlength=k)
            sums = _cluster_sums(x, labels, k)
            new = np.where(counts[:, None] > 0, sums / np.maximum(counts, 1)[:, None], centres)
            for empty in np.flatnonzero(counts == 0):
                far = int(dist[np.arange(n), labels].argmax())
                new[empty] = x[far]
                dist[far, :] = 0.0  # do not pick the same point twice
            shift = float(((new - centres) ** 2).sum())
            centres = new
            if shift <= threshold:
                break
        dist = _sq_distances(x, x_sq, centres)
        labels = dist.argmin(axis=1)
        inertia = float(dist[np.arange(n), labels].sum())
        if best is None or inertia < best[2]:
            best = (labels, centres, inertia)
    return best


# --------------------------------------------------------------------------------------- statistics


def two_proportion_z_test(p1: np.ndarray, n1: int, p2: np.ndarray, n2: int) -> tuple[np.ndarray, np.ndarray]:
    """Pooled two-proportion z-test per entry: (z, two-sided p-value). A bin empty on both sides (or
    holding everything on both) has z = 0 and p = 1."""
    p1, p2 = np.asarray(p1, dtype=np.float64), np.asarray(p2, dtype=np.float64)
    pooled = (p1 * n1 + p2 * n2) / (n1 + n2)
    se = np.sqrt(pooled * (1.0 - pooled) * (1.0 / n1 + 1.0 / n2))
    with np.errstate(divide="ignore", invalid="ignore"):
        z = np.where(se > 0, (p1 - p2) / np.where(se > 0, se, 1.0), 0.0)
    p = np.array([math.erfc(abs(v) / math.sqrt(2.0)) for v in z])
    return z, p


def js_divergence(p: np.ndarray, q: np.ndarray) -> float:
    """Jensen-Shannon divergence in nats: (KL(p || m) + KL(q || m)) / 2 with m = (p + q) / 2; 0 log 0 = 0."""
    p, q = np.asarray(p, dtype=np.float64), np.asarray(q, dtype=np.float64)
    m = (p + q) / 2.0

    def kl(a: np.ndarray) -> float:
        nz = a > 0
        return float((a[nz] * np.log(a[nz] / m[nz])).sum())

    return 0.5 * kl(p) + 0.5 * kl(q)


@dataclass
class NDBResult:
    ndb: int  # number of statistically different bins
    bins: int  # K
    jsd: float  # nats
    n_train: int
    n_query: int
    different: list[int]  # indices of the different bins (bins sorted by training size)
    train_proportions: np.ndarray
    query_proportions: np.ndarray
    z: np.ndarray
    p_values: np.ndarray
    missing: list[int] = field(default_factory=list)  # different bins that the query under-fills

    @property
    def ndb_fraction(self) -> float:
        return self.ndb / self.bins

    def to_dict(self) -> dict:
        return {
            "ndb": self.ndb,
            "ndb_over_k": self.ndb_fraction,
            "jsd": self.jsd,
            "bins": self.bins,
            "n_train": self.n_train,
            "n_query": self.n_query,
            "different_bins": self.different,
            "underfilled_bins": self.missing,
            "train_proportions": [round(float(v), 6) for v in self.train_proportions],
            "query_proportions": [round(float(v), 6) for v in self.query_proportions],
        }


class NDB:
    """Bins fitted once on a reference (training) sample; :meth:`evaluate` tests any query sample."""

    def __init__(
        self,
        train: np.ndarray,
        bins: int = 50,
        alpha: float = 0.05,
        whiten: bool = True,
        max_dims: int | None = None,
        seed: int = 0,
        n_init: int = 10,
        max_iter: int = 100,
    ):
        train = np.asarray(train, dtype=np.float64)
        if train.ndim != 2:
            raise MetricError(f"NDB needs an N x d array of training vectors, got shape {train.shape}")
        m, d = train.shape
        if not 2 <= bins <= m:
            raise MetricError(
                f"NDB with K={bins} bins needs at least K training images and K >= 2, got {m} "
                f"training images; lower --ndb-bins"
            )
        if not 0 < alpha < 1:
            raise MetricError(f"the NDB significance level must be in (0, 1), got {alpha}")
        self.k, self.alpha, self.whiten, self.seed = bins, alpha, whiten, seed
        self.n_init, self.max_iter, self.dims = n_init, max_iter, d
        self.mean = train.mean(axis=0) if whiten else np.zeros(d)
        self.std = train.std(axis=0) + WHITEN_EPS if whiten else np.ones(d)
        if max_dims is None:
            max_dims = d // 6 if d > 1000 else d
        self.max_dims = min(max_dims, d)
        rng = np.random.default_rng(seed)
        self.used = np.sort(rng.choice(d, self.max_dims, replace=False)) if self.max_dims < d else np.arange(d)
        w = self._whiten(train)
        labels, _, self.inertia = kmeans(
            w[:, self.used], bins, seed=int(rng.integers(2**31)), n_init=n_init, max_iter=max_iter
        )
        counts = np.bincount(labels, minlength=bins)
        order = np.argsort(-counts, kind="stable")  # largest bin first
        rank = np.empty(bins, dtype=np.int64)
        rank[order] = np.arange(bins)
        labels = rank[labels]
        counts = counts[order]
        sums = _cluster_sums(w, labels, bins)
        self.centres = sums / np.maximum(counts, 1)[:, None]  # member means over all dimensions
        self.n_train = m
        self.train_counts = counts
        self.train_proportions = counts / m

    def _whiten(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / self.std

    def assign(self, x: np.ndarray) -> np.ndarray:
        """Bin of each row (nearest centre in L2 over the used dimensions, after whitening)."""
        w = self._whiten(x)[:, self.used]
        c = self.centres[:, self.used]
        return _sq_distances(w, (w * w).sum(axis=1), c).argmin(axis=1)

    def evaluate(self, query: np.ndarray) -> NDBResult:
        query = np.asarray(query)
        if query.ndim != 2 or query.shape[1] != self.dims:
            raise MetricError(f"NDB query must be N x {self.dims}, got shape {query.shape}")
        n = len(query)
        if n < 1:
            raise MetricError("NDB needs at least one query sample")
        q_prop = np.bincount(self.assign(query), minlength=self.k) / n
        z, p = two_proportion_z_test(self.train_proportions, self.n_train, q_prop, n)
        different = np.flatnonzero(p < self.alpha)
        missing = [int(i) for i in different if q_prop[i] < self.train_proportions[i]]
        return NDBResult(
            int(len(different)),
            self.k,
            js_divergence(self.train_proportions, q_prop),
            self.n_train,
            n,
            [int(i) for i in different],
            self.train_proportions.copy(),
            q_prop,
            z,
            p,
            missing,
        )

    def settings(self) -> dict:
        return {
            "bins": self.k,
            "alpha": self.alpha,
            "whitening": self.whiten,
            "whiten_eps": WHITEN_EPS,
            "dims": self.dims,
            "kmeans_dims": int(self.max_dims),
            "seed": self.seed,
            "n_init": self.n_init,
            "max_iter": self.max_iter,
            "kmeans": "gmdrit numpy k-means++ / Lloyd",
            "test": "pooled two-proportion z-test, two-sided",
            "jsd_log": "natural (nats)",
        }
