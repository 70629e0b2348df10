"""Unpaired multi-domain image folders and a seeded, checkpointable batch sampler.

Two layouts are accepted under ``root``:

* CycleGAN style: ``trainA``, ``trainB``, ... are domains 0, 1, ... (named by ``data.domains``);
* named folders: ``train/<domain name>`` for every name in ``data.domains``.

A validation split (``val_fraction`` > 0) holds out a fixed share of each domain's training images, chosen
by file name alone (:func:`hold_out`): training never sees them, ``split="val"`` reads exactly them.

Sampling follows official MDMM: each sample picks a domain uniformly at random, then an image
uniformly (with replacement) within that domain; the random choices, crops and flips all come from
one ``random.Random`` whose state is saved in checkpoints, so a resumed run sees the same batches.
"""

from __future__ import annotations

import hashlib
import logging
import random
import string
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from ..errors import DataError

# decoding lives in inference.images (torch-free); these names stay importable here
from ..inference.images import has_image_suffix, open_rgb  # noqa: F401
from ..training.shard import split_batch

log = logging.getLogger("gmdrit")


SAMPLE_PREFIX = "sample:"
#: the splits an unpaired dataset offers: ``val`` is held out of the training folders (``data.val_fraction``)
SPLITS = ("train", "val", "test")


def hold_out(files: list[Path], fraction: float) -> tuple[list[Path], list[Path]]:
    """(training files, validation files) of one domain, both in ``files``' order.

    The validation files are the ``round(fraction * len(files))`` ones (at least 1 when ``fraction`` > 0 and
    two or more files) whose SHA-256 of the file name is smallest: a choice by name alone, so it is the same
    on every machine, process and resume, whatever the folder's listing order, and a file added later moves
    no other file between the splits unless it ranks among the held-out ones.
    """
    if fraction <= 0 or len(files) < 2:
        return list(files), []
    n_val = min(len(files) - 1, max(1, round(fraction * len(files))))
    ranked = sorted(files, key=lambda p: (hashlib.sha256(p.name.encode()).hexdigest(), p.name))
    held = set(ranked[:n_val])
    return [p for p in files if p not in held], [p for p in files if p in held]


def resolve_root(root: str | Path) -> Path:
    """``sample:<name>`` names a dataset shipped inside the package; anything else is a path."""
    text = str(root)
    if text.startswith(SAMPLE_PREFIX):
        return Path(__file__).parents[1] / "sample_data" / text[len(SAMPLE_PREFIX) :]
    return Path(text).expanduser()


def domain_folders(root: str | Path, domains: list[str], split: str) -> list[Path]:
    """The folder of each domain for ``split`` ('train' or 'test'; 'val' lies in the training folders), in
    either layout."""
    split = "train" if split == "val" else split
    root = resolve_root(root)
    if not root.is_dir():
        from .download import is_known_dataset

        fetch = (
            f" or download it: gmdrit data download {root.name} --to {root.parent}"
            if is_known_dataset(root.name, "unpaired")
            else ""
        )
        state = "is a file, not a folder" if root.exists() else "does not exist"
        raise DataError(
            f"data folder '{root}' {state}; point data.root at your dataset "
            f"(--set data.root=PATH; eval and mixture: --data PATH){fetch}"
        )
    named = [root / split / name for name in domains]
    if all(p.is_dir() for p in named):
        return named
    letters = string.ascii_uppercase[: len(domains)]
    lettered = [root / f"{split}{letter}" for letter in letters]
    if all(p.is_dir() for p in lettered):
        return lettered
    missing = [str(p) for p in lettered if not p.is_dir()]
    raise DataError(
        f"data folder '{root}' has no {split} split for domains {domains}: expected "
        f"{', '.join(str(p.relative_to(root)) for p in lettered)} or "
        f"{', '.join(str(p.relative_to(root)) for p in named)} (missing: {', '.join(missing)})"
    )


def list_images(folder: Path) -> tuple[list[Path], list[Path]]:
    """Sorted image files of a folder and the ones whose header cannot be read."""
    good, bad = [], []
    for path in sorted(folder.iterdir()):
        if not path.is_file() or not has_image_suffix(path):
            continue
        try:
            with Image.open(path) as im:
                im.size  # noqa: B018 - reading the header is the check
            good.append(path)
        except Exception:  # any decoder failure means the file is unusable
            bad.append(path)
    return good, bad


def to_tensor(im: Image.Image) -> torch.Tensor:
    """PIL RGB -> 3xHxW float tensor in [-1, 1]."""
    arr = np.asarray(im, dtype=np.uint8)
    return torch.from_numpy(arr.copy()).permute(2, 0, 1).float().div_(127.5).sub_(1.0)


def to_image(x: torch.Tensor) -> Image.Image:
    """3xHxW tensor in [-1, 1] -> PIL RGB (rounded, clamped)."""
    arr = ((x.detach().float().cpu().clamp(-1, 1) + 1.0) * 127.5).round().byte()
    return Image.fromarray(arr.permute(1, 2, 0).numpy())


@dataclass
class Batch:
    """A training batch: ``images`` Bx3xSxS in [-1, 1] and ``domains`` B (long domain indices).

    Paired data (``paired_data.PairedImages``): ``images`` are the inputs A (domain 0), ``targets`` Bx3xSxS the
    matching outputs B (domain 1) under the same crop and flip."""

    images: torch.Tensor
    domains: torch.Tensor
    targets: torch.Tensor | None = None


class UnpairedImageFolders:
    """The images of every domain of one split, with the MDMM sampler and transforms.

    A batch is planned first (domain, image, crop and flip of every row, all from ``rng``) and only then
    loaded, so processes sharing a global batch (:mod:`gmdrit_cli.training.shard`) plan the same batch from the
    same seed and each decodes only its own rows.
    """

    def __init__(
        self,
        root: str | Path,
        domains: list[str],
        split: str = "train",
        *,
        resize: int,
        crop: int,
        flip: bool,
        seed: int = 0,
        val_fraction: float = 0.0,
    ):
        if split == "val" and val_fraction <= 0:
            raise DataError(
                "there is no validation split: the model was trained with data.val_fraction 0 (every "
                "training image was seen); use the test split, or train with --set data.val_fraction=0.1"
            )
        self.domains = list(domains)
        self.resize, self.crop, self.flip, self.split = resize, crop, flip, split
        self.folders = domain_folders(root, self.domains, split)
        #: the images the sampler draws from, per domain; fixed after construction so every process of a
        #: run plans alike, whichever files it found broken (those are kept in ``broken`` instead)
        self.candidates: list[list[Path]] = []
        #: per domain, the files of the training folder held out as the validation split (split "train" only)
        self.held_out: list[list[Path]] = []
        for name, folder in zip(self.domains, self.folders):
            good, bad = list_images(folder)
            for path in bad:
                log.warning("skipping unreadable image %s", path)
            if split != "test":  # the split is drawn over every image file name, readable or not
                kept, held = hold_out(sorted(good + bad), val_fraction)
                chosen = set(held if split == "val" else kept)
                good = [p for p in good if p in chosen]
                self.held_out.append(held if split == "train" else [])
            if not good:
                raise DataError(
                    f"domain '{name}' has no readable images in '{folder}'; add images "
                    f"(any format Pillow reads) or fix data.root"
                )
            self.candidates.append(good)
        self.broken: set[Path] = set()
        self.rng = random.Random(seed)
        self._epoch_order: tuple | None = None  # (key, shuffled (domain, file index) pairs) of epoch_batch

    @property
    def files(self) -> list[list[Path]]:
        """The usable images of each domain (the candidates less those that failed to decode)."""
        return [[p for p in f if p not in self.broken] for f in self.candidates]

    def __len__(self) -> int:
        """Samples per epoch, as MDMM: the size of the largest domain."""
        return max(len(f) for f in self.candidates)

    # -- sampler state (saved in checkpoints) ---------------------------------------------------

    def state_dict(self) -> dict:
        version, internal, gauss = self.rng.getstate()
        return {
            "rng": [version, list(internal), gauss],
            "files": [[str(p) for p in f] for f in self.candidates],
            "broken": sorted(str(p) for p in self.broken),
        }

    def load_state_dict(self, state: dict) -> None:
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        if len(state.get("files", [])) == len(self.candidates):  # the lists the saved RNG drew from
            self.candidates = [[Path(p) for p in f] or self.candidates[i] for i, f in enumerate(state["files"])]
        self.broken = {Path(p) for p in state.get("broken", [])}

    # -- sampling -------------------------------------------------------------------------------

    def _plan_row(self) -> tuple[int, Path, int, int, bool]:
        """(domain, image, crop left, crop top, flip) of one training row, drawn from ``rng``."""
        d = self.rng.randrange(len(self.domains))
        files = self.candidates[d]
        path = files[self.rng.randrange(len(files))]
        left = self.rng.randint(0, self.resize - self.crop)
        top = self.rng.randint(0, self.resize - self.crop)
        flip = self.flip and self.rng.random() < 0.5
        return d, path, left, top, flip

    def _load(self, domain: int, path: Path) -> Image.Image:
        """``path`` decoded; an undecodable file is reported once, marked broken and replaced by the next
        usable image of the domain (the same replacement on every process: no random draw)."""
        files = self.candidates[domain]
        start = files.index(path) if path in files else 0
        for i in range(len(files)):
            candidate = files[(start + i) % len(files)]
            if candidate in self.broken:
                continue
            try:
                return open_rgb(candidate)
            except Exception:
                log.warning("skipping unreadable image %s", candidate)
                self.broken.add(candidate)
        raise DataError(
            f"domain '{self.domains[domain]}' has no readable images left in "
            f"'{self.folders[domain]}'; replace the broken files"
        )

    def _crop(self, im: Image.Image, left: int, top: int, flip: bool) -> torch.Tensor:
        im = im.resize((self.resize, self.resize), Image.BICUBIC)
        im = im.crop((left, top, left + self.crop, top + self.crop))
        if flip:
            im = im.transpose(Image.FLIP_LEFT_RIGHT)
        return to_tensor(im)

    def transform(self, im: Image.Image, train: bool = True) -> torch.Tensor:
        """Resize (bicubic, square) -> crop (random when training, else centre) -> flip -> [-1, 1]."""
        if train:
            left = self.rng.randint(0, self.resize - self.crop)
            top = self.rng.randint(0, self.resize - self.crop)
            return self._crop(im, left, top, self.flip and self.rng.random() < 0.5)
        left = top = int(round((self.resize - self.crop) / 2.0))
        return self._crop(im, left, top, False)

    def sample(self, batch_size: int, rank: int = 0, world: int = 1) -> Batch:
        """A training batch with domains drawn uniformly at random per sample.

        With ``world`` processes sharing the batch, every process plans the whole batch and returns
        only the rows of process ``rank`` (:func:`gmdrit_cli.training.shard.split_batch`): B / world rows."""
        return self.load_sample(self.plan_sample(batch_size, rank, world))

    def plan_sample(self, batch_size: int, rank: int = 0, world: int = 1) -> list[tuple[int, Path, int, int, bool]]:
        """The rows of :meth:`sample` this process loads, drawn from ``rng`` (the only part that draws)."""
        plan = [self._plan_row() for _ in range(batch_size)]
        if world > 1:
            plan = [plan[i] for i in split_batch(batch_size, rank, world).rows(batch_size)]
        return plan

    def load_sample(self, plan: list[tuple[int, Path, int, int, bool]]) -> Batch:
        """The batch of planned rows: draws nothing, so it may run on another thread "
        "(:mod:`gmdrit_cli.data.pipeline`)."""
        images = [self._crop(self._load(d, path), left, top, flip) for d, path, left, top, flip in plan]
        return Batch(torch.stack(images), torch.tensor([row[0] for row in plan], dtype=torch.long))

    def plan_state(self) -> tuple:
        """What planning a batch changes (the sampler RNG), to step back to (:mod:`gmdrit_cli.data.pipeline`)."""
        return self.rng.getstate()

    def set_plan_state(self, state: tuple) -> None:
        self.rng.setstate(state)

    def epoch_batch(self, domains: tuple[int, ...], epoch_key: str, index: int, batch_size: int) -> Batch:
        """Batch ``index`` of an epoch over every image of ``domains``, each once, in the order a
        ``random.Random(epoch_key)`` shuffle gives (the same key gives the same epoch, so a resumed run sees the
        same batches); the last batch of an epoch holds the rest (may be smaller). A file that no longer decodes
        is reported and left out of the batch."""
        images, labels = [], []
        for d, i in self._epoch_items(domains, epoch_key)[index * batch_size : (index + 1) * batch_size]:
            path = self.files[d][i]
            try:
                images.append(self.transform(open_rgb(path), train=True))
            except Exception:
                log.warning("skipping unreadable image %s", path)
                continue
            labels.append(d)
        if not images:
            raise DataError(f"batch {index} of epoch {epoch_key} has no readable image; replace the broken files")
        return Batch(torch.stack(images), torch.tensor(labels, dtype=torch.long))

    def _epoch_items(self, domains: tuple[int, ...], epoch_key: str) -> list[tuple[int, int]]:
        """(domain, file index) of every image of ``domains`` in the order of epoch ``epoch_key``."""
        if self._epoch_order is None or self._epoch_order[0] != (epoch_key, domains):
            items = [(d, i) for d in domains for i in range(len(self.files[d]))]
            random.Random(epoch_key).shuffle(items)
            self._epoch_order = ((epoch_key, domains), items)
        return self._epoch_order[1]

    def plan_epoch_batch(
        self, domains: tuple[int, ...], epoch_key: str, index: int, batch_size: int
    ) -> list[tuple[int, Path, int, int, bool]]:
        """The rows of :meth:`epoch_batch` with their crops and flips drawn now, in its order of draws (which
        holds while every file decodes: :meth:`load_epoch_batch` says when one did not)."""
        plan = []
        for d, i in self._epoch_items(domains, epoch_key)[index * batch_size : (index + 1) * batch_size]:
            left = self.rng.randint(0, self.resize - self.crop)
            top = self.rng.randint(0, self.resize - self.crop)
            plan.append((d, self.files[d][i], left, top, self.flip and self.rng.random() < 0.5))
        return plan

    def load_epoch_batch(self, plan: list[tuple[int, Path, int, int, bool]]) -> Batch | None:
        """The batch of planned epoch rows, or None when a file no longer decodes (:meth:`epoch_batch` then draws
        no crop for it, so the plan no longer holds). Draws nothing."""
        try:
            images = [self._crop(open_rgb(path), left, top, flip) for _, path, left, top, flip in plan]
        except Exception:
            return None
        return Batch(torch.stack(images), torch.tensor([row[0] for row in plan], dtype=torch.long))

    def images_per_epoch(self, domains: tuple[int, ...]) -> int:
        return sum(len(self.files[d]) for d in domains)

    def fixed_examples(self) -> Batch:
        """The first image of every domain, centre-cropped: the inputs of the sample grids."""
        images = []
        for files in self.files:
            for path in files:
                try:
                    images.append(self.transform(open_rgb(path), train=False))
                    break
                except Exception:
                    continue
            else:
                raise DataError(f"no readable image among {self.candidates[len(images)][0].parent}")
        return Batch(torch.stack(images), torch.arange(len(self.candidates)))
