"""The one training loop: data, schedule, logging, sample grids and checkpoints of a run folder.

A run is a folder::

    RUN/config.yaml        the resolved config
    RUN/splits.json        unpaired data: the validation files held out of training (data.val_fraction)
    RUN/init.json          a run started from another model's weights (train.init_from): which file, its SHA-256
    RUN/speed.json         what the speed settings became on this device and why (precision, TF32, loader)
    RUN/metrics.jsonl      one JSON line per logged iteration
    RUN/samples/           sample grids (the report's rows x 5 layout)
    RUN/checkpoints/       checkpoint folders and the ``latest`` pointer
    RUN/.lock              while a run writes the folder: which process (:mod:`gmdrit_cli.training.runlock`)

Under torchrun several processes train one run (:mod:`gmdrit_cli.training.distributed`): each takes its share of
the global batch, and only rank 0 writes the folder; every decision that must be the same on every
process (stop, time budget, unplanned save) is agreed on once per iteration.
"""

from __future__ import annotations

import base64
import json
import logging
import math
import os
import platform
import random
import re
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from safetensors.torch import load_file

from .. import __version__, atomic, jsonfile
from ..config.schema import Config, _flatten, build_config, config_to_dict, dump_config, parse_duration, parse_overrides
from ..data.cache import CacheResult, cache_dataset
from ..data.factory import training_dataset
from ..data.paired import EVAL_SPLITS, has_split
from ..data.pipeline import BatchPipeline, Draw, auto_threads
from ..data.unpaired import Batch, domain_folders, to_image
from ..errors import CheckpointError, ConfigError, DataError, TrainingError
from ..families import build_model
from ..families.base import ModelFamily
from ..limits import whole_number
from ..outputs import refuse_checkpoint_area
from . import distributed
from .checkpoint import (
    LATEST,
    MODEL_FILE,
    STATE_FILE,
    checkpoint_name,
    find_checkpoint,
    list_checkpoints,
    load_network_weights,
    load_optimizer_states,
    prune_checkpoints,
    run_of_latest,
    save_checkpoint,
)
from .engine import Engine, PhaseSpan
from .runlock import RunLock, refuse_if_busy
from .tb_log import NoTensorBoard, TensorBoardLog, open_tensorboard

log = logging.getLogger("gmdrit")

ProgressCallback = Callable[[int, "dict[str, float] | None"], None]


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)  # also seeds every CUDA device


def library_versions() -> dict[str, str]:
    import PIL
    import safetensors

    return {
        "gmdrit": __version__,
        "torch": torch.__version__,
        "python": platform.python_version(),
        "numpy": np.__version__,
        "pillow": PIL.__version__,
        "safetensors": safetensors.__version__,
    }


def save_grid(grid: torch.Tensor, path: Path, pad: int = 2) -> None:
    """Save a rows x cols x 3 x H x W tensor in [-1, 1] as one PNG with white gutters."""
    rows, cols, _, h, w = grid.shape
    canvas = Image.new("RGB", (cols * (w + pad) + pad, rows * (h + pad) + pad), (255, 255, 255))
    for r in range(rows):
        for c in range(cols):
            canvas.paste(to_image(grid[r, c]), (pad + c * (w + pad), pad + r * (h + pad)))
    atomic.atomic_write(path, lambda tmp: canvas.save(tmp, format="PNG"))


def describe_model(cfg: Config) -> dict[str, int]:
    """Parameters per network for ``cfg``, built on the CPU without touching data."""
    return build_model(cfg, torch.device("cpu")).parameter_counts()


#: keys that may change when a run continues: they do not change what the model computes
RESUMABLE_KEYS = frozenset(
    {
        "train.max_iters",
        "train.time_budget",
        "train.log_every",
        "train.sample_every",
        "train.grid_random",
        "train.save_every",
        "train.save_minutes",
        "train.keep_last",
        "train.keep_every",
        "train.device",
        "train.threads",
        "train.tensorboard",
        "name",
        "description",
        # the EMA copy and the process group watch training, they do not change it
        "train.ema_beta",
        "train.dist_timeout",
        "train.check_replicas_every",
        # how the step is computed, not what is trained
        "speed.amp",
        "speed.channels_last",
        "speed.compile",
        "speed.optimizer",
        # (the pipeline loads the same batches in the same order, prefetching or not)
        "speed.tf32",
        "speed.cudnn_benchmark",
        "speed.prefetch",
        "speed.loader_threads",
    }
)

#: the signals that stop a run with a checkpoint (SIGHUP does not exist on Windows)
STOP_SIGNALS = tuple(signal.Signals[n] for n in ("SIGINT", "SIGTERM", "SIGHUP") if n in signal.Signals.__members__)


def _encode_bytes(t: torch.Tensor) -> str:
    return base64.b64encode(t.numpy().tobytes()).decode("ascii")


def _decode_bytes(text: str) -> torch.Tensor:
    return torch.frombuffer(bytearray(base64.b64decode(text)), dtype=torch.uint8).clone()


def rng_state(device: torch.device | None = None) -> dict:
    """Every global random state (python, numpy, torch CPU and CUDA), JSON-able; with a CUDA ``device``
    also its own state as ``cuda_device`` (each process of a multi-GPU run draws on its own GPU, and all
    of them draw alike, so rank 0's GPU state is every process's)."""
    np_state = np.random.get_state()
    version, internal, gauss = random.getstate()
    state = {
        "python": [version, list(internal), gauss],
        "numpy": [np_state[0], np_state[1].tolist(), *np_state[2:]],
        "torch": _encode_bytes(torch.get_rng_state()),
        "cuda": [_encode_bytes(s) for s in torch.cuda.get_rng_state_all()] if torch.cuda.is_available() else [],
    }
    if device is not None and device.type == "cuda":
        state["cuda_device"] = _encode_bytes(torch.cuda.get_rng_state(device))
    return state


def set_rng_state(state: dict, device: torch.device | None = None) -> None:
    version, internal, gauss = state["python"]
    random.setstate((version, tuple(internal), gauss))
    kind, keys, *rest = state["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), *rest))
    torch.set_rng_state(_decode_bytes(state["torch"]))
    if state.get("cuda") and torch.cuda.is_available() and len(state["cuda"]) == torch.cuda.device_count():
        torch.cuda.set_rng_state_all([_decode_bytes(s) for s in state["cuda"]])
    if state.get("cuda_device") and device is not None and device.type == "cuda":
        torch.cuda.set_rng_state(_decode_bytes(state["cuda_device"]), device)


@dataclass
class FitResult:
    run_dir: Path
    iterations: int
    seconds: float
    last_losses: dict[str, float] = field(default_factory=dict)
    checkpoint: Path | None = None
    stopped: str = "done"  # "done", "time budget" or the name of the signal that stopped it

    @property
    def finished(self) -> bool:
        return self.stopped == "done"


class Run:
    """Everything one training run holds: config, data, model, and its folder."""

    def __init__(self, cfg: Config, run_dir: Path):
        self.cfg = cfg
        self.run_dir = Path(run_dir)
        self.processes, self.device = distributed.join(cfg.train.device, cfg.train.dist_timeout)
        world = self.processes.world
        if cfg.train.batch_size % (2 * world):
            raise ConfigError(
                f"train.batch_size={cfg.train.batch_size} (the global batch) cannot be split into two "
                f"halves over {world} processes: use a multiple of {2 * world}"
            )
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        seed_everything(cfg.train.seed)
        self.model: ModelFamily = build_model(cfg, self.device)  # building reads no data and no sampler RNG
        self.paired = self.model.capabilities.paired_data
        d = cfg.data
        #: the local copy of data.root (speed.data_cache), and where the data are read: data.root or that copy
        self.data_cache: CacheResult | None = self._cache_data() if cfg.speed.data_cache else None
        self.data_root = self.data_cache.path if self.data_cache else d.root
        self.dataset = training_dataset(cfg, "train", paired=self.paired, root=self.data_root, seed=cfg.train.seed)
        self.examples = self._display_examples()
        self.iters_per_epoch = self.model.iterations_per_epoch(len(self.dataset))
        # a phased family: each phase's epoch is one pass over the images of its domains
        phase_lengths = [
            math.ceil(self.dataset.images_per_epoch(p.domains) / cfg.train.batch_size) for p in self.model.phases()
        ]
        if self.processes.world > 1 and (self.paired or phase_lengths):
            raise TrainingError(
                f"training with several processes supports the unpaired, phase-less families "
                f"for now, not {cfg.model.family} (paired or trained in phases); run it as one process"
            )
        self.engine = Engine(self.model, self.iters_per_epoch, phase_lengths or None, self.processes)
        self.iteration = 0
        self.resumed_from: Path | None = None
        self.init_record: dict | None = None  # train.init_from of a new run (initialise_from)
        self._stop_signal: str | None = None
        self._lock: RunLock | bool | None = None  # False: held by rank 0, not this process
        # the time budget belongs to this invocation: it is never stored (config.yaml, checkpoints)
        self.time_budget = parse_duration(cfg.train.time_budget)
        self._pipeline: BatchPipeline | None = None  # while the loop runs

    def _cache_data(self) -> CacheResult:
        """data.root copied to speed.data_cache, or the copy already there (once per machine: its first process
        copies while the others wait, then they find the copy complete)."""
        failed = result = None
        if self.processes.local_rank == 0:
            try:
                result = cache_dataset(self.cfg.data.root, self.cfg.speed.data_cache)
            except DataError as exc:
                failed = exc
        if self.processes.agree([failed is not None])[0]:
            raise failed or DataError(
                f"process {self.processes.rank}: copying data.root to speed.data_cache "
                f"failed on another process (see its message)"
            )
        return result or cache_dataset(self.cfg.data.root, self.cfg.speed.data_cache)

    def _display_examples(self) -> Batch:
        """One fixed image per domain for the sample grids: from the test split when there is one."""
        d, root = self.cfg.data, self.data_root
        if self.paired:  # the first pairs of the split test time reads (val, else test), else of train
            split = next((s for s in EVAL_SPLITS if has_split(root, s, d.paired_layout)), "train")
            return training_dataset(self.cfg, split, paired=True, root=root).fixed_examples()
        try:
            domain_folders(root, d.domains, "test")
            test = training_dataset(self.cfg, "test", paired=False, root=root, flip=False)
            return test.fixed_examples()
        except DataError:
            return self.dataset.fixed_examples()

    def initialise_from(self, path: str) -> None:
        """A new run's starting weights from another model (``train.init_from``); the EMA copy starts from them."""
        from ..inference.model_files import initialise_from

        self.init_record = initialise_from(path, self.model.networks)
        if self.engine.ema is not None:
            self.engine.reset_ema([n for n in self.model.test_time_networks if n in self.model.networks])
        log.info(
            "initialised %d tensors from %s (%d kept their fresh initialisation)",
            self.init_record["tensors_copied"],
            path,
            self.init_record["tensors_fresh"],
        )

    # -- folder ---------------------------------------------------------------------------------

    @property
    def end_iteration(self) -> int:
        """Where this run stops: ``train.max_iters``, or the end of the last phase when that comes first."""
        total = self.engine.total_iterations
        return self.cfg.train.max_iters if total is None else min(self.cfg.train.max_iters, total)

    def batch_draws(self, iteration: int) -> list[Draw]:
        """The batches of ``iteration``: MDMM's sampler, or the current epoch of the current phase."""
        t = self.cfg.train
        span = self.engine.span_at(iteration)
        if span is None:
            p = self.processes  # several processes: each loads its rows of the planned batch (unpaired data)
            shard = (p.rank, p.world) if p.world > 1 else ()
            return [Draw("sample", (t.batch_size, *shard))] * self.model.batches_per_step()
        epoch, index = span.position(iteration)
        return [Draw("epoch_batch", (span.phase.domains, f"{t.seed}:{span.index}:{epoch}", index, t.batch_size))]

    def next_batches(self) -> list[Batch]:
        """The batches of the next iteration, loaded inline."""
        return [getattr(self.dataset, d.kind)(*d.args) for d in self.batch_draws(self.iteration)]

    @property
    def loader_threads(self) -> int:
        """``speed.loader_threads``, or this process's share of the machine's cores (0 without prefetching)."""
        sp = self.cfg.speed
        if not sp.prefetch:
            return 0
        return sp.loader_threads or auto_threads(distributed.env_int("LOCAL_WORLD_SIZE", self.processes.world))

    def open_pipeline(self) -> BatchPipeline:
        """The loop's input pipeline: ``speed.prefetch`` iterations planned ahead, loaded in the background."""
        return BatchPipeline(
            self.dataset,
            self.batch_draws,
            prefetch=self.cfg.speed.prefetch,
            threads=self.loader_threads,
            pin=self.device.type == "cuda",
        )

    def speed_record(self) -> dict:
        """What the ``speed`` settings became on this device, and why (RUN/speed.json, rewritten at each start)."""
        e, sp = self.engine, self.cfg.speed
        record = {
            "device": str(self.device),
            "processes": self.processes.world,
            "precision": {None: "fp32"}.get(e.amp_dtype, str(e.amp_dtype).removeprefix("torch.")),
            "precision_reason": e.amp_reason,
            "loss_scaling": e.scaler is not None,
            "tf32": e.tf32,
            "cudnn_benchmark": e.cudnn_benchmark,
            "channels_last": e.channels_last,
            "prefetch": sp.prefetch,
            "loader_threads": self.loader_threads,
            "data_root": str(self.data_root),
        }
        if self.device.type == "cuda":
            major, minor = torch.cuda.get_device_capability(self.device)
            record.update(gpu=torch.cuda.get_device_name(self.device), compute_capability=f"{major}.{minor}")
        return record

    def prepare_folder(self) -> None:
        if not self.processes.is_writer:
            return
        for sub in ("samples", "checkpoints"):
            (self.run_dir / sub).mkdir(parents=True, exist_ok=True)
        atomic.write_text(self.run_dir / "config.yaml", dump_config(stored_config(self.cfg)))
        if not self.paired:
            atomic.write_json(self.run_dir / "splits.json", self._splits_record())
        if self.init_record is not None:  # a new run started from another model's weights: which, exactly
            atomic.write_json(self.run_dir / "init.json", self.init_record)
        atomic.write_json(self.run_dir / "speed.json", self.speed_record())
        self._trim_metrics()
        self._set_aside_later_results()

    def _splits_record(self) -> dict:
        """Which training images this run never trains on (the validation split) and how they were chosen."""
        d = self.cfg.data
        return {
            "val_fraction": d.val_fraction,
            "rule": "per domain, the round(val_fraction * n) training files (at least 1) with the smallest "
            "SHA-256 of the file name (gmdrit_cli.data.unpaired.hold_out)",
            "domains": {
                name: {"folder": str(folder), "train_images": len(files), "val_files": [p.name for p in held]}
                for name, folder, files, held in zip(
                    d.domains, self.dataset.folders, self.dataset.candidates, self.dataset.held_out
                )
            },
        }

    def _set_aside_later_results(self) -> None:
        """Resumed from an older checkpoint: the checkpoints and sample grids of later iterations would be
        replaced as training passes those iterations again (on a GPU, with other numbers), so they move to
        ``RUN/after-iter_N/`` (``-2``, ... when a run goes back to the same checkpoint again), whole."""
        ckpt_dir = self.run_dir / "checkpoints"
        later = [p for p in list_checkpoints(ckpt_dir) if int(p.name.removeprefix("iter_")) > self.iteration]
        grids = [
            p
            for p in sorted((self.run_dir / "samples").glob("iter_*.png"))
            if (n := whole_number(p.stem.removeprefix("iter_"))) is not None and n > self.iteration
        ]
        if not later and not grids:
            return
        stem = f"after-{checkpoint_name(self.iteration)}"
        aside, n = self.run_dir / stem, 2
        while aside.exists():
            aside, n = self.run_dir / f"{stem}-{n}", n + 1
        for sub, paths in (("checkpoints", later), ("samples", grids)):
            if paths:
                (aside / sub).mkdir(parents=True, exist_ok=True)
            for path in paths:
                os.replace(path, aside / sub / path.name)
        if later and (ckpt_dir / checkpoint_name(self.iteration)).is_dir():  # the pointer named one of them
            atomic.write_text(ckpt_dir / LATEST, checkpoint_name(self.iteration) + "\n")
        log.info(
            "%d checkpoint(s) and %d sample grid(s) after iteration %d kept aside in %s",
            len(later),
            len(grids),
            self.iteration,
            aside,
        )

    def _trim_metrics(self) -> None:
        """Drop logged lines past the iteration we start from (written after the checkpoint we resume). They are
        earlier results, so they are kept aside in ``metrics.after-iter_N.jsonl`` (``-2``, ``-3``, ... when a run
        goes back to the same checkpoint again)."""
        path = self.run_dir / "metrics.jsonl"
        if not path.exists():
            return
        keep, later = [], []
        for line in path.read_bytes().decode("utf-8", "replace").splitlines():  # damaged bytes: that line goes
            try:
                record = jsonfile.loads(line)
            except (ValueError, RecursionError):
                continue  # a line cut off by a kill
            iteration = record.get("iter") if isinstance(record, dict) else None
            if isinstance(iteration, int) and not isinstance(iteration, bool) and iteration > self.iteration:
                later.append(line)
            else:  # this run's earlier lines, and lines that are not gmdrit's (a note added by hand) stay
                keep.append(line)
        if later:
            stem = f"metrics.after-{checkpoint_name(self.iteration)}"
            aside, n = self.run_dir / f"{stem}.jsonl", 2
            while aside.exists():
                aside, n = self.run_dir / f"{stem}-{n}.jsonl", n + 1
            atomic.write_text(aside, "".join(x + "\n" for x in later))
            log.info("metrics logged after iteration %d kept aside in %s", self.iteration, aside)
        atomic.write_text(path, "".join(x + "\n" for x in keep))

    def log_metrics(self, record: dict) -> None:
        if not self.processes.is_writer:
            return
        with open(self.run_dir / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(record) + "\n")

    def save_samples(self) -> Path | None:
        if not self.processes.is_writer:
            return None  # the grid draws from its own generator: the other processes' RNGs stay in step
        path = self.run_dir / "samples" / f"{checkpoint_name(self.iteration)}.png"
        save_grid(self.model.sample_grid(self.examples), path)
        return path

    # -- checkpoints ----------------------------------------------------------------------------

    def save(self) -> Path | None:
        """Write a checkpoint (rank 0 only: every process holds the same weights, optimizer states,
        sampler and RNG states)."""
        if not self.processes.is_writer:
            return None
        state = {
            "iteration": self.iteration,
            "family": self.cfg.model.family,
            "config": config_to_dict(stored_config(self.cfg)),
            "rng": rng_state(self.device),
            # as of the batches trained on, not those the pipeline planned ahead
            "sampler": self.dataset.state_dict() if self._pipeline is None else self._pipeline.sampler_state(),
            "processes": self.processes.world,
            "model_state": self.model.extra_state(self.iteration, self.iters_per_epoch),
            "versions": library_versions(),
            **self.engine.state_dict(),
        }
        phase = self.engine.phase_state(self.iteration)
        if phase is not None:  # the phase and the epoch inside it of the next iteration
            state["phase"] = phase
        folder = self.run_dir / "checkpoints" / checkpoint_name(self.iteration)
        saved = save_checkpoint(folder, self.model.networks, self.engine.optimizers, state, self.engine.ema_tensors())
        prune_checkpoints(self.run_dir / "checkpoints", self.cfg.train.keep_last, self.cfg.train.keep_every)
        return saved

    def restore(self, folder: Path, state: dict) -> None:
        """Continue exactly from a checkpoint: weights, optimizers, iteration, sampler and every RNG. A state.json
        edited by hand (its own checksum is not recorded) whose fields have another shape is named as damaged."""
        try:
            self._restore(folder, state)
        except (KeyError, TypeError, ValueError, IndexError, AttributeError) as exc:
            raise CheckpointError(
                f"checkpoint {folder} has a damaged {STATE_FILE} ({type(exc).__name__}: {exc}); resume an older "
                f"checkpoint (gmdrit resume {folder.parent}/iter_N) or restore the folder from a copy"
            ) from None

    def _restore(self, folder: Path, state: dict) -> None:
        if state.get("family") != self.cfg.model.family:
            raise CheckpointError(
                f"checkpoint {folder} holds a '{state.get('family')}' model, not "
                f"'{self.cfg.model.family}'; use a matching preset or --fresh"
            )
        load_network_weights(folder, self.model.networks)
        load_optimizer_states(folder, self.engine.optimizers, state["optimizers"])
        if self.engine.ema is not None and not self.engine.load_ema_tensors(load_file(str(folder / MODEL_FILE))):
            log.warning("checkpoint %s has no EMA copy: the EMA starts from its weights", folder.name)
        saved_world = int(state.get("processes", 1))
        if saved_world != self.processes.world and self.processes.is_writer:
            log.warning(
                "checkpoint %s was written by %d process(es), this run has %d: the same batches are "
                "split differently, so the run continues equivalently but no longer bitwise "
                "reproducibly",
                folder.name,
                saved_world,
                self.processes.world,
            )
        self.dataset.load_state_dict(state["sampler"])
        set_rng_state(state["rng"], self.device)
        self.engine.load_state_dict(state)
        self.iteration = int(state["iteration"])
        recorded, here = state.get("phase"), self.engine.phase_state(self.iteration)
        if recorded is not None and recorded != here:
            raise CheckpointError(
                f"checkpoint {folder} is in phase {recorded['name']} epoch {recorded['epoch']} "
                f"({recorded['iterations_per_epoch']} iterations per epoch), but with this data "
                f"iteration {self.iteration} falls elsewhere ({here}); the data folders changed"
            )
        self.resumed_from = folder

    # -- signals --------------------------------------------------------------------------------

    def _on_signal(self, signum, frame) -> None:
        name = signal.Signals(signum).name
        if self._stop_signal is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # second Ctrl-C: stop at once; checkpoint writes are atomic
        self._stop_signal = name
        log.warning(
            "%s received: finishing this iteration, then saving a checkpoint (Ctrl-C again stops at once)", name
        )

    def _install_signal_handlers(self) -> dict:
        if threading.current_thread() is not threading.main_thread():
            return {}
        return {s: signal.signal(s, self._on_signal) for s in STOP_SIGNALS}

    # -- loop -----------------------------------------------------------------------------------

    def _finite_losses(self, losses: dict[str, torch.Tensor], n: int) -> dict[str, float]:
        """The global batch's losses as floats (the loop's only host sync); raises on a non-finite one,
        before any save, so no checkpoint ever holds a diverged model."""
        values = self.engine.mean_losses(losses)
        bad = [k for k, v in values.items() if not math.isfinite(v)]
        if bad:
            raise TrainingError(
                f"loss {', '.join(bad)} became non-finite at iteration {n}; "
                f"lower the learning rates or resume from the last checkpoint"
            )
        return values

    def take_lock(self) -> None:
        """Take the run folder's lock (rank 0), or raise before anything is said or written; :meth:`fit`
        takes it itself when it was not taken first."""
        if self._lock is not None:
            return
        lock = RunLock(self.run_dir) if self.processes.is_writer else None
        refused = None
        if lock is not None:
            try:
                lock.acquire()
            except CheckpointError as exc:
                refused = exc
        if self.processes.agree([refused is not None])[0]:  # every process stops when rank 0 cannot write
            raise refused or CheckpointError(
                f"process {self.processes.rank}: rank 0 could not take the run folder {self.run_dir} (see its message)"
            )
        self._lock = lock or False

    def release_lock(self) -> None:
        if self._lock:
            self._lock.release()
        self._lock = None

    def fit(self, on_progress: ProgressCallback | None = None) -> FitResult:
        """Train to ``train.max_iters`` (or a stop signal, or the time budget) holding the folder's lock."""
        self.take_lock()
        try:
            return self._train_loop(on_progress)
        finally:
            self.release_lock()

    def _train_loop(self, on_progress: ProgressCallback | None) -> FitResult:
        self.prepare_folder()
        times = _LoopTimes(self.time_budget)
        previous = self._install_signal_handlers()
        board = open_tensorboard(self.run_dir, self.cfg, self.iteration, rank=self.processes.rank)  # or a no-op
        self._pipeline = pipeline = self.open_pipeline()
        try:
            last, checkpoint, stopped = self._iterate(pipeline, board, times, on_progress)
        finally:
            self._pipeline = None
            pipeline.close()
            board.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return FitResult(self.run_dir, self.iteration, time.perf_counter() - times.start, last, checkpoint, stopped)

    def _iterate(
        self,
        pipeline: BatchPipeline,
        board: TensorBoardLog | NoTensorBoard,
        times: _LoopTimes,
        on_progress: ProgressCallback | None,
    ) -> tuple[dict[str, float], Path | None, str]:
        """Iterations up to the end, a stop signal or the time budget, logging, sampling and saving on schedule:
        (the last losses logged or saved, the last checkpoint written, why it stopped)."""
        t = self.cfg.train
        last: dict[str, float] = {}
        checkpoint = None
        end = self.end_iteration
        while self.iteration < end:
            tick = time.perf_counter()
            losses, span, epoch, factor = self._step(pipeline, end)
            n = self.iteration
            logged = None
            if n % t.log_every == 0 or n == end:  # unplanned saves do not add lines
                last = logged = self._log_iteration(losses, n, span, epoch, factor, times.start)
            sample = self.save_samples() if n % t.sample_every == 0 or n == end else None
            # the one TensorBoard hook of the loop (before the checkpoint: a resume never skips a step)
            board.record(n, logged, sample, self.engine.optimizers)
            times.iter_seconds = max(times.iter_seconds * 0.9, time.perf_counter() - tick)
            if t.check_replicas_every and n % t.check_replicas_every == 0:
                self.engine.check_replicas(n)
            stop_signal, save_due, over_budget = self._agree_on_stop(n, end, times)
            if n % t.save_every == 0 or n == end or stop_signal is not None or save_due or over_budget:
                if logged is None:
                    last = self._finite_losses(losses, n)
                checkpoint = self._timed_save(times)
            if on_progress is not None:
                on_progress(n, logged)
            if stop_signal is not None or over_budget:
                return last, checkpoint, stop_signal or "time budget"
        return last, checkpoint, "done"

    def _step(self, pipeline: BatchPipeline, end: int) -> tuple[dict[str, torch.Tensor], PhaseSpan | None, int, float]:
        """One training iteration (schedule, the planned batches, the family's step, buffers, EMA), counted:
        (its losses, its phase span or None, the epoch, the learning-rate factor)."""
        epoch, factor = self.engine.apply_schedule(self.iteration)
        span = self.engine.span_at(self.iteration)
        batches = pipeline.batches(self.iteration, end)
        with self.engine.sharded_step():
            losses = self.model.train_step(batches, self.iteration, self.engine)
        self.engine.sync_buffers()
        self.engine.update_ema()
        self.iteration += 1
        return losses, span, epoch, factor

    def _log_iteration(
        self, losses: dict[str, torch.Tensor], n: int, span: PhaseSpan | None, epoch: int, factor: float, start: float
    ) -> dict[str, float]:
        """The line of iteration ``n`` in ``metrics.jsonl`` (losses checked finite); the losses logged."""
        logged = self._finite_losses(losses, n)
        phase = {"phase": span.phase.name} if span is not None else {}
        self.log_metrics(
            {
                "iter": n,
                **phase,
                "epoch": epoch,
                "lr_factor": factor,
                "time": round(time.perf_counter() - start, 3),
                **logged,
            }
        )
        return logged

    def _agree_on_stop(self, n: int, end: int, times: _LoopTimes) -> tuple[str | None, bool, bool]:
        """What every process must decide alike, agreed once per iteration: a stop signal that any of them got,
        an unplanned save, and whether one more iteration and a checkpoint still fit in the time budget (with
        margin). (the agreed signal's name or None, save due, over budget)"""
        needed = 2 * times.iter_seconds + 2 * times.save_seconds + 5.0
        budget = times.budget
        signum, save_due, over_budget = self.processes.agree(
            [
                signal.Signals[self._stop_signal].value if self._stop_signal else 0,
                time.perf_counter() - times.last_save > 60 * self.cfg.train.save_minutes,
                budget is not None and n < end and time.perf_counter() - times.start + needed > budget,
            ]
        )
        # the agreed signal, not this process's flag: one arriving after the agreement waits a turn
        return (signal.Signals(signum).name if signum else None), save_due, over_budget

    def _timed_save(self, times: _LoopTimes) -> Path | None:
        """A checkpoint (:meth:`save`), its time kept in ``times`` for the budget's margin."""
        tick = time.perf_counter()
        checkpoint = self.save()
        times.last_save = time.perf_counter()
        times.save_seconds = max(times.save_seconds, times.last_save - tick)
        return checkpoint


@dataclass
class _LoopTimes:
    """The clocks of one training loop (time.perf_counter seconds)."""

    budget: float | None  # train.time_budget of this invocation, or None
    start: float = field(default_factory=time.perf_counter)
    last_save: float = 0.0  # the loop's start until the first checkpoint
    iter_seconds: float = 0.0  # a decaying maximum of one iteration's time
    save_seconds: float = 0.0  # the longest checkpoint save

    def __post_init__(self) -> None:
        self.last_save = self.start


def stored_config(cfg: Config) -> Config:
    """``cfg`` as a run folder stores it: without the time budget, which belongs to one invocation (a later
    `resume` gets its own --time-budget or none)."""
    return replace(cfg, train=replace(cfg.train, time_budget=""))


def _unused_folder(run_dir: Path) -> Path:
    """``run_dir`` if it holds no run yet, else the first free ``run_dir-2``, ``run_dir-3``, ..."""
    if not run_dir.exists() or not any(run_dir.iterdir()):
        return run_dir
    base = run_dir if run_dir.name not in ("", ".", "..") else Path(os.path.abspath(run_dir))  # '.': its name
    if not base.name:
        raise CheckpointError(
            f"--run-dir {run_dir} is taken and has no name to number a new folder after; give "
            f"a new folder, e.g. --run-dir runs/NAME"
        )
    i = 2
    while (candidate := base.with_name(f"{base.name}-{i}")).exists():
        i += 1
    return candidate


#: the files a run writes at the top of its folder (prepare_folder, log_metrics)
RUN_FILES = ("config.yaml", "metrics.jsonl", "splits.json", "speed.json", "init.json", "sampling.json", "tensorboard")


def _refuse_foreign_files(
    run_dir: Path, named: str = "--run-dir", todo: str = "choose another --run-dir (a new or empty folder)"
) -> None:
    """A new run may go into a folder that holds other things, but never replaces a file it did not make: a
    folder that is not a gmdrit run (gmdrit makes checkpoints/ and samples/ before writing any file) and
    holds a file of a run's name (e.g. ``--run-dir .`` in a project with its own config.yaml) is refused."""
    if not run_dir.is_dir() or _is_gmdrit_run(run_dir):
        return
    clash = [name for name in RUN_FILES if (run_dir / name).exists() or (run_dir / name).is_symlink()]
    samples = run_dir / "samples"
    if samples.is_symlink() or samples.exists() and (not samples.is_dir() or any(samples.iterdir())):
        clash.append("samples/")  # the run writes its grids there, and sets aside what it finds of a later iteration
    if clash:
        raise CheckpointError(
            f"{named} {run_dir} is not a gmdrit run folder and holds {', '.join(clash)}, which "
            f"a run would replace; {todo}"
        )


def _is_gmdrit_run(run_dir: Path) -> bool:
    """A run folder gmdrit made: checkpoints/ and samples/ (made first) and a config.yaml of a gmdrit model
    family (written next). Folders of those names alone do not tell: another project keeps its own
    checkpoints/, samples/ and config.yaml, which a run would replace. (A run stopped before its config.yaml
    holds none of a run's files, which the caller lets through.)"""
    folders = (run_dir / "checkpoints").is_dir() and (run_dir / "samples").is_dir()
    return folders and (run_dir / "config.yaml").is_file() and _gmdrit_config_file(run_dir / "config.yaml")


def _gmdrit_config_file(path: Path) -> bool:
    """Whether ``path`` is a readable YAML config naming a gmdrit model family (``model.family``)."""
    import yaml

    from ..config.schema import read_config_text, read_yaml_text
    from ..errors import GmdritError
    from ..families import family_names

    try:
        data = read_yaml_text(read_config_text(path), f"config file {path}")
    except (GmdritError, yaml.YAMLError, OSError):
        return False
    model = data.get("model") if isinstance(data, dict) else None
    return isinstance(model, dict) and model.get("family") in family_names()


def config_differences(old: Config, new: Config) -> list[str]:
    a, b = _flatten(config_to_dict(old)), _flatten(config_to_dict(new))
    return sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k))


_KEPT_ASIDE = re.compile(r"after-iter_\d+(-\d+)?")


def _refuse_kept_aside(path: Path, option: str) -> None:
    """Refuse ``path`` inside a run's ``after-iter_N/`` folder: it holds what a resume from an earlier
    checkpoint kept aside, and a run there would prune those checkpoints and mix its grids with them."""
    for folder in (path, *path.parents):
        if _KEPT_ASIDE.fullmatch(folder.name) and (folder.parent / "checkpoints").is_dir():
            raise CheckpointError(
                f"{option} {path} is inside {folder}, the checkpoints and sample grids kept aside when "
                f"{folder.parent} was resumed from an earlier one; gmdrit does not write there: resume a copy "
                f"made elsewhere, or the run {folder.parent} itself"
            )


def open_run(cfg: Config, run_dir: Path, *, fresh: bool = False) -> Run:
    """A run of ``cfg`` in ``run_dir``: continued from its checkpoint if it has one, else new.

    ``fresh`` never touches an existing run: it picks ``run_dir-2`` (-3, ...) when ``run_dir`` is taken.
    """
    run_dir = _unused_folder(Path(run_dir)) if fresh else Path(run_dir)
    if run_dir.exists() and not run_dir.is_dir():
        raise CheckpointError(f"--run-dir {run_dir} is a file, not a folder; choose another --run-dir")
    refuse_checkpoint_area(run_dir, "--run-dir")
    _refuse_kept_aside(run_dir.absolute(), "--run-dir")
    found = find_checkpoint(run_dir) if (run_dir / "checkpoints").is_dir() else None
    if found is None:
        _refuse_foreign_files(run_dir)
        run = Run(cfg, run_dir)
        if cfg.train.init_from:
            run.initialise_from(cfg.train.init_from)
        return run
    folder, state = found
    if state.get("family") != cfg.model.family:
        raise CheckpointError(
            f"run folder {run_dir} holds a '{state.get('family')}' run, not "
            f"'{cfg.model.family}'; use --fresh or another --run-dir"
        )
    saved = build_config(state["config"])
    changed = [k for k in config_differences(saved, cfg) if k not in RESUMABLE_KEYS]
    if changed:
        raise CheckpointError(
            f"run folder {run_dir} holds a run with a different config ({', '.join(changed)}); "
            f"use --fresh for a new run, or `gmdrit resume {run_dir}` to continue it"
        )
    return _restored_run(cfg, run_dir, folder, state)


def _restored_run(cfg: Config, run_dir: Path, folder: Path, state: dict) -> Run:
    """The run of ``run_dir`` continued from the checkpoint ``folder``. The checkpoint was read before the run's
    lock is taken: when it cannot be restored while another process writes the run (which may have pruned it
    meanwhile), that writer is named instead of the missing file."""
    run = Run(cfg, run_dir)
    try:
        run.restore(folder, state)
    except CheckpointError:
        refuse_if_busy(run.run_dir)
        raise
    return run


def resume_run(path: Path, overrides: list[str] | None = None) -> Run:
    """Continue the run of a run folder or checkpoint folder, changing only resumable keys."""
    path = Path(path)
    if not path.exists():
        raise CheckpointError(f"{path} does not exist; give a run folder or a checkpoint folder")
    path = run_of_latest(path) or path  # RUN/checkpoints/latest names the run's newest checkpoint: resume the run
    if path.is_file() and (path.parent / STATE_FILE).is_file():
        path = path.parent  # a file of a checkpoint folder (its model.safetensors): that checkpoint
    elif path.is_dir() and path.name == "checkpoints" and list_checkpoints(path):
        path = path.parent  # RUN/checkpoints: the run (was "has no checkpoint to resume", though it holds them)
    _refuse_kept_aside(path.absolute(), "resume")
    found = find_checkpoint(path)
    if found is None:
        what = "is a file, not a run folder or a checkpoint folder" if path.is_file() else "has no checkpoint to resume"
        raise CheckpointError(
            f"{path} {what}; give a run folder or a checkpoint folder, or start a run with `gmdrit train`"
        )
    folder, state = found
    run_dir = _run_folder_of_checkpoint(path, folder)
    values, errors = parse_overrides(overrides or [])
    refused = [k for k in values if k not in RESUMABLE_KEYS]
    if refused:
        errors.append(
            f"cannot change {', '.join(refused)} when resuming: only "
            f"{', '.join(sorted(k for k in RESUMABLE_KEYS if k.startswith('train.')))} may change "
            f"mid-run (others change the model or its data); start a new run with `gmdrit train --fresh`"
        )
    if errors:
        raise ConfigError("; ".join(errors))
    # a budget stored by an older version is dropped: only this invocation's --time-budget applies
    cfg = build_config({**_flatten(state["config"]), "train.time_budget": "", **values})
    _warn_edited_config(run_dir / "config.yaml", cfg, given=set(values))
    return _restored_run(cfg, run_dir, folder, state)


def _warn_edited_config(path: Path, cfg: Config, given: set[str] = frozenset()) -> None:
    """A resumed run continues its checkpoint's config and rewrites ``RUN/config.yaml`` with it: a hand edit of
    that file is named before it is replaced, not dropped silently; an edit of a key resume takes with --set (not
    ``given`` one) says how to apply it."""
    from ..config.schema import load_config_file
    from ..errors import GmdritError

    try:
        edited = load_config_file(path) if path.is_file() else None
    except (GmdritError, OSError):  # damaged: the run's own file, rewritten from the checkpoint
        return
    differences = [] if edited is None else config_differences(edited, cfg)
    settable = [k for k in differences if k in RESUMABLE_KEYS and k not in given and k != "train.time_budget"]
    if settable:
        sets = " ".join(f"--set {k}={_config_value(edited, k)}" for k in settable)
        log.warning(
            "%s was edited (%s): resume takes these from the command line, not from the file; to apply them: "
            "gmdrit resume %s %s",
            path,
            ", ".join(settable),
            path.parent,
            sets,
        )
    changed = [k for k in differences if k not in RESUMABLE_KEYS]
    if changed:
        log.warning(
            "%s was edited (%s): resume continues the checkpoint's config and rewrites the file; for a run with "
            "the edited config, start one: gmdrit train -p %s --run-dir NEW_FOLDER",
            path,
            ", ".join(changed),
            path,
        )


def _config_value(cfg: Config, key: str) -> str:
    """The value of a dotted key (``train.max_iters``) of ``cfg``, as --set takes it."""
    value = cfg
    for part in key.split("."):
        value = getattr(value, part)
    return str(value).lower() if isinstance(value, bool) else str(value)


def _run_folder_of_checkpoint(path: Path, folder: Path) -> Path:
    """The run folder that resuming ``folder`` (found from the ``path`` given) writes: the folder above its
    ``checkpoints/``. A checkpoint folder that lies elsewhere (copied out of its run, downloaded) has no run
    folder: the folder above it is the user's, and a run would write its config.yaml, metrics.jsonl,
    checkpoints/ and samples/ there, so it is refused."""
    if folder.parent.name != "checkpoints":
        raise CheckpointError(
            f"{path} is a checkpoint folder outside a run's checkpoints/ folder, so there is no run to continue "
            f"(resuming would write a run into {folder.parent.parent}); resume the run folder it came from, or "
            f"start a new run from its weights: gmdrit train --set train.init_from={folder}"
        )
    run_dir = folder.parent.parent
    if (folder.parent / LATEST).is_file():  # the pointer only save_checkpoint writes: a run's own checkpoints
        return run_dir
    _refuse_foreign_files(
        run_dir,
        "the folder",
        f"start a new run from the checkpoint's weights: gmdrit train --set train.init_from={folder}",
    )
    return run_dir


def train(cfg: Config, run_dir: Path, on_progress: ProgressCallback | None = None) -> FitResult:
    """Train ``cfg`` into ``run_dir``, continuing its checkpoint if it has one."""
    return open_run(cfg, run_dir).fit(on_progress)
