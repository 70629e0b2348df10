"""The one place that chooses between the two dataset kinds: paired folders or unpaired domain folders.

A family says which it trains on (``ModelFamily.capabilities.paired_data``); training, the benchmark's loader
and the metrics' preprocessed images all open their data through :func:`training_dataset`, so the choice and
the settings read from ``cfg.data`` are made the same way everywhere.
"""

from __future__ import annotations

from pathlib import Path

from .paired import PairedImages, paired_dataset
from .unpaired import UnpairedImageFolders


def training_dataset(
    cfg,
    split: str = "train",
    *,
    paired: bool,
    root: str | Path | None = None,
    seed: int = 0,
    flip: bool | None = None,
    val_fraction: float | None = None,
) -> PairedImages | UnpairedImageFolders:
    """The dataset of ``cfg.data`` for ``split``: :class:`PairedImages` when ``paired`` (the family's
    ``capabilities.paired_data``), else :class:`UnpairedImageFolders` over ``cfg.data.domains``.

    ``root``: where to read (default ``data.root``; e.g. its local copy, :mod:`gmdrit_cli.data.cache`);
    ``seed``: the sampler's RNG; ``flip``: random horizontal flips (default ``data.flip``; test-time readers
    pass False); ``val_fraction``: unpaired data only, the share of each domain's training images held out as
    the validation split (default ``data.val_fraction``; 0 reads every training image). Both kinds yield
    images 3 x crop x crop in [-1, 1], resized to ``data.resize`` first.
    """
    d = cfg.data
    root = d.root if root is None else root
    flip = d.flip if flip is None else flip
    if paired:
        return paired_dataset(cfg, split, seed=seed, root=root, flip=flip)
    return UnpairedImageFolders(
        root,
        d.domains,
        split,
        resize=d.resize,
        crop=d.crop,
        flip=flip,
        seed=seed,
        val_fraction=d.val_fraction if val_fraction is None else val_fraction,
    )
