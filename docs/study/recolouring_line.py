"""The recolouring line of docs/results.md ("The issue's diversity target, measured against what real colours allow").

Each input photo's coloured pixels (chroma >= gmdrit's SUBJECT_CHROMA) are recoloured with the Lab mean and spread
of the coloured pixels of each of 24 training photos of the target (Reinhard's colour transfer; the background is
left as it is), at 128 px; the figure is 1 - MS-SSIM (gmdrit's diversity_msssim measure) over all pairs of one
input's recolourings, averaged over the inputs: how much the target photos' own colours, painted on one input, differ.

usage (from the repository root, after `make install`):
  .venv/bin/python docs/study/recolouring_line.py a2o val    # validation apples 5-16 recoloured as oranges
  .venv/bin/python docs/study/recolouring_line.py o2a test   # every 10th test orange recoloured as apples
The validation split is gmdrit's own (data.val_fraction 0.1 of gmdrit_128, gmdrit_cli.data.unpaired.hold_out).
"""

import os
import sys
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from skimage.color import lab2rgb, rgb2lab

from gmdrit_cli.data.unpaired import hold_out
from gmdrit_cli.evaluation.metrics.msssim_diversity import MSSSIMDiversity
from gmdrit_cli.families.drit_losses import SUBJECT_CHROMA

ROOT, SIDE, PHOTOS = "../shared/datasets/apple2orange", 128, 24


def load(path: str) -> np.ndarray:
    """The centre square of a photo at SIDE px, RGB in [0, 1]."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    s = min(w, h)
    box = ((w - s) // 2, (h - s) // 2, (w - s) // 2 + s, (h - s) // 2 + s)
    return np.asarray(im.crop(box).resize((SIDE, SIDE), Image.BICUBIC)).astype(np.float64) / 255


def coloured(rgb: np.ndarray) -> np.ndarray:
    r, g, b = rgb[..., 0], rgb[..., 1], rgb[..., 2]
    return np.hypot(r - g, (r + g) / 2 - b) >= SUBJECT_CHROMA


def recolour(rgb: np.ndarray, mask: np.ndarray, mean: np.ndarray, spread: np.ndarray) -> np.ndarray:
    lab = rgb2lab(rgb)
    src = lab[mask]
    lab[mask] = (src - src.mean(0)) / (src.std(0) + 1e-6) * spread + mean
    return np.clip(lab2rgb(lab), 0, 1)


def validation_files(folder: str) -> list[str]:
    """The names of a training folder's images that gmdrit_128 (data.val_fraction 0.1) holds out."""
    files = sorted(p for p in Path(folder).iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    return [p.name for p in hold_out(files, 0.1)[1]]


def main(direction: str, split: str) -> None:
    source, target = ("A", "B") if direction == "a2o" else ("B", "A")
    if split == "test":
        inputs = [f"{ROOT}/test{source}/{f}" for f in sorted(os.listdir(f"{ROOT}/test{source}"))[::10]]
    else:
        inputs = [f"{ROOT}/train{source}/{f}" for f in sorted(validation_files(f"{ROOT}/train{source}"))[4:16]]
    held_out = set(validation_files(f"{ROOT}/train{target}"))
    stats = []
    for f in [f for f in sorted(os.listdir(f"{ROOT}/train{target}")) if f not in held_out][::8]:
        rgb = load(f"{ROOT}/train{target}/{f}")
        mask = coloured(rgb)
        if mask.sum() >= 200:
            lab = rgb2lab(rgb)[mask]
            stats.append((lab.mean(0), lab.std(0) + 1e-6))
    measure = MSSSIMDiversity(SIDE)
    values = []
    for path in inputs:
        rgb = load(path)
        mask = coloured(rgb)
        outs = np.stack([recolour(rgb, mask, m, s) for m, s in stats[:PHOTOS]])
        values.append(measure.diversity(torch.from_numpy(outs * 255).round().permute(0, 3, 1, 2).float()))
    print(
        f"{direction} {split}: {len(inputs)} inputs x {min(PHOTOS, len(stats))} target photos' colours: "
        f"1 - MS-SSIM {np.mean(values):.3f}"
    )


if __name__ == "__main__":
    main(*sys.argv[1:])
