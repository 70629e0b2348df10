"""GM-DRIT's config section `mixture`: the Gaussian-mixture attribute space."""

from __future__ import annotations

from dataclasses import dataclass

from ...config.fields import option as _opt

SECTION = "mixture"


@dataclass
class Section:
    """GM-DRIT's Gaussian-mixture attribute space (docs/gmdrit.md)."""

    components_per_domain: int = _opt(
        1,
        "mixture components per domain (K = domains x this)",
        min=1,
        max=256,
        why="each component is a prior and a class of q(y|x)",
    )
    condition_on: str = _opt(
        "inferred",
        "what conditions the generator: the encoder's inferred y (report 5.2) "
        "or the domain one-hot with MDMM's losses (report 5.1)",
        choices=("inferred", "domain"),
    )
    init_temp: float = _opt(1.0, "initial Gumbel-softmax temperature", min=0, min_exclusive=True)
    min_temp: float = _opt(0.5, "lowest Gumbel-softmax temperature", min=0, min_exclusive=True)
    decay_temp_rate: float = _opt(
        0.013862944, "temperature decay per epoch: tau = max(init * exp(-rate * epoch), min)", min=0
    )
    hard_gumbel: bool = _opt(False, "straight-through one-hot Gumbel samples")
    w_gauss: float = _opt(0.01, "weight of KL(q(z|x,y) || p(z|y)) (summed over batch and dimensions)", min=0)
    w_categ: float = _opt(1.0, "weight of KL(q(y|x) || Uniform(K))", min=0)
    w_label: float = _opt(1.0, "weight of the cross-entropy of q(y|x)'s domain probabilities vs the true domain", min=0)
    w_label_sim: float = _opt(
        1.0, "weight of the label-similarity loss on random-attribute fakes (D2's classifier)", min=0
    )
    w_rec: float = _opt(1.0, "weight of the p(x|z) thumbnail reconstruction", min=0)
    rec_type: str = _opt("bce", "loss of the p(x|z) thumbnail reconstruction", choices=("bce", "mse"))
    thumbnail: int = _opt(
        16, "side of the p(x|z) thumbnail in pixels", min=2, max=256, why="a thumbnail; memory grows with its square"
    )
    gan2_realism: bool = _opt(False, "also keep MDMM's realism term of D2 on random-attribute fakes")
    prior_lr_mult: float = _opt(
        1.0,
        "learning-rate multiplier of p(z|y)'s parameters (1 = the report: the generator's "
        "rate, at which p(z|y) lags q(z|x,y); docs/results.md 'GM-DRIT vs MDMM')",
        min=0,
        min_exclusive=True,
    )
