"""Dataset images as the metrics see them: the model's test input (resize, centre crop), 8-bit."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ...data.factory import training_dataset
from ...data.unpaired import open_rgb
from ...errors import DataError

log = logging.getLogger("gmdrit")


def quantise(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> uint8 exactly as PNG stores it (same rounding as ``data.to_image``), on the CPU."""
    return ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).cpu()


class PreprocessedImages:
    """Test, validation or training images of every domain (training: less the validation split), preprocessed as the
    model's test input (resize
    ``cfg.data.resize`` square, bicubic; centre crop ``cfg.data.crop``), as uint8.

    Constructing it lists the files (``files[d]``: sorted paths of domain d, at most ``limit`` when > 0);
    nothing is decoded until :meth:`load` or :meth:`batches`.
    """

    def __init__(self, root: str, cfg, split: str, limit: int = 0):
        self.ds = training_dataset(cfg, split, paired=False, root=root, flip=False)
        self.files = [f[:limit] if limit > 0 else list(f) for f in self.ds.files]
        self.skipped: list[str] = []

    def load(self, paths: list[Path], domain: int | None = None) -> tuple[torch.Tensor, list[Path]]:
        """uint8 N x 3 x S x S of the decodable ``paths`` and those paths (``domain``: unused here)."""
        images, kept = [], []
        for path in paths:
            try:
                im = open_rgb(path)
            except Exception:
                log.warning("skipping unreadable image %s", path)
                self.skipped.append(str(path))
                continue
            images.append(quantise(self.ds.transform(im, train=False)))
            kept.append(path)
        if not images:
            return torch.zeros((0, 3, self.ds.crop, self.ds.crop), dtype=torch.uint8), kept
        return torch.stack(images), kept

    def batches(self, domain: int, size: int):
        files = self.files[domain]
        for i in range(0, len(files), size):
            yield self.load(files[i : i + size], domain)


class PairedPreprocessedImages(PreprocessedImages):
    """The same for a paired dataset (``paired_data.PairedImages``): domain 0 is the input side of every pair,
    domain 1 the output side; ``files[d]`` lists each pair by its first file (the A|B file, or the A file).
    ``split`` 'test' reads the test pairs (the val pairs of a dataset that has no test split, as the official
    test phase of edges2shoes); 'val' the val pairs, on which settings are chosen."""

    def __init__(self, root: str, cfg, split: str, limit: int = 0):
        from ...data.paired import eval_split, has_split

        layout = cfg.data.paired_layout
        if split == "test" and not has_split(root, "test", layout):
            split = eval_split(root, layout)
        self.ds = training_dataset(cfg, split, paired=True, root=root, flip=False)
        self.index = {pair[0]: i for i, pair in enumerate(self.ds.files)}
        keys = [pair[0] for pair in self.ds.files]
        keys = keys[:limit] if limit > 0 else keys
        self.files = [list(keys), list(keys)]
        self.skipped: list[str] = []

    def load(self, paths: list[Path], domain: int | None = None) -> tuple[torch.Tensor, list[Path]]:
        """uint8 N x 3 x S x S of side ``domain`` (0 input, 1 output) of the pairs ``paths``, centre-cropped."""
        images, kept = [], []
        for path in paths:
            try:
                pair = self.ds.load_pair(self.index[path])
            except DataError:
                log.warning("skipping unreadable pair %s", path)
                self.skipped.append(str(path))
                continue
            tensors = self.ds.transform_pair(*pair, train=False)
            images.append(quantise(tensors[domain]))
            kept.append(path)
        if not images:
            return torch.zeros((0, 3, self.ds.crop, self.ds.crop), dtype=torch.uint8), kept
        return torch.stack(images), kept


def open_images(root: str, cfg, split: str, limit: int = 0, paired: bool = False) -> PreprocessedImages:
    """The preprocessed images of ``split`` of an unpaired or (``paired``) a paired dataset."""
    return (PairedPreprocessedImages if paired else PreprocessedImages)(root, cfg, split, limit)
