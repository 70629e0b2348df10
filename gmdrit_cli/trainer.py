"""The one training loop: data, schedule, logging, sample grids and checkpoints of a run folder.

A run is a folder::

    RUN/config.yaml        the resolved config
    RUN/metrics.jsonl      one JSON line per logged iteration
    RUN/samples/           sample grids (the report's rows x 5 layout)
    RUN/checkpoints/       checkpoint folders and the ``latest`` pointer
"""

from __future__ import annotations

import json
import logging
import math
import os
import platform
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from . import __version__
from .checkpoint import save_checkpoint
from .config import Config, config_to_dict, dump_config
from .data import Batch, UnpairedImageFolders, domain_folders, to_image
from .errors import ConfigError, DataError, TrainingError
from .models import build_model
from .models.base import ModelFamily, lr_multiplier

log = logging.getLogger("gmdrit")

ProgressCallback = Callable[[int, "dict[str, float] | None"], None]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device is 'cuda' but no CUDA device is available; use --set train.device=cpu")
    return torch.device(name)


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def library_versions() -> dict[str, str]:
    import PIL
    import safetensors

    return {"gmdrit": __version__, "torch": torch.__version__, "python": platform.python_version(),
            "numpy": np.__version__, "pillow": PIL.__version__, "safetensors": safetensors.__version__}


def save_grid(grid: torch.Tensor, path: Path, pad: int = 2) -> None:
    """Save a rows x cols x 3 x H x W tensor in [-1, 1] as one PNG with white gutters."""
    rows, cols, _, h, w = grid.shape
    canvas = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + pad) + pad), (255, 255, 255))
    for r in range(rows):
        for c in range(cols):
            canvas.paste(to_image(grid[r, c]), (pad + c * (w + pad), pad + r * (h + pad)))
    tmp = path.with_name(path.name + ".tmp")
    canvas.save(tmp, format="PNG")
    os.replace(tmp, path)


def describe_model(cfg: Config) -> dict[str, int]:
    """Parameters per network for ``cfg``, built on the CPU without touching data."""
    return build_model(cfg, torch.device("cpu")).parameter_counts()


@dataclass
class FitResult:
    run_dir: Path
    iterations: int
    seconds: float
    last_losses: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None


class Run:
    """Everything one training run holds: config, data, model, and its folder."""

    def __init__(self, cfg: Config, run_dir: Path):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.device = resolve_device(cfg.train.device)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.train.seed)
        d = cfg.data
        self.dataset = UnpairedImageFolders(d.root, d.domains, "train", resize=d.resize, crop=d.crop,
                                            flip=d.flip, seed=cfg.train.seed)
        self.examples = self._display_examples()
        self.model: ModelFamily = build_model(cfg, self.device)
        self.iters_per_epoch = self.model.iterations_per_epoch(len(self.dataset))
        self.iteration = 0

    def _display_examples(self) -> Batch:
        """One fixed image per domain for the sample grids: from the test split when there is one."""
        d = self.cfg.data
        try:
            domain_folders(d.root, d.domains, "test")
            test = UnpairedImageFolders(d.root, d.domains, "test", resize=d.resize, crop=d.crop, flip=False)
            return test.fixed_examples()
        except DataError:
            return self.dataset.fixed_examples()

    # -- folder ---------------------------------------------------------------------------------

    def prepare_folder(self) -> None:
        for sub in ("samples", "checkpoints"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        (self.run_dir / "config.yaml").write_text(dump_config(self.cfg), encoding="utf-8")

    def log_metrics(self, record: dict) -> None:
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def save_samples(self) -> Path:
        path = self.run_dir / "samples" / f"iter_{self.iteration:07d}.png"
        save_grid(self.model.sample_grid(self.examples), path)
        return path

    def save(self) -> Path:
        state = {"iteration": self.iteration, "family": self.cfg.model.family,
                 "config": config_to_dict(self.cfg), "sampler": self.dataset.state_dict(),
                 "versions": library_versions()}
        folder = self.run_dir / "checkpoints" / f"iter_{self.iteration:07d}"
        return save_checkpoint(folder, self.model.networks, self.model.optimizers, state)

    # -- loop -----------------------------------------------------------------------------------

    def fit(self, on_progress: ProgressCallback | None = None) -> FitResult:
        cfg, t = self.cfg, self.cfg.train
        self.prepare_folder()
        start = time.perf_counter()
        last: dict[str, float] = {}
        checkpoint = None
        while self.iteration < t.max_iters:
            epoch = self.iteration // self.iters_per_epoch
            factor = lr_multiplier(cfg.optim.lr_policy, epoch, cfg.optim.n_epochs, cfg.optim.n_epochs_decay)
            self.model.set_lr_multiplier(factor)
            batches = [self.dataset.sample(t.batch_size) for _ in range(self.model.batches_per_step())]
            losses = self.model.train_step(batches, self.iteration)
            self.iteration += 1
            n = self.iteration
            logged = None
            saving = n % t.save_every == 0 or n == t.max_iters
            if n % t.log_every == 0 or saving:
                logged = {k: float(v) for k, v in losses.items()}  # the only host sync of the loop
                bad = [k for k, v in logged.items() if not math.isfinite(v)]
                if bad:  # checked before any save, so no checkpoint ever holds a diverged model
                    raise TrainingError(f"loss {', '.join(bad)} became non-finite at iteration {n}; "
                                        f"lower the learning rates or resume from the last checkpoint")
                self.log_metrics({"iter": n, "epoch": epoch, "lr_factor": factor,
                                  "time": round(time.perf_counter() - start, 3), **logged})
                last = logged
            if n % t.sample_every == 0 or n == t.max_iters:
                self.save_samples()
            if saving:
                checkpoint = self.save()
            if on_progress is not None:
                on_progress(n, logged)
        return FitResult(self.run_dir, self.iteration, time.perf_counter() - start, last, checkpoint)


def train(cfg: Config, run_dir: Path, on_progress: ProgressCallback | None = None) -> FitResult:
    """Train ``cfg`` into ``run_dir`` from scratch."""
    return Run(cfg, run_dir).fit(on_progress)
