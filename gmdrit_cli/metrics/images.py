"""Dataset images as the metrics see them: the model's test input (resize, centre crop), 8-bit."""

from __future__ import annotations

import logging
from pathlib import Path

import torch

from ..data import UnpairedImageFolders, open_rgb

log = logging.getLogger("gmdrit")


def quantise(x: torch.Tensor) -> torch.Tensor:
    """[-1, 1] float -> uint8 exactly as PNG stores it (same rounding as ``data.to_image``), on the CPU."""
    return ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).cpu()


class PreprocessedImages:
    """Test or training images of every domain, preprocessed as the model's test input (resize
    ``cfg.data.resize`` square, bicubic; centre crop ``cfg.data.crop``), as uint8.

    Constructing it lists the files (``files[d]``: sorted paths of domain d, at most ``limit`` when > 0);
    nothing is decoded until :meth:`load` or :meth:`batches`.
    """

    def __init__(self, root: str, cfg, split: str, limit: int = 0):
        self.ds = UnpairedImageFolders(root, cfg.data.domains, split, resize=cfg.data.resize, crop=cfg.data.crop,
                                       flip=False)
        self.files = [f[:limit] if limit > 0 else list(f) for f in self.ds.files]
        self.skipped: list[str] = []

    def load(self, paths: list[Path]) -> tuple[torch.Tensor, list[Path]]:
        """uint8 N x 3 x S x S of the decodable ``paths`` and those paths."""
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
            yield self.load(files[i:i + size])
