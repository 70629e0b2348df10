"""TensorBoard event files of a training run, in ``RUN/tensorboard/``.

The trainer opens one :class:`TensorBoardLog` per ``fit`` (:func:`open_tensorboard`) and calls
:meth:`TensorBoardLog.record` once per iteration; nothing else of the training loop knows about TensorBoard.
What is written:

* ``<group>/<loss>``: every loss term of every logged iteration (the steps of ``metrics.jsonl``), grouped
  as the report groups them (``run_metrics.loss_group``), e.g. ``discriminators/dis_encoded``;
* ``schedule/gumbel_temperature`` (GM-DRIT's Gumbel-softmax temperature, when the step reports it) and
  ``learning_rate/<optimizer>`` (one per optimizer, ``/<k>`` for a parameter group k > 0 whose rate differs);
* ``samples``: every sample grid the run saves, at its iteration;
* ``config``: the resolved config as text, at the first iteration of each session.

A resumed run writes a new event file into the same folder with ``purge_step`` = its first new iteration,
so TensorBoard drops what the stopped session logged past the checkpoint and the curves continue without
duplicate steps. A multi-process run must open it on rank 0 only (the others get :class:`NoTensorBoard`).
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from ..config.schema import dump_config
from ..reporting.run_metrics import loss_group

if TYPE_CHECKING:
    import torch

    from ..config.schema import Config

log = logging.getLogger("gmdrit")

#: the folder inside a run folder
TENSORBOARD_FOLDER = "tensorboard"


class NoTensorBoard:
    """What the trainer gets when TensorBoard logging is off (config, package missing, rank > 0)."""

    def record(
        self,
        iteration: int,
        logged: dict[str, float] | None,
        sample: Path | None,
        optimizers: dict[str, torch.optim.Optimizer],
    ) -> None:
        pass

    def close(self) -> None:
        pass


def learning_rates(optimizers: dict[str, torch.optim.Optimizer]) -> dict[str, float]:
    """``{optimizer name: lr}`` of its first parameter group, plus ``name/k`` for a later group k whose
    rate differs from the first (a parameter group with an ``lr_mult``)."""
    out = {}
    for name, opt in optimizers.items():
        first = opt.param_groups[0]["lr"]
        out[name] = float(first)
        for k, group in enumerate(opt.param_groups[1:], start=1):
            if group["lr"] != first:
                out[f"{name}/{k}"] = float(group["lr"])
    return out


def scalar_tag(key: str) -> str:
    """The TensorBoard tag of a logged loss key."""
    if key == "gumbel_tau":
        return "schedule/gumbel_temperature"
    return f"{loss_group(key)}/{key}"


class TensorBoardLog:
    """One session's event file in ``RUN/tensorboard/``, starting after iteration ``start_iteration``."""

    def __init__(self, run_dir: Path, cfg: Config, start_iteration: int):
        from torch.utils.tensorboard import SummaryWriter

        self.folder = Path(run_dir) / TENSORBOARD_FOLDER
        _check_writable(self.folder)
        # the event file is written by TensorBoard's own thread, whose OSError (a full disk) would print a thread
        # traceback; the writer raises it again in this thread at the next record, where it is one line
        self._hook = threading.excepthook
        threading.excepthook = self._quiet_os_errors
        # purge_step: a START marker at the first iteration of this session; TensorBoard discards every
        # older event at that step or later (logged by a session that stopped after its last checkpoint)
        self.writer = SummaryWriter(str(self.folder), purge_step=start_iteration + 1, flush_secs=30)
        yaml_text = "\n".join("    " + line for line in dump_config(cfg).splitlines())  # markdown code block
        self.writer.add_text("config", yaml_text, start_iteration + 1)

    def record(
        self,
        iteration: int,
        logged: dict[str, float] | None,
        sample: Path | None,
        optimizers: dict[str, torch.optim.Optimizer],
    ) -> None:
        """After ``iteration``: its losses when it was logged (``logged``), the learning rates with them,
        and the sample grid PNG when one was saved (``sample``)."""
        if logged:
            for key, value in logged.items():
                self.writer.add_scalar(scalar_tag(key), value, iteration)
            for name, lr in learning_rates(optimizers).items():
                self.writer.add_scalar(f"learning_rate/{name}", lr, iteration)
        if sample is not None:
            with Image.open(sample) as im:
                grid = np.asarray(im.convert("RGB"))  # H x W x 3 uint8
            self.writer.add_image("samples", grid, iteration, dataformats="HWC")
        if logged or sample is not None:
            self.writer.flush()  # a killed run loses nothing it logged (flushing is cheap next to an iteration)

    def _quiet_os_errors(self, args) -> None:
        if not (isinstance(args.exc_value, OSError) and args.thread is not threading.main_thread()):
            self._hook(args)

    def close(self) -> None:
        try:
            self.writer.close()
        finally:
            threading.excepthook = self._hook


def _check_writable(folder: Path) -> None:
    """Refuse, in one line, a TensorBoard folder where no event file can be made (read-only, a full disk, a link to
    a place nothing can be written), before TensorBoard's thread tries."""
    from ..errors import TrainingError
    from ..outputs import os_error_line

    try:
        folder.mkdir(parents=True, exist_ok=True)
        probe = folder / f".gmdrit-probe-{os.getpid()}"
        os.close(os.open(probe, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666))
        probe.unlink()
    except OSError as exc:
        raise TrainingError(
            os_error_line(
                exc,
                f"cannot write TensorBoard events into {folder}",
                "make it writable, or train without them: --set train.tensorboard=false",
            )
        ) from None


def tensorboard_available() -> bool:
    try:
        import tensorboard  # noqa: F401
    except ImportError:
        return False
    return True


def open_tensorboard(run_dir: Path, cfg: Config, start_iteration: int, rank: int = 0) -> TensorBoardLog | NoTensorBoard:
    """The run's TensorBoard log, or a no-op when ``train.tensorboard`` is off, the ``tensorboard`` package
    is missing (said once in the log), or this process is not rank 0."""
    if not cfg.train.tensorboard or rank != 0:
        return NoTensorBoard()
    if not tensorboard_available():
        log.info("tensorboard is not installed: no event files (pip install tensorboard)")
        return NoTensorBoard()
    return TensorBoardLog(run_dir, cfg, start_iteration)
