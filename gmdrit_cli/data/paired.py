"""Paired image data (BicycleGAN): pix2pix side-by-side files or matching files in two folders.

Two layouts are accepted under ``root`` (``data.paired_layout``):

* ``aligned`` (pix2pix): ``train/``, ``val/``, ``test/`` hold single images of width w with A in columns
  [0, w // 2) and B in columns [w // 2, w) (the pix2pix datasets' layout);
* ``folders``: ``trainA/x.jpg`` is paired with ``trainB/x.<any extension>`` (same file stem), likewise
  ``valA``/``valB`` and ``testA``/``testB``.

``data.direction: BtoA`` swaps the two sides; afterwards the input is always domain 0 (A) and the output
domain 1 (B). With ``data.input_channels: 1`` the input side is read as grayscale (Pillow's ``L``) and
replicated to 3 equal channels, so every batch stays N x 3 x S x S; the family reduces it to one channel.

Training follows the official BicycleGAN loader (``resize_and_crop``): both halves are resized to ``resize``
(bicubic, aspect ratio ignored), cropped at one random position and flipped together; each epoch visits the
pairs in a fresh random order and drops the last partial batch. All choices come from one ``random.Random``
whose state is saved in checkpoints.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import torch
from PIL import Image

from ..errors import DataError
from .unpaired import Batch, list_images, open_rgb, resolve_root, to_tensor

log = logging.getLogger("gmdrit")

LAYOUTS = ("aligned", "folders")
#: the split evaluation and test-time displays read, in order of preference (the official test phase is val)
EVAL_SPLITS = ("val", "test")


def detect_layout(root: Path, split: str, layout: str = "auto") -> str:
    """``aligned`` or ``folders`` for ``root``'s ``split``; ``auto`` picks the one present."""
    aligned, folders = (root / split).is_dir(), (root / f"{split}A").is_dir() and (root / f"{split}B").is_dir()
    if layout == "aligned" or (layout == "auto" and aligned):
        if not aligned:
            raise DataError(
                f"paired data folder '{root}' has no {split}/ folder of A|B images (data.paired_layout: aligned)"
            )
        return "aligned"
    if layout == "folders" or (layout == "auto" and folders):
        if not folders:
            raise DataError(
                f"paired data folder '{root}' has no {split}A/ and {split}B/ folders (data.paired_layout: folders)"
            )
        return "folders"
    raise DataError(
        f"paired data folder '{root}' has neither {split}/ (pix2pix A|B images) nor {split}A/ + "
        f"{split}B/ (paired files with the same names); point data.root at a paired dataset"
    )


def has_split(root: str | Path, split: str, layout: str = "auto") -> bool:
    try:
        detect_layout(resolve_root(root), split, layout)
        return True
    except DataError:
        return False


def eval_split(root: str | Path, layout: str = "auto") -> str:
    """The split test time reads: ``val`` when the dataset has one (as the official test phase), else ``test``."""
    folder = resolve_root(root)
    if not folder.is_dir():  # e.g. a relative data.root read from another working directory
        raise DataError(
            f"data folder '{folder}' does not exist (relative paths are read from the working "
            f"directory, here {Path.cwd()}); pass --data PATH"
        )
    for split in EVAL_SPLITS:
        if has_split(root, split, layout):
            return split
    raise DataError(
        f"paired data folder '{resolve_root(root)}' has no val or test split (val/, test/, valA+valB or testA+testB)"
    )


def _check_root(root: Path) -> None:
    if not root.is_dir():
        state = "is a file, not a folder" if root.exists() else "does not exist"
        raise DataError(
            f"data folder '{root}' {state}; point data.root at a paired dataset "
            f"(--set data.root=PATH; eval and mixture: --data PATH)"
        )


def _aligned_files(folder: Path) -> list[tuple[Path, Path | None]]:
    good, bad = list_images(folder)
    for path in bad:
        log.warning("skipping unreadable image %s", path)
    for path in good:
        with Image.open(path) as im:
            if im.width < 2:
                raise DataError(
                    f"{path} is {im.width} pixel(s) wide and cannot be split into A|B halves; "
                    f"aligned (pix2pix) files hold A on the left and B on the right"
                )
    return [(p, None) for p in good]


def _folder_files(folder_a: Path, folder_b: Path) -> list[tuple[Path, Path | None]]:
    a_files, bad_a = list_images(folder_a)
    b_files, bad_b = list_images(folder_b)
    for path in bad_a + bad_b:
        log.warning("skipping unreadable image %s", path)
    by_stem = {p.stem: p for p in b_files}
    lonely_a = [p for p in a_files if p.stem not in by_stem]
    lonely_b = sorted(set(p.stem for p in b_files) - set(p.stem for p in a_files))
    if lonely_a or lonely_b:
        first = [str(p) for p in lonely_a[:3]] + [str(by_stem[s]) for s in lonely_b[:3]]
        raise DataError(
            f"{len(lonely_a) + len(lonely_b)} file(s) without their pair (paired folders match "
            f"{folder_a.name}/x.* with {folder_b.name}/x.*), e.g. {', '.join(first)}"
        )
    return [(p, by_stem[p.stem]) for p in a_files]


def _check_even(batch_size: int) -> None:
    if batch_size % 2:
        raise DataError(
            f"batch size {batch_size} is odd; BicycleGAN splits each batch into an encoded and a "
            f"random half, so train.batch_size must be even"
        )


class PairedImages:
    """The pairs of one split of a paired dataset, with the official paired transforms and sampler."""

    def __init__(
        self,
        root: str | Path,
        split: str = "train",
        *,
        layout: str = "auto",
        direction: str = "AtoB",
        input_channels: int = 3,
        resize: int,
        crop: int,
        flip: bool,
        seed: int = 0,
    ):
        self.root = resolve_root(root)
        _check_root(self.root)
        self.split, self.direction, self.input_channels = split, direction, input_channels
        self.resize, self.crop, self.flip = resize, crop, flip
        self.layout = detect_layout(self.root, split, layout)
        if self.layout == "aligned":
            self.folders = [self.root / split] * 2
            self.files = _aligned_files(self.root / split)
        else:
            self.folders = [self.root / f"{split}A", self.root / f"{split}B"]
            self.files = _folder_files(*self.folders)
        if direction == "BtoA":
            self.folders = self.folders[::-1]
        if not self.files:
            raise DataError(f"no readable image pairs in '{self.folders[0]}'; add pairs or fix data.root")
        self.rng = random.Random(seed)
        self.order: list[int] = []
        self.position = 0

    def __len__(self) -> int:
        return len(self.files)

    # -- sampler state (saved in checkpoints) ---------------------------------------------------

    def state_dict(self) -> dict:
        version, internal, gauss = self.rng.getstate()
        return {
            "rng": [version, list(internal), gauss],
            "order": list(self.order),
            "position": self.position,
            "files": [[str(a), None if b is None else str(b)] for a, b in self.files],
        }

    def load_state_dict(self, state: dict) -> None:
        version, internal, gauss = state["rng"]
        self.rng.setstate((version, tuple(internal), gauss))
        self.order, self.position = [int(i) for i in state["order"]], int(state["position"])
        if state.get("files"):  # pairs dropped before the save stay dropped, so the order indices still fit
            self.files = [(Path(a), None if b is None else Path(b)) for a, b in state["files"]]

    # -- loading and transforms -----------------------------------------------------------------

    def load_pair(self, index: int) -> tuple[Image.Image, Image.Image]:
        """(input, output) images of pair ``index`` after the direction swap; the input replicated gray with
        ``input_channels == 1``. Raises DataError when the file cannot be decoded."""
        a_path, b_path = self.files[index]
        try:
            if b_path is None:
                im = open_rgb(a_path)
                half = im.width // 2
                a, b = im.crop((0, 0, half, im.height)), im.crop((half, 0, im.width, im.height))
            else:
                a, b = open_rgb(a_path), open_rgb(b_path)
        except Exception as exc:  # any decoder failure: this pair is unusable
            raise DataError(f"cannot decode {a_path if b_path is None else f'{a_path} / {b_path}'}: {exc}") from None
        if self.direction == "BtoA":
            a, b = b, a
        if self.input_channels == 1:
            a = a.convert("L").convert("RGB")
        return a, b

    def transform_pair(self, a: Image.Image, b: Image.Image, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
        """Resize both to ``resize`` square (bicubic) -> one crop (random when training, else centre) -> one
        flip decision -> two 3 x crop x crop tensors in [-1, 1]."""
        a = a.resize((self.resize, self.resize), Image.BICUBIC)
        b = b.resize((self.resize, self.resize), Image.BICUBIC)
        if train:
            left = self.rng.randint(0, self.resize - self.crop)
            top = self.rng.randint(0, self.resize - self.crop)
        else:
            left = top = int(round((self.resize - self.crop) / 2.0))
        box = (left, top, left + self.crop, top + self.crop)
        a, b = a.crop(box), b.crop(box)
        if train and self.flip and self.rng.random() < 0.5:
            a, b = a.transpose(Image.FLIP_LEFT_RIGHT), b.transpose(Image.FLIP_LEFT_RIGHT)
        return to_tensor(a), to_tensor(b)

    # -- sampling -------------------------------------------------------------------------------

    def _next_index(self, batch_size: int) -> int:
        if self.position + batch_size > len(self.order):  # new epoch; the last partial batch is dropped
            if len(self.files) < batch_size:
                raise DataError(
                    f"{len(self.files)} image pair(s) in '{self.folders[0]}' cannot fill a batch of "
                    f"{batch_size}; lower train.batch_size or add pairs"
                )
            self.order = list(range(len(self.files)))
            self.rng.shuffle(self.order)
            self.position = 0
        index = self.order[self.position]
        self.position += 1
        return index

    def sample(self, batch_size: int) -> Batch:
        """A training batch: inputs A (``images``), outputs B (``targets``), domains all 0."""
        _check_even(batch_size)
        inputs, targets = [], []
        while len(inputs) < batch_size:
            index = self._next_index(batch_size - len(inputs))
            try:
                a, b = self.load_pair(index)
            except DataError as exc:
                log.warning("skipping unreadable pair: %s", exc)
                continue  # this epoch goes on without it
            ta, tb = self.transform_pair(a, b, train=True)
            inputs.append(ta)
            targets.append(tb)
        return Batch(torch.stack(inputs), torch.zeros(batch_size, dtype=torch.long), torch.stack(targets))

    def plan_sample(self, batch_size: int) -> list[tuple[int, int, int, bool]]:
        """(pair, crop left, crop top, flip) of every row of :meth:`sample`, drawn now in its order of draws
        (which holds while every pair decodes: :meth:`load_sample` says when one did not)."""
        _check_even(batch_size)
        plan = []
        while len(plan) < batch_size:
            index = self._next_index(batch_size - len(plan))
            left = self.rng.randint(0, self.resize - self.crop)
            top = self.rng.randint(0, self.resize - self.crop)
            plan.append((index, left, top, self.flip and self.rng.random() < 0.5))
        return plan

    def load_sample(self, plan: list[tuple[int, int, int, bool]]) -> Batch | None:
        """The batch of planned rows, or None when a pair does not decode (:meth:`sample` then skips it without
        drawing its crop, so the plan no longer holds). Draws nothing: it may run on another thread."""
        inputs, targets = [], []
        for index, left, top, flip in plan:
            try:
                a, b = self.load_pair(index)
            except DataError:
                return None
            a, b = (self._crop(im, left, top, flip) for im in (a, b))
            inputs.append(a)
            targets.append(b)
        return Batch(torch.stack(inputs), torch.zeros(len(plan), dtype=torch.long), torch.stack(targets))

    def _crop(self, im: Image.Image, left: int, top: int, flip: bool) -> torch.Tensor:
        im = im.resize((self.resize, self.resize), Image.BICUBIC).crop((left, top, left + self.crop, top + self.crop))
        return to_tensor(im.transpose(Image.FLIP_LEFT_RIGHT) if flip else im)

    def plan_state(self) -> tuple:
        """What planning a batch changes (RNG, epoch order, position), to step back to "
        "(:mod:`gmdrit_cli.data.pipeline`)."""
        return self.rng.getstate(), list(self.order), self.position

    def set_plan_state(self, state: tuple) -> None:
        rng, order, self.position = state
        self.rng.setstate(rng)
        self.order = list(order)

    def fixed_examples(self, count: int = 2) -> Batch:
        """The first ``count`` decodable pairs, centre-cropped: the rows of the sample grids."""
        inputs, targets = [], []
        for index in range(len(self.files)):
            try:
                ta, tb = self.transform_pair(*self.load_pair(index), train=False)
            except DataError:
                continue
            inputs.append(ta)
            targets.append(tb)
            if len(inputs) == count:
                break
        if not inputs:
            raise DataError(f"no readable image pair in '{self.folders[0]}'")
        return Batch(torch.stack(inputs), torch.zeros(len(inputs), dtype=torch.long), torch.stack(targets))


def paired_dataset(
    cfg, split: str = "train", seed: int = 0, root: str | Path | None = None, flip: bool | None = None
) -> PairedImages:
    """The :class:`PairedImages` of ``cfg.data`` for ``split`` (read from ``root`` instead of ``data.root``: its
    local copy, :mod:`gmdrit_cli.data.cache`; ``flip``: default ``data.flip``)."""
    d = cfg.data
    return PairedImages(
        d.root if root is None else root,
        split,
        layout=d.paired_layout,
        direction=d.direction,
        input_channels=d.input_channels,
        resize=d.resize,
        crop=d.crop,
        flip=d.flip if flip is None else flip,
        seed=seed,
    )
