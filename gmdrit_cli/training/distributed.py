"""Training with several processes: PyTorch's process group, set up from the environment ``torchrun``
gives each process, and the few collectives the trainer and the engine use.

``torchrun`` (``torch.distributed.run``) starts the processes and does the rendezvous; this module only
reads ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK`` and joins the group (``env://``): NCCL on GPUs, gloo on
CPUs. Without those variables a run is one process and nothing here communicates.

Every collective waits at most ``train.dist_timeout`` seconds; a process that died or stalled makes
the others fail that collective, which becomes a one-line :class:`LostProcessError` instead of a hang.
Small control messages (stop flags, checksums) go through a gloo group on the CPU, so on GPUs they
cost no device synchronisation.
"""

from __future__ import annotations

import atexit
import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import torch

from ..errors import TrainingError
from .speed import resolve_device

#: gradients are all-reduced in flat buckets of at most this many bytes (DDP's default size)
BUCKET_BYTES = 25 * 2**20


class LostProcessError(TrainingError):
    """A collective failed: another process of the run died, was killed or stopped answering."""


class ProcessSetupError(TrainingError):
    """This process cannot take its place in the group; printed by every process it happens to."""

    per_process = True


@dataclass
class Processes:
    """This process's place in a run: ``rank`` of ``world`` processes (1 when not under torchrun)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    timeout_s: float = 0.0
    backend: str = ""
    control: Any = field(default=None, repr=False)  # the gloo group of the CPU control messages

    @property
    def is_writer(self) -> bool:
        """Only this process writes the run folder (rank 0)."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    # -- collectives ----------------------------------------------------------------------------

    @contextlib.contextmanager
    def _collective(self, what: str):
        try:
            yield
        except RuntimeError as exc:  # gloo and NCCL report a lost peer or a timeout as RuntimeError
            first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]
            raise LostProcessError(
                f"process {self.rank} of {self.world}: {what} failed, another process died or did not answer "
                f"within {self.timeout_s:g} s (train.dist_timeout) [{first}]; every process stops: resume "
                f"from the last checkpoint with the same command"
            ) from None

    def agree(self, flags: Sequence[int]) -> list[int]:
        """The maximum over every process of each integer of ``flags`` (e.g. "a stop signal arrived").
        One process: ``flags`` itself."""
        if not self.distributed:
            return list(flags)
        import torch.distributed as dist

        t = torch.tensor(list(flags), dtype=torch.int64)
        with self._collective("agreeing on the next step"):
            dist.all_reduce(t, op=dist.ReduceOp.MAX, group=self.control)
        return t.tolist()

    def start_average(self, tensors: list[torch.Tensor | None]) -> PendingAverage:
        """Start averaging ``tensors`` (None entries skipped) over every process, in flat buckets of at
        most :data:`BUCKET_BYTES`, without waiting; :meth:`PendingAverage.wait` gives the averages."""
        import torch.distributed as dist

        pending = PendingAverage(self, list(tensors))
        bucket: list[int] = []
        size = 0
        for i, t in enumerate(tensors):
            if t is None:
                continue
            first = tensors[bucket[0]] if bucket else None
            if bucket and (
                size + t.numel() * t.element_size() > BUCKET_BYTES or t.dtype != first.dtype or t.device != first.device
            ):
                pending.launch(bucket, dist)
                bucket, size = [], 0
            bucket.append(i)
            size += t.numel() * t.element_size()
        if bucket:
            pending.launch(bucket, dist)
        return pending

    def average(self, tensors: list[torch.Tensor | None]) -> list[torch.Tensor | None]:
        """``tensors`` averaged over every process (one process: unchanged)."""
        if not self.distributed:
            return tensors
        return self.start_average(tensors).wait()

    def check_identical(self, named: dict[str, torch.Tensor], iteration: int) -> None:
        """Raise :class:`TrainingError` naming the first tensor whose checksum differs between processes.

        The checksum of a tensor is its sum, its sum of absolute values and a position-weighted sum, in
        float64: cheap, and any real divergence of replicas changes one of them."""
        if not self.distributed:
            return
        import torch.distributed as dist

        names = sorted(named)
        sums = []
        for name in names:
            flat = named[name].detach().reshape(-1).double()
            weights = torch.arange(flat.numel(), device=flat.device, dtype=torch.float64).remainder_(97).add_(1)
            sums.append(torch.stack([flat.sum(), flat.abs().sum(), (flat * weights).sum()]))
        high = torch.stack(sums).cpu() if sums else torch.zeros(0, 3, dtype=torch.float64)
        low = high.clone()
        with self._collective("comparing the replicas"):
            dist.all_reduce(high, op=dist.ReduceOp.MAX, group=self.control)
            dist.all_reduce(low, op=dist.ReduceOp.MIN, group=self.control)
        differ = [n for n, h, lo in zip(names, high, low) if not torch.equal(h, lo)]
        if differ:
            raise TrainingError(
                f"the processes' copies of the model differ at iteration {iteration} (first: "
                f"{differ[0]}, {len(differ)} tensors in all); this is a bug: please report it"
            )


class PendingAverage:
    """All-reduces in flight over buckets of a list of tensors; :meth:`wait` returns the averaged list."""

    def __init__(self, processes: Processes, tensors: list[torch.Tensor | None]):
        self.processes = processes
        self.tensors = tensors
        self.buckets: list[tuple[list[int], torch.Tensor, Any]] = []

    def launch(self, indices: list[int], dist) -> None:
        flat = torch.cat([self.tensors[i].reshape(-1) for i in indices])
        with self.processes._collective("averaging gradients"):
            work = dist.all_reduce(flat, op=dist.ReduceOp.SUM, async_op=True)
        self.buckets.append((indices, flat, work))

    def wait(self) -> list[torch.Tensor | None]:
        out = list(self.tensors)
        with self.processes._collective("averaging gradients"):
            for indices, flat, work in self.buckets:
                work.wait()
                flat.div_(self.processes.world)
                offset = 0
                for i in indices:
                    n = out[i].numel()
                    out[i] = flat[offset : offset + n].view(out[i].shape)
                    offset += n
        return out


def _destroy() -> None:
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        with contextlib.suppress(Exception):
            dist.destroy_process_group()


def launched_by_torchrun() -> bool:
    """True when the environment names this process's rank in a group (torchrun, or the same variables)."""
    return "RANK" in os.environ and "WORLD_SIZE" in os.environ


def env_int(name: str, default: int | None = None) -> int:
    """The whole number >= 0 in the environment variable ``name`` (torchrun's RANK, WORLD_SIZE, ...), ``default``
    when unset; anything else is a one-line :class:`TrainingError` (a job script may use the name for other
    things)."""
    text = os.environ.get(name)
    if text is None and default is not None:
        return default
    try:
        value = int(str(text).strip())
    except ValueError:
        value = -1
    if value < 0:
        raise TrainingError(
            f"environment variable {name}={text!r} is not a whole number >= 0: torchrun sets it for a run on "
            f"several processes; unset it (or set it as torchrun does) to train"
        )
    return value


def join(device_name: str, timeout_s: float) -> tuple[Processes, torch.device]:
    """This process's :class:`Processes` and training device; joins the process group under torchrun.

    Under torchrun a CUDA run uses ``cuda:LOCAL_RANK`` (one GPU per process) with NCCL, a CPU run gloo.
    """
    if not launched_by_torchrun():
        return Processes(), resolve_device(device_name)
    import torch.distributed as dist

    rank, world = env_int("RANK"), env_int("WORLD_SIZE")
    local_rank = env_int("LOCAL_RANK", 0)
    device = resolve_device(device_name)
    if device.type == "cuda":
        if local_rank >= torch.cuda.device_count():
            raise ProcessSetupError(
                f"process {rank} has local rank {local_rank} but this machine shows "
                f"{torch.cuda.device_count()} GPUs; start at most one process per GPU"
            )
        device = torch.device("cuda", local_rank)
        torch.cuda.set_device(device)
    backend = "nccl" if device.type == "cuda" else "gloo"
    timeout = timedelta(seconds=timeout_s)
    if not dist.is_initialized():
        try:
            dist.init_process_group(backend, timeout=timeout)
        except (RuntimeError, ValueError) as exc:
            first = (str(exc).strip().splitlines() or [""])[0][:200]
            raise ProcessSetupError(
                f"process {rank} of {world} could not join the process group ({backend}): {first}"
            ) from None
        atexit.register(_destroy)
    control = dist.new_group(backend="gloo", timeout=timeout) if backend != "gloo" else None
    return Processes(rank, world, local_rank, timeout_s, backend, control), device
