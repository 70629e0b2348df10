"""The input pipeline: the next iterations' batches loaded in the background, in the order the loop takes them.

Loading a batch inline (decode, resize, crop, flip, to tensor) keeps a GPU waiting at every step. Here a batch
is *planned* on the calling thread, every random draw (images, crops, flips) from the dataset's sampler RNG in
exactly the order inline loading draws them, and *loaded* on a worker thread (Pillow releases the GIL while it
decodes and resizes). So the batches, their order and the sampler RNG stream are those of inline loading; with
several processes each plans the whole global batch and loads its own rows, as before
(:mod:`gmdrit_cli.training.shard`).

Planning ahead moves the sampler past the batches the loop has taken: :meth:`BatchPipeline.sampler_state` is
the dataset's state as of the batches *taken* (what a checkpoint holds, so a resumed run plans the same next
batch), and :meth:`BatchPipeline.close` steps the dataset back to it.

A plan holds while every file decodes. A paired batch or an epoch batch skips a file that no longer decodes
without drawing its crop, so every later draw shifts: a load that meets one returns None, and the pipeline
drops its later plans, steps the dataset back to just before that batch, loads it inline (as before, skipping
the file) and plans on from there. MDMM's sampler replaces such a file without a draw, so its plans hold.

A dataset offers, per kind of batch ``K`` (``sample``, ``epoch_batch``): ``K(*args)`` (inline), ``plan_K(*args)``
(draws), ``load_K(plan)`` (draws nothing; a Batch, or None when the plan no longer holds), and
``plan_state()`` / ``set_plan_state(state)`` (what planning changes).
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from typing import Any

from .unpaired import Batch

#: the most loader threads ``speed.loader_threads: 0`` picks (decoding a batch of 256-px JPEGs takes a few ms)
MAX_AUTO_THREADS = 4


@dataclass(frozen=True)
class Draw:
    """One batch the loop takes: ``dataset.<kind>(*args)``, e.g. ``Draw("sample", (batch_size,))``."""

    kind: str
    args: tuple


@dataclass
class _Planned:
    iteration: int
    draw: Draw
    before: Any  # the dataset's plan_state() before this batch was planned
    future: Future


def auto_threads(processes_here: int = 1) -> int:
    """Loader threads for one of ``processes_here`` training processes on this machine: its share of the CPU
    cores this process may run on (2 on Colab), at least 1, at most :data:`MAX_AUTO_THREADS`."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        cores = os.cpu_count() or 1
    return max(1, min(MAX_AUTO_THREADS, cores // max(1, processes_here)))


def _pinned(batch: Batch | None) -> Batch | None:
    """``batch`` in page-locked memory, so that its copy to the GPU can overlap the step (Engine.to_device)."""
    if batch is None:
        return None
    targets = None if batch.targets is None else batch.targets.pin_memory()
    return Batch(batch.images.pin_memory(), batch.domains, targets)


class BatchPipeline:
    """The batches of each iteration from ``dataset``, ``draws(iteration)`` saying which; with ``prefetch`` > 0
    up to that many iterations are planned ahead and loaded by ``threads`` worker threads. ``pin``: hand out
    batches in pinned memory (CUDA training)."""

    def __init__(
        self, dataset, draws: Callable[[int], list[Draw]], *, prefetch: int = 0, threads: int = 1, pin: bool = False
    ):
        self.dataset = dataset
        self.draws = draws
        self.prefetch = max(0, int(prefetch))
        self.threads = max(1, int(threads)) if self.prefetch else 0
        self.pin = pin
        self._pool = ThreadPoolExecutor(self.threads, thread_name_prefix="gmdrit-loader") if self.prefetch else None
        self._queue: deque[_Planned] = deque()
        self._next_plan = 0  # the iteration planned next

    # -- the loop's side ------------------------------------------------------------------------

    def batches(self, iteration: int, end: int) -> list[Batch]:
        """The batches of ``iteration`` (each one exactly what inline loading gives); then plans ahead up to
        ``prefetch`` iterations, never to ``end`` or past it."""
        draws = self.draws(iteration)
        if self._pool is None:
            return [self._inline(d) for d in draws]
        if not self._queue or self._queue[0].iteration != iteration:
            self._drop()  # nothing planned for it (the first call), or the loop jumped: plan from here
            self._next_plan = iteration
        self._plan_until(min(end, iteration + 1))
        out: list[Batch] = []
        for k in range(len(draws)):
            item = self._queue.popleft()
            batch = item.future.result()  # a load's error is raised here, at the iteration inline loading raises it
            if batch is None:  # a file did not decode: this plan and every later one no longer hold
                self._queue.appendleft(item)
                self._drop()
                out.extend(self._inline(d) for d in draws[k:])
                self._next_plan = iteration + 1
                break
            out.append(batch)
        self._plan_until(min(end, iteration + 1 + self.prefetch))
        return out

    def sampler_state(self) -> dict:
        """``dataset.state_dict()`` as of the batches taken so far, not those planned ahead."""
        if self._queue:
            wait([item.future for item in self._queue])  # no load runs while the state is read
        if not self._queue:
            return self.dataset.state_dict()
        ahead = self.dataset.plan_state()
        self.dataset.set_plan_state(self._queue[0].before)
        try:
            return self.dataset.state_dict()
        finally:
            self.dataset.set_plan_state(ahead)

    def close(self) -> None:
        """Stop the workers and step the dataset back to the batches taken (as if loaded inline)."""
        self._drop()
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None

    def __enter__(self) -> BatchPipeline:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- planning ---------------------------------------------------------------------------------

    def _inline(self, draw: Draw) -> Batch:
        batch = getattr(self.dataset, draw.kind)(*draw.args)
        return _pinned(batch) if self.pin else batch

    def _load(self, kind: str, plan) -> Batch | None:
        batch = getattr(self.dataset, f"load_{kind}")(plan)
        return _pinned(batch) if self.pin else batch

    def _plan_until(self, stop: int) -> None:
        """Plan every batch of the iterations before ``stop`` not planned yet, and start loading them."""
        while self._next_plan < stop:
            for draw in self.draws(self._next_plan):
                before = self.dataset.plan_state()
                plan = getattr(self.dataset, f"plan_{draw.kind}")(*draw.args)
                future = self._pool.submit(self._load, draw.kind, plan)
                self._queue.append(_Planned(self._next_plan, draw, before, future))
            self._next_plan += 1

    def _drop(self) -> None:
        """Forget every planned batch and step the dataset back to before the first of them."""
        if not self._queue:
            return
        for item in self._queue:
            item.future.cancel()
        wait([item.future for item in self._queue])  # a running load finishes before the state moves
        self.dataset.set_plan_state(self._queue[0].before)
        self._queue.clear()
