"""``domain_accuracy``: a small CNN trained by gmdrit on the dataset's training images says which domain
a translation looks like, or that it looks like none ("neither").

Classifier. Images are the model's test input (``data.resize``, centre crop ``data.crop``, 8 bit) scaled
to ``min(64, crop)`` px (bilinear, antialiased), pixels in [-1, 1]. Four 3x3 conv + BatchNorm + ReLU
blocks (width 16, 32, 64, 64; 2x2 max pooling after the first three), global average and max pooling
concatenated, one linear layer to D + 1 logits: one per domain and one for "neither". Trained with
AdamW (lr 3e-3, weight decay 1e-4, one-cycle schedule), batch 64, 8 epochs, cross-entropy; augmentation
by random horizontal flips and random crops of 80-100% of the side (one affine resampling per batch) and
+-10% brightness. Seeded (``torch.Generator``): the same data, seed, torch version and thread count
give the same weights.

"Neither". Every epoch adds as many junk images (fresh each epoch, see :mod:`.junk`: uniform colours,
pixel noise, smooth colour noise, gradients, strongly blurred, channel-permuted into blue, inverted and
hue-shifted real training images) as a domain has images on average, labelled D. A prediction is its
argmax over the D + 1 classes: an image counts for domain d only when d wins over every other domain
*and* over "neither". (No confidence threshold: the junk class is what refuses, and a threshold would
cost real accuracy for junk the class already refuses.)

Cache. Training takes about a minute (apple2orange, 2,014 images at 64 px: 68-70 s with one thread on a
busy 2-core machine), so the result is kept in
``<cache>/<key>/domain_classifier.safetensors`` (weights) and ``domain_classifier.json`` (protocol,
training time, accuracy on the real test images per domain, "neither" rates on held-out junk), where
``<cache>`` is ``--classifier-cache DIR``, else ``$GMDRIT_CACHE/domain_classifier``, else
``~/.cache/gmdrit/domain_classifier``, and ``<key>`` the first 16 hex digits of the SHA-256 of the
protocol: resolved dataset root, the sorted names and sizes of the training files per domain, domains,
preprocessing, input size, architecture, training settings and junk recipe. Both files are written
atomically, weights first; the JSON records the weights' SHA-256, and a cache entry whose JSON or
weights do not match is retrained. Nothing is ever unpickled.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

from ... import jsonfile
from . import MetricError, junk, sha256_bytes, write_bytes_atomic, write_json_atomic

log = logging.getLogger("gmdrit")

FORMAT = "gmdrit-domain-classifier/1"
RECIPE = 1  # bump when training, augmentation or junk change in a way the settings do not show
WEIGHTS_FILE = "domain_classifier.safetensors"
JSON_FILE = "domain_classifier.json"
ARCHITECTURE = (
    "conv3x3(3,w)-BN-ReLU-maxpool2, conv3x3(w,2w)-BN-ReLU-maxpool2, conv3x3(2w,4w)-BN-ReLU-maxpool2, "
    "conv3x3(4w,4w)-BN-ReLU, concat(global avg, global max), linear(8w, domains + 1)"
)
HELD_OUT_JUNK = 200  # synthetic junk images per kind for the held-out "neither" rates

Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class ClassifierSettings:
    size: int = 64  # input side; images with a smaller crop keep their size
    width: int = 16
    epochs: int = 8
    batch_size: int = 64
    lr: float = 3e-3
    weight_decay: float = 1e-4
    min_scale: float = 0.8  # random crops keep this much of the side, at least
    junk_ratio: float = 1.0  # junk images per epoch / mean training images per domain
    seed: int = 0


class DomainNet(nn.Module):
    """N x 3 x s x s images in [-1, 1] -> N x (domains + 1) logits (the last one is "neither")."""

    def __init__(self, classes: int, width: int = 16):
        super().__init__()
        w = width
        chans = [(3, w), (w, 2 * w), (2 * w, 4 * w), (4 * w, 4 * w)]
        layers: list[nn.Module] = []
        for i, (cin, cout) in enumerate(chans):
            layers += [nn.Conv2d(cin, cout, 3, padding=1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True)]
            if i < len(chans) - 1:
                layers.append(nn.MaxPool2d(2))
        self.features = nn.Sequential(*layers)
        self.head = nn.Linear(8 * w, classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        f = self.features(x)
        return self.head(torch.cat([f.mean(dim=(2, 3)), f.amax(dim=(2, 3))], dim=1))


def to_unit(images: torch.Tensor, size: int) -> torch.Tensor:
    """uint8 N x 3 x H x W -> float N x 3 x size x size in [0, 1] (bilinear, antialiased when shrinking)."""
    x = images.float().div(255.0)
    if x.shape[-2:] != (size, size):
        x = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True, align_corners=False).clamp_(0, 1)
    return x


def augment(x: torch.Tensor, gen: torch.Generator, min_scale: float) -> torch.Tensor:
    """Random flip, random crop of ``min_scale``..1 of the side (resampled to the same size) and +-10%
    brightness, per image, for N x 3 x s x s images in [0, 1]."""
    n = len(x)
    scale = min_scale + (1 - min_scale) * torch.rand(n, generator=gen)
    tx = (1 - scale) * (2 * torch.rand(n, generator=gen) - 1)
    ty = (1 - scale) * (2 * torch.rand(n, generator=gen) - 1)
    flip = torch.where(torch.rand(n, generator=gen) < 0.5, -1.0, 1.0)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 2] = scale * flip, tx
    theta[:, 1, 1], theta[:, 1, 2] = scale, ty
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return (out * (0.9 + 0.2 * torch.rand(n, 1, 1, 1, generator=gen))).clamp_(0, 1)


def domain_fractions(pred: np.ndarray, target: int, domains: int) -> dict:
    """Fractions of predictions (class indices; ``domains`` means "neither") that are the target, neither,
    or another domain, and their count n."""
    pred = np.asarray(pred)
    n = len(pred)
    if n == 0:
        raise MetricError("domain accuracy needs at least one image")
    if not 0 <= target < domains:
        raise MetricError(f"target domain index {target} is not one of {domains} domains")
    hit = int((pred == target).sum())
    neither = int((pred == domains).sum())
    return {"to_target": hit / n, "neither": neither / n, "other": (n - hit - neither) / n, "n": n}


# ------------------------------------------------------------------------------------------ classifier


class DomainClassifier:
    """A trained :class:`DomainNet` with its domains, input size and record (the cache JSON)."""

    def __init__(
        self,
        net: DomainNet,
        domains: list[str],
        size: int,
        record: dict,
        folder: Path | None = None,
        from_cache: bool = False,
        device: torch.device | str = "cpu",
    ):
        self.device = torch.device(device)
        self.net = net.to(self.device).eval()
        self.domains, self.size, self.record = list(domains), size, record
        self.folder, self.from_cache = folder, from_cache

    @property
    def neither(self) -> int:
        """The class index of "neither"."""
        return len(self.domains)

    @torch.no_grad()
    def logits(self, images: torch.Tensor, batch_size: int = 256) -> torch.Tensor:
        """uint8 N x 3 x H x W -> N x (D + 1) logits (CPU)."""
        out = [
            self.net(to_unit(images[i : i + batch_size], self.size).to(self.device) * 2 - 1).float().cpu()
            for i in range(0, len(images), batch_size)
        ]
        return torch.cat(out) if out else torch.zeros(0, len(self.domains) + 1)

    def predict(self, images: torch.Tensor) -> np.ndarray:
        """uint8 N x 3 x H x W -> N class indices (0..D-1 a domain, D "neither")."""
        return self.logits(images).argmax(dim=1).numpy()

    def _predict_unit(self, x: torch.Tensor) -> np.ndarray:
        return self.predict((x * 255).round().to(torch.uint8))

    def info(self) -> dict:
        r = self.record
        return {
            "folder": str(self.folder) if self.folder else None,
            "key": r.get("key"),
            "loaded_from_cache": self.from_cache,
            "training_seconds": r["training"]["seconds"],
            "input_size": self.size,
            "classes": self.domains + ["neither"],
            "real_test_accuracy": {d: v["to_target"] for d, v in r["test"]["per_domain"].items()},
            "held_out_junk_called_a_domain": {k: v["called_a_domain"] for k, v in r["junk"]["per_kind"].items()},
            "weights_sha256": r["weights"]["sha256"],
        }


def train_net(
    train: list[torch.Tensor], size: int, s: ClassifierSettings, progress: Progress | None = None
) -> tuple[DomainNet, dict]:
    """Train on uint8 N_d x 3 x H x W images per domain; returns the net (eval mode) and a training log."""
    progress = progress or (lambda stage, done, total: None)
    start = time.perf_counter()
    domains = len(train)
    x = torch.cat([to_unit(t, size) for t in train])
    y = torch.cat([torch.full((len(t),), d, dtype=torch.long) for d, t in enumerate(train)])
    n_real = len(x)
    n_junk = max(1, round(s.junk_ratio * n_real / domains))
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(s.seed)
        net = DomainNet(domains + 1, s.width)
    gen = torch.Generator().manual_seed(s.seed)
    steps = math.ceil((n_real + n_junk) / s.batch_size)
    opt = torch.optim.AdamW(net.parameters(), lr=s.lr, weight_decay=s.weight_decay)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=s.lr, total_steps=s.epochs * steps)
    losses, accs = [], []
    net.train()
    for epoch in range(s.epochs):
        progress("domain classifier: train", epoch, s.epochs)
        order = torch.randperm(n_real + n_junk, generator=gen)
        total_loss, correct = 0.0, 0
        for b in range(steps):
            idx = order[b * s.batch_size : (b + 1) * s.batch_size]
            real = idx[idx < n_real]
            k = len(idx) - len(real)
            xb = torch.cat([x[real], junk.mixed(k, size, gen, x)]) if k else x[real]
            yb = torch.cat([y[real], torch.full((k,), domains, dtype=torch.long)])
            logits = net(augment(xb, gen, s.min_scale) * 2 - 1)
            loss = F.cross_entropy(logits, yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total_loss += float(loss.detach()) * len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        losses.append(round(total_loss / (n_real + n_junk), 5))
        accs.append(round(correct / (n_real + n_junk), 5))
    progress("domain classifier: train", s.epochs, s.epochs)
    net.eval()
    return net, {
        "seconds": round(time.perf_counter() - start, 2),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "images": [len(t) for t in train],
        "junk_per_epoch": n_junk,
        "steps": s.epochs * steps,
        "epoch_loss": losses,
        "epoch_train_accuracy": accs,
    }


def held_out_scores(clf: DomainClassifier, test: list[torch.Tensor], seed: int) -> dict:
    """Scores on images the classifier never saw: real test images per domain, and junk per kind
    (synthetic kinds drawn with another seed, the real-image kinds made from the test images)."""
    per_domain = {
        name: domain_fractions(clf.predict(t), d, len(test))
        for d, (name, t) in enumerate(zip(clf.domains, test))
        if len(t)
    }
    gen = torch.Generator().manual_seed(seed + 1_000_003)  # not the training stream
    real = torch.cat([to_unit(t, clf.size) for t in test])
    per_kind = {}
    for kind in junk.KINDS:
        n = HELD_OUT_JUNK if kind in junk.SYNTHETIC else len(real)
        pred = clf._predict_unit(junk.make(kind, n, clf.size, gen, real if kind in junk.FROM_REAL else None))
        neither = float((pred == clf.neither).mean())
        per_kind[kind] = {"neither": neither, "called_a_domain": 1.0 - neither, "n": n}
    bgr = clf._predict_unit(real.flip(1))  # plain RGB -> BGR (green apples stay green: information only)
    return {
        "test": {
            "per_domain": per_domain,
            "mean_accuracy": float(np.mean([v["to_target"] for v in per_domain.values()])),
        },
        "junk": {
            "per_kind": per_kind,
            "neither_rate": float(np.mean([v["neither"] for v in per_kind.values()])),
            "plain_bgr_swap_of_test_images_called_a_domain": float((bgr != clf.neither).mean()),
            "source": f"synthetic kinds: {HELD_OUT_JUNK} each, torch.Generator seed {seed} + 1000003; "
            "real-image kinds: made from the test images",
        },
    }


# ------------------------------------------------------------------------------------------ cache


def cache_root(override: str | Path | None = None) -> Path:
    """``override``, else ``$GMDRIT_CACHE/domain_classifier``, else ``~/.cache/gmdrit/domain_classifier``."""
    if override:
        return Path(override).expanduser()
    base = os.environ.get("GMDRIT_CACHE", "").strip()  # blank (an unset shell variable quoted) is unset
    return (Path(base).expanduser() if base else Path.home() / ".cache" / "gmdrit") / "domain_classifier"


def describe_files(files: list[list[Path]]) -> list[dict]:
    """Per domain: the number of files and the SHA-256 of their sorted ``name<TAB>size`` lines."""
    out = []
    for paths in files:
        lines = sorted(f"{p.name}\t{p.stat().st_size}\n" for p in paths)
        out.append({"files": len(lines), "names_sizes_sha256": sha256_bytes("".join(lines).encode("utf-8"))})
    return out


def make_protocol(
    root: str | Path,
    domains: list[str],
    train_files: list[list[Path]],
    resize: int,
    crop: int,
    settings: ClassifierSettings,
) -> dict:
    from ...data.unpaired import resolve_root

    return {
        "format": FORMAT,
        "recipe": RECIPE,
        "root": str(resolve_root(root).resolve()),
        "domains": list(domains),
        "train_files": describe_files(train_files),
        "preprocess": {"resize": resize, "crop": crop, "resize_mode": "bicubic", "crop_mode": "centre"},
        "input_size": min(settings.size, crop),
        "architecture": ARCHITECTURE,
        "settings": asdict(settings),
        "junk": {"kinds": list(junk.KINDS), "hue_target_deg": list(junk.HUE_TARGET_DEG)},
    }


def protocol_key(protocol: dict) -> str:
    return hashlib.sha256(json.dumps(protocol, sort_keys=True).encode("utf-8")).hexdigest()[:16]


def load_cached(folder: Path, protocol: dict, device: torch.device | str = "cpu") -> DomainClassifier | None:
    """The classifier stored in ``folder`` if it is complete and was trained with ``protocol``; else None
    (with a warning when something is there but damaged or different)."""
    jpath, wpath = folder / JSON_FILE, folder / WEIGHTS_FILE
    if not jpath.is_file():
        return None
    try:
        record = jsonfile.loads(jpath.read_text(encoding="utf-8"))
        if record.get("format") != FORMAT or record.get("protocol") != protocol:
            raise ValueError("it was trained with another protocol")
        data = wpath.read_bytes()
        if sha256_bytes(data) != record["weights"]["sha256"]:
            raise ValueError(f"{WEIGHTS_FILE} does not match the SHA-256 in {JSON_FILE}")
        from safetensors.torch import load as load_safetensors

        net = DomainNet(len(protocol["domains"]) + 1, protocol["settings"]["width"])
        net.load_state_dict(load_safetensors(data), strict=True)
        classifier = DomainClassifier(net, protocol["domains"], protocol["input_size"], record, folder, True, device)
        _check_summary(classifier.info())  # the report prints these: a damaged summary is damage too
    except Exception as exc:  # any damage means: train again and overwrite
        log.warning("ignoring the cached domain classifier in %s (%s); training a new one", folder, exc)
        return None
    return classifier


def _check_summary(info: dict) -> None:
    """Raise ValueError unless the accuracies of a classifier's summary are numbers in [0, 1]."""
    shares = [*info["real_test_accuracy"].values(), *info["held_out_junk_called_a_domain"].values()]
    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) and 0 <= v <= 1 for v in shares):
        raise ValueError(f"{JSON_FILE} holds accuracies that are not shares in [0, 1]")
    if not isinstance(info["training_seconds"], (int, float)):
        raise ValueError(f"{JSON_FILE} holds no training time")


def save(folder: Path, net: DomainNet, record: dict) -> None:
    """Weights first, then the JSON that names their SHA-256: a reader never sees a JSON without its weights."""
    from safetensors.torch import save as save_safetensors

    folder.mkdir(parents=True, exist_ok=True)
    data = save_safetensors({k: v.detach().cpu().contiguous() for k, v in net.state_dict().items()})
    write_bytes_atomic(folder / WEIGHTS_FILE, data)
    record["weights"] = {"file": WEIGHTS_FILE, "sha256": sha256_bytes(data)}
    write_json_atomic(folder / JSON_FILE, record)


def get_classifier(
    root: str | Path,
    cfg,
    cache: str | Path | None = None,
    settings: ClassifierSettings | None = None,
    progress: Progress | None = None,
    device: torch.device | str = "cpu",
    paired: bool = False,
) -> DomainClassifier:
    """The domain classifier of ``cfg.data`` (domains, resize, crop) on the dataset at ``root``: loaded
    from the cache, or trained on its training images, scored on its test images and cached. ``paired``: a
    paired dataset, whose two sides (inputs, outputs) are the two domains."""
    from .images import open_images

    s = settings or ClassifierSettings()
    progress = progress or (lambda stage, done, total: None)
    train = open_images(str(root), cfg, "train", paired=paired)
    protocol = make_protocol(root, cfg.data.domains, train.files, cfg.data.resize, cfg.data.crop, s)
    key = protocol_key(protocol)
    folder = cache_root(cache) / key
    clf = load_cached(folder, protocol, device)
    if clf is not None:
        return clf
    test = open_images(str(root), cfg, "test", paired=paired)
    train_images, test_images = [], []
    total = sum(len(f) for f in train.files) + sum(len(f) for f in test.files)
    done = 0
    for source, out in ((train, train_images), (test, test_images)):
        for d in range(len(cfg.data.domains)):
            images, _ = source.load(source.files[d], d)
            if len(images) == 0 and source is train:
                raise MetricError(
                    f"domain '{cfg.data.domains[d]}' has no readable training images for the "
                    f"domain classifier in {train.ds.folders[d]}"
                )
            out.append(images)
            done += len(source.files[d])
            progress("domain classifier: load images", done, total)
    net, training = train_net(train_images, protocol["input_size"], s, progress)
    record = {
        "format": FORMAT,
        "key": key,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "protocol": protocol,
        "training": training,
    }
    clf = DomainClassifier(net, cfg.data.domains, protocol["input_size"], record, folder, False, device)
    record.update(held_out_scores(clf, test_images, s.seed))
    try:
        save(folder, net, record)
    except OSError as exc:
        raise MetricError(
            f"cannot write the domain classifier cache {folder}: {exc.strerror or exc}; "
            f"choose another folder with --classifier-cache DIR"
        ) from None
    log.info("domain classifier trained in %.1f s, cached in %s", training["seconds"], folder)
    return clf
