"""``gmdrit data edges``: an edges -> photo paired dataset (the pix2pix aligned format) from photos.

Each photo is resized (shorter side) and centre-cropped to ``size`` x ``size``; its edge map is computed
with scikit-image's Canny detector on the grey image, thinned to 1-pixel lines and inverted (black lines
on white), as pix2pix's edges2shoes/edges2handbags halves look. The pair is written as one JPEG of
``2*size`` x ``size`` pixels: A (the edges) on the left, B (the photo) on the right, the layout of
the pix2pix aligned datasets (docs/bicyclegan.md, paired data).

Sources: a folder of photos (split into train/val/test by the fractions), or a CycleGAN root (images in
``train*/`` and ``test*/`` folders such as ``trainA``, ``testB``): its train images are split into
train/val, its test images form test/. The whole dataset is written into a temporary folder beside
``dst`` and renamed into place at the end, so ``dst`` is either complete or untouched.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

import numpy as np
from PIL import Image, ImageOps

from ..atomic import fsync_path
from ..errors import DataError
from ..limits import MAX_EDGE_SIZE, bounded, finite
from ..limits import seed as check_seed
from ..outputs import checkpoints_within, os_error_line, refuse_checkpoint_area, temporary_folder

SPLITS = ("train", "val", "test")
# Canny's hysteresis thresholds as quantiles of the image's gradient magnitude: the line density then
# stays about the same from a low-contrast to a high-contrast photo.
LOW_QUANTILE, HIGH_QUANTILE = 0.7, 0.9
# ...but never below these magnitudes (Sobel of the smoothed [0, 1] grey image; at sigma 1 about a 3% and
# a 5% brightness step): otherwise a flat photo's noise and JPEG blocks would become lines.
MIN_LOW, MIN_HIGH = 0.08, 0.16
JPEG_QUALITY = 95  # high enough that a 1-px black line survives the compression as a dark line
# Full-resolution colour (4:4:4): with the usual 4:2:0 the decoder's colour upsampling tints the edge half's
# last columns with the photo's colours.
JPEG_SUBSAMPLING = 0

Progress = Callable[[int, int], None]


def default_sigma(size: int) -> float:
    """Canny's Gaussian sigma for a ``size``-px image: 2 at 256 px (details a sketch would draw), scaled
    with the size, at least 1 (below that pixel noise turns into lines)."""
    return max(1.0, 2.0 * size / 256)


def edge_lines(grey: np.ndarray, sigma: float) -> np.ndarray:
    """Thin edge lines of a grey image.

    grey: (H, W) floats in [0, 1]. Returns (H, W) bool, True on the edge pixels: Canny (Gaussian
    ``sigma``, thresholds from :data:`LOW_QUANTILE`/:data:`HIGH_QUANTILE` floored at
    :data:`MIN_LOW`/:data:`MIN_HIGH`), then morphological thinning so every line is one pixel wide
    (Canny alone leaves 2-px runs where a step falls between two pixels).
    """
    from scipy import ndimage
    from skimage.feature import canny
    from skimage.morphology import thin

    grey = np.asarray(grey, dtype=np.float64)
    # the same smoothing and Sobel magnitude Canny computes inside, only to place the thresholds
    smoothed = ndimage.gaussian_filter(grey, sigma, mode="nearest")
    magnitude = np.hypot(ndimage.sobel(smoothed, axis=0), ndimage.sobel(smoothed, axis=1))
    low = max(float(np.quantile(magnitude, LOW_QUANTILE)), MIN_LOW)
    high = max(float(np.quantile(magnitude, HIGH_QUANTILE)), MIN_HIGH)
    return thin(canny(grey, sigma=sigma, low_threshold=low, high_threshold=max(high, low)))


def edges_image(photo: Image.Image, sigma: float) -> Image.Image:
    """The pix2pix-style edge half of an RGB photo: an RGB image of the same size, black lines on white."""
    grey = np.asarray(photo.convert("L"), dtype=np.float64) / 255.0
    ink = np.where(edge_lines(grey, sigma), 0, 255).astype(np.uint8)
    return Image.fromarray(ink).convert("RGB")


def fit_square(photo: Image.Image, size: int) -> Image.Image:
    """Resize so the shorter side is ``size`` (bicubic) and crop the centre ``size`` x ``size``."""
    return ImageOps.fit(photo, (size, size), method=Image.Resampling.BICUBIC, centering=(0.5, 0.5))


def side_by_side(a: Image.Image, b: Image.Image) -> Image.Image:
    """One image of width ``a.width + b.width``: ``a`` in the left columns, ``b`` in the right ones."""
    pair = Image.new("RGB", (a.width + b.width, max(a.height, b.height)), "white")
    pair.paste(a, (0, 0))
    pair.paste(b, (a.width, 0))
    return pair


def edges_pair(photo: Image.Image, size: int, sigma: Optional[float] = None) -> Image.Image:
    """The A|B image of one photo: (2*size) x size, edges left, the fitted photo right."""
    fitted = fit_square(photo.convert("RGB"), size)
    return side_by_side(edges_image(fitted, default_sigma(size) if sigma is None else sigma), fitted)


# -- the sources and the split ---------------------------------------------------------------------


def _is_image(path: Path) -> bool:
    from ..inference.images import has_image_suffix

    return path.is_file() and not path.name.startswith(".") and has_image_suffix(path)


def find_sources(src: Path) -> tuple[list[Path], list[Path]]:
    """(train-side images, test images) of ``src``, each sorted.

    A folder with image files directly inside is a folder of photos: all of them, no test images. A folder
    without any but with ``train*``/``test*`` sub-folders is a CycleGAN root."""
    if not src.exists():
        raise DataError(
            f"source folder '{src}' does not exist; pass a folder of photos (or a CycleGAN "
            f"dataset root such as data/apple2orange)"
        )
    if not src.is_dir():
        raise DataError(f"source '{src}' is not a folder; pass the folder that holds the photos")
    direct = sorted(p for p in src.iterdir() if _is_image(p))
    if direct:
        return direct, []
    subs = sorted(p for p in src.iterdir() if p.is_dir())
    train = sorted(p for d in subs if d.name.startswith("train") for p in d.iterdir() if _is_image(p))
    test = sorted(p for d in subs if d.name.startswith("test") for p in d.iterdir() if _is_image(p))
    if not train and not test:
        raise DataError(
            f"no images in '{src}' (nor in train*/test* sub-folders); pass a folder of photos (.jpg, .png, ...)"
        )
    return train, test


def split_counts(n: int, val: float, test: float) -> tuple[int, int, int]:
    """(train, val, test) sizes for ``n`` images: val and test are the rounded fractions, train the rest."""
    n_val, n_test = round(n * val), round(n * test)
    return n - n_val - n_test, n_val, n_test


def plan_splits(
    train_side: list[Path], test_side: list[Path], val: float, test: float, seed: int
) -> dict[str, list[Path]]:
    """Which source goes to which split. A seeded permutation of the sorted train-side list: its first
    ``round(n*test)`` go to test (only when there are no test-side images), the next ``round(n*val)`` to
    val, the rest to train; test-side images all go to test. Each split is returned sorted."""
    order = np.random.default_rng(seed).permutation(len(train_side))
    shuffled = [train_side[i] for i in order]
    n_train, n_val, n_test = split_counts(len(shuffled), val, 0.0 if test_side else test)
    return {
        "test": sorted(shuffled[:n_test] + test_side),
        "val": sorted(shuffled[n_test : n_test + n_val]),
        "train": sorted(shuffled[n_test + n_val :]),
    }


def output_names(paths: list[Path]) -> dict[Path, str]:
    """A JPEG file name per source: its stem, or ``<folder>_<stem>_<ext>`` where stems repeat (trainA/x.jpg
    and trainB/x.jpg, or x.jpg and x.png)."""
    stems: dict[str, int] = {}
    for p in paths:
        stems[p.stem] = stems.get(p.stem, 0) + 1
    return {
        p: (p.stem if stems[p.stem] == 1 else f"{p.parent.name}_{p.stem}_{p.suffix[1:].lower()}") + ".jpg"
        for p in paths
    }


# -- the command ------------------------------------------------------------------------------------


@dataclass
class EdgesResult:
    """What :func:`make_edges_dataset` wrote: the dataset folder, the pairs per split, the skipped sources
    with the reason, the image size of one half and Canny's sigma."""

    path: Path
    counts: dict[str, int]
    skipped: list[tuple[Path, str]] = field(default_factory=list)
    size: int = 256
    sigma: float = 2.0


def _check_arguments(
    src: Path,
    dst: Path,
    size: int,
    val: float,
    test: Optional[float],
    overwrite: bool,
    sigma: Optional[float],
    seed: int,
) -> None:
    check_seed(seed)
    if size < 8:
        raise DataError(f"--size {size} is too small for edge maps; use at least 8 pixels (256 is pix2pix's)")
    bounded(size, "--size", 8, MAX_EDGE_SIZE, "pix2pix uses 256; memory and time grow with its square")
    if sigma is not None:
        finite(
            sigma,
            "--sigma",
            high=size / 4,
            why=f"a blur wider than a quarter of the {size}-px image leaves "
            f"no edge; the default is {default_sigma(size):g}",
        )
    for name, value in (("--val", val), ("--test", test)):
        if value is not None and not 0.0 <= value < 1.0:
            raise DataError(f"{name} {value} is not a fraction in [0, 1)")
    if val + (test or 0.0) >= 1.0:
        raise DataError(f"--val {val} and --test {test} leave no training images; keep their sum below 1")
    if dst.exists() and not dst.is_dir():
        raise DataError(f"destination '{dst}' exists and is not a folder; pass another DST")
    if dst.resolve() != src.resolve() and dst.resolve().is_relative_to(src.resolve()):
        # the pairs (and the build's temporary folder) would land among the user's photos, which a later
        # `data edges` or a training on SRC reads as photos
        raise DataError(f"the destination '{dst}' is inside the source folder '{src}'; pass a DST outside it")
    if dst.is_dir() and any(dst.iterdir()) and not overwrite:
        raise DataError(f"destination '{dst}' is not empty; pass --overwrite to replace it, or another DST")
    if overwrite and dst.is_dir() and src.resolve().is_relative_to(dst.resolve()):
        raise DataError(
            f"the source '{src}' is inside the destination '{dst}', which --overwrite would delete; pass another DST"
        )
    if overwrite and dst.is_dir() and any(dst.iterdir()):
        held = checkpoints_within(dst)
        if held is not None:
            raise DataError(
                f"the destination '{dst}' holds a run's checkpoints ({held}), which --overwrite would delete and "
                f"only `gmdrit train` and `gmdrit resume` write; pass another DST"
            )


def _install(built: Path, dst: Path, overwrite: bool) -> None:
    """Put the finished ``built`` folder at ``dst`` with renames only; with ``overwrite`` an old ``dst`` is removed
    last. Without it ``dst`` must still be absent or empty: it was when this command started, but another one (a
    second `data edges`, a training) may have written there since, and that is never replaced."""
    if not overwrite:
        try:
            os.rename(built, dst)  # onto an absent or empty folder only: the kernel refuses a non-empty one
        except OSError as exc:
            if dst.is_dir() and any(dst.iterdir()):
                raise DataError(
                    f"destination '{dst}' was filled by something else while this dataset was made (another gmdrit "
                    f"command?); nothing was replaced: pass --overwrite to replace it, or another DST"
                ) from None
            raise exc
        fsync_path(dst.parent)
        return
    if dst.is_dir() and not any(dst.iterdir()):
        dst.rmdir()
    if not dst.exists():
        os.replace(built, dst)
    else:
        old = dst.with_name(f".{dst.name}.old-{os.getpid()}")
        os.replace(dst, old)
        os.replace(built, dst)
        if old.is_symlink():  # DST was a link: the link goes, never what it points to (rmtree refuses links)
            old.unlink()
        else:
            shutil.rmtree(old, ignore_errors=True)
    fsync_path(dst.parent)


def make_edges_dataset(
    src: str | Path,
    dst: str | Path,
    *,
    size: int = 256,
    val: float = 0.1,
    test: Optional[float] = None,
    seed: int = 0,
    overwrite: bool = False,
    sigma: Optional[float] = None,
    progress: Optional[Progress] = None,
) -> EdgesResult:
    """Write the edges -> photo dataset of the photos in ``src`` to ``dst/{train,val,test}/*.jpg``.

    ``test`` is the test fraction of a folder of photos (None: 0.1); a CycleGAN root's test folders are its
    test split, so a ``test`` fraction there is an error. ``progress(done, total)`` is called after each
    source image. Unreadable images are skipped (listed in the result); none readable is an error.
    ``dst`` must be absent or empty unless ``overwrite``. Settings and counts go to ``dst/edges.json``.
    """
    from .unpaired import open_rgb, resolve_root

    source_text = str(src)  # as given: a shipped sample's edges.json names no local path
    src, dst = resolve_root(src), Path(dst).expanduser()
    _check_arguments(src, dst, size, val, test, overwrite, sigma, seed)
    train_side, test_side = find_sources(src)
    if test_side and test is not None:
        raise DataError(
            f"'{src}' has test folders, which are the test split; drop --test (or pass one of its "
            f"train folders to split it by fractions)"
        )
    sigma = default_sigma(size) if sigma is None else float(sigma)
    plan = plan_splits(train_side, test_side, val, 0.1 if test is None else test, seed)
    names = output_names([p for split in SPLITS for p in plan[split]])
    total, done = len(names), 0
    counts = {split: 0 for split in SPLITS}
    skipped: list[tuple[Path, str]] = []
    refuse_checkpoint_area(dst, "DST")
    try:
        dst.parent.mkdir(parents=True, exist_ok=True)
        built = temporary_folder(dst.parent, f".{dst.name}.edges-")
    except OSError as exc:
        raise DataError(os_error_line(exc, f"cannot create the dataset folder {dst}", "pass another DST")) from None
    try:
        for split in SPLITS:
            (built / split).mkdir()
            for path in plan[split]:
                try:
                    photo = open_rgb(path)
                except Exception as exc:  # any decoder failure: the file is not a usable image
                    skipped.append((path, f"cannot be read ({type(exc).__name__})"))
                else:
                    edges_pair(photo, size, sigma).save(
                        built / split / names[path], format="JPEG", quality=JPEG_QUALITY, subsampling=JPEG_SUBSAMPLING
                    )
                    counts[split] += 1
                done += 1
                if progress:
                    progress(done, total)
        if not counts["train"]:
            reason = "none of its images could be read" if not sum(counts.values()) else "no training image is left"
            which = f" ({len(skipped)} skipped, e.g. {skipped[0][0].name}: {skipped[0][1]})" if skipped else ""
            raise DataError(
                f"no dataset written from '{src}': {reason}{which}; give a folder of photos with more images "
                f"(or smaller --val / --test)"
            )
        settings = {
            "source": source_text,
            "size": size,
            "sigma": sigma,
            "val": val,
            "test": test,
            "seed": seed,
            "canny_quantiles": [LOW_QUANTILE, HIGH_QUANTILE],
            "canny_min": [MIN_LOW, MIN_HIGH],
            "layout": "A|B: A (left) = edges, black 1-px lines on white; B (right) = photo",
            "counts": counts,
            "skipped": [str(p) for p, _ in skipped],
        }
        (built / "edges.json").write_text(json.dumps(settings, indent=1) + "\n", encoding="utf-8")
        _install(built, dst, overwrite)
    except OSError as exc:
        raise DataError(os_error_line(exc, f"cannot write the dataset {dst}", "pass another DST")) from None
    finally:
        shutil.rmtree(built, ignore_errors=True)
    return EdgesResult(dst, counts, skipped, size, sigma)
