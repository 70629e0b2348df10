"""How well GM-DRIT's q(y|x) clusters test images by domain: Hungarian accuracy, NMI, component usage.

The predicted cluster of an image is argmax_k q(y = k | x) over the K mixture components. Its true
label is the image's domain.

* ``accuracy``: the best one-to-one matching of clusters to domains (Hungarian algorithm,
  ``scipy.optimize.linear_sum_assignment`` on the contingency table), the usual unsupervised clustering
  accuracy. With several components per domain only one component per domain can be matched; see
  ``domain_accuracy``.
* ``domain_accuracy``: argmax of the domain probabilities (components summed per domain) against the
  true domain, with the model's own component -> domain map (no matching).
* ``nmi``: normalised mutual information, I(true; pred) / mean(H(true), H(pred)) (arithmetic mean, as
  scikit-learn's default), in nats; 1 when both labelings are constant.
* ``component_usage``: the fraction of images whose argmax is each component.
"""

from __future__ import annotations

import numpy as np

from . import MetricError


def contingency(true: np.ndarray, pred: np.ndarray, n_true: int | None = None, n_pred: int | None = None) -> np.ndarray:
    """n_true x n_pred counts of (true label, predicted cluster) pairs."""
    true, pred = np.asarray(true, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    if true.shape != pred.shape or true.ndim != 1:
        raise MetricError(f"cluster labels must be two 1-d arrays of one length, got {true.shape} and {pred.shape}")
    if len(true) and (true.min() < 0 or pred.min() < 0):
        raise MetricError("cluster labels must be non-negative integers")
    a = max(int(true.max()) + 1 if len(true) else 0, n_true or 0)
    b = max(int(pred.max()) + 1 if len(pred) else 0, n_pred or 0)
    table = np.zeros((a, b), dtype=np.int64)
    np.add.at(table, (true, pred), 1)
    return table


def hungarian_accuracy(true: np.ndarray, pred: np.ndarray) -> tuple[float, dict[int, int]]:
    """Accuracy under the best one-to-one cluster -> label matching, and that matching {cluster: label}."""
    from scipy.optimize import linear_sum_assignment

    table = contingency(true, pred)
    if table.sum() == 0:
        raise MetricError("cluster accuracy needs at least one sample")
    rows, cols = linear_sum_assignment(table, maximize=True)
    return float(table[rows, cols].sum() / table.sum()), {int(c): int(r) for r, c in zip(rows, cols)}


def _entropy(counts: np.ndarray) -> float:
    p = counts[counts > 0] / counts.sum()
    return float(-(p * np.log(p)).sum())


def normalized_mutual_information(true: np.ndarray, pred: np.ndarray) -> float:
    """NMI with the arithmetic-mean normalisation; 1.0 when both labelings have a single value."""
    table = contingency(true, pred).astype(np.float64)
    n = table.sum()
    if n == 0:
        raise MetricError("NMI needs at least one sample")
    h_true, h_pred = _entropy(table.sum(axis=1)), _entropy(table.sum(axis=0))
    if h_true == 0 and h_pred == 0:
        return 1.0
    pij = table / n
    outer = np.outer(table.sum(axis=1), table.sum(axis=0)) / (n * n)
    nz = pij > 0
    mi = float((pij[nz] * np.log(pij[nz] / outer[nz])).sum())
    denom = (h_true + h_pred) / 2.0
    return float(max(0.0, min(1.0, mi / denom))) if denom > 0 else 0.0


def cluster_scores(
    true_domains: np.ndarray,
    component_probs: np.ndarray,
    components_per_domain: int = 1,
    domain_names: list[str] | None = None,
) -> dict:
    """Every clustering number of the report from q(y|x) (N x K probabilities) and the true domains (N)."""
    probs = np.asarray(component_probs, dtype=np.float64)
    true = np.asarray(true_domains, dtype=np.int64)
    if probs.ndim != 2 or len(probs) != len(true):
        raise MetricError(f"need N x K component probabilities for N images, got {probs.shape} for {len(true)}")
    n, k = probs.shape
    if k % components_per_domain:
        raise MetricError(f"K={k} components is not a multiple of components_per_domain={components_per_domain}")
    pred = probs.argmax(axis=1)
    accuracy, matching = hungarian_accuracy(true, pred)
    domain_pred = probs.reshape(n, k // components_per_domain, components_per_domain).sum(axis=2).argmax(axis=1)
    usage = np.bincount(pred, minlength=k) / n
    names = domain_names or [str(i) for i in range(k // components_per_domain)]
    per_domain = {}
    for d, name in enumerate(names):
        mask = true == d
        if mask.any():
            per_domain[name] = {
                "images": int(mask.sum()),
                "domain_accuracy": float((domain_pred[mask] == d).mean()),
                "component_usage": [float(v) for v in np.bincount(pred[mask], minlength=k) / mask.sum()],
            }
    return {
        "images": int(n),
        "components": int(k),
        "components_per_domain": int(components_per_domain),
        "accuracy": accuracy,
        "matching": {str(c): names[t] if t < len(names) else str(t) for c, t in matching.items()},
        "domain_accuracy": float((domain_pred == true).mean()),
        "nmi": normalized_mutual_information(true, pred),
        "component_usage": [float(v) for v in usage],
        "components_used": int((usage > 0).sum()),
        "per_domain": per_domain,
    }
