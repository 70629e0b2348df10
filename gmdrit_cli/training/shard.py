"""A global batch split across processes, and random draws that do not depend on how it is split.

A training batch of B images is two halves of h = B / 2 rows (A = the first h, B = the last h), and every
batch-shaped tensor of a training step is a stack of such h-row blocks (the generator's 6h inputs, the
content code of 2h rows, one h-row draw shared by both halves). With W processes, process ``rank``
holds rows ``rank * h/W ... (rank + 1) * h/W - 1`` of *every* block, so the pairs the families cross
(row i of half A with row i of half B) stay the pairs of the global batch.

While a training step runs under :func:`batch_shard`, the draws of this module (used by the networks and
the families for every training-time random tensor) draw the *global* tensor, blocks x W x h/W rows, from
the global RNG and keep this process's rows. Every process then consumes the same RNG stream as one
process with the whole batch, its noise is that process's noise for the same rows, and the RNG states of
all processes stay equal (so rank 0's checkpoint holds every process's state). Outside a training step,
or with one process, the draws are plain ``torch`` draws.

Sums over the batch (the adversarial loss, the KL terms) become partial sums on one process;
:func:`batch_sum_scale` is the factor (W) that makes the mean over processes of the partial losses the
loss of the global batch, as the gradient all-reduce averages.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Shard:
    """Process ``rank`` of ``world`` holds ``half_rows`` rows of every h-row block of the global batch."""

    rank: int
    world: int
    half_rows: int

    def rows(self, n_global: int) -> list[int]:
        """The global row indices this process holds of a tensor of ``n_global`` rows (whole blocks)."""
        block = self.world * self.half_rows
        if n_global % block:
            raise ValueError(f"{n_global} rows are not whole blocks of {block} rows")
        return [
            b * block + self.rank * self.half_rows + j for b in range(n_global // block) for j in range(self.half_rows)
        ]


def split_batch(batch_size: int, rank: int, world: int) -> Shard:
    """The shard of process ``rank`` of a global batch of ``batch_size`` rows (two halves)."""
    if batch_size % (2 * world):
        raise ValueError(f"a batch of {batch_size} cannot be split into two halves over {world} processes")
    return Shard(rank, world, batch_size // (2 * world))


_current: Shard | None = None


@contextlib.contextmanager
def batch_shard(shard: Shard | None):
    """Draws and batch sums inside the block follow ``shard`` (None or one process: plain draws)."""
    global _current
    saved, _current = _current, (shard if shard is not None and shard.world > 1 else None)
    try:
        yield
    finally:
        _current = saved


def batch_sum_scale() -> int:
    """W inside a step of a batch split over W processes, else 1 (see the module docstring)."""
    return _current.world if _current is not None else 1


def _global_draw(shape, draw):
    """``draw(global_shape)`` reshaped to (blocks, W, local rows, ...) and this process's rows kept."""
    s = _current
    rows = shape[0]
    if rows % s.half_rows:
        raise ValueError(
            f"a random tensor of {rows} rows inside a step whose local half-batch has "
            f"{s.half_rows} rows: batch-shaped draws must be whole blocks"
        )
    rest = tuple(shape[1:])
    whole = draw((rows * s.world, *rest))
    return whole.view(rows // s.half_rows, s.world, s.half_rows, *rest)[:, s.rank].reshape(rows, *rest)


def randn(shape, *, device=None, dtype=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """``torch.randn(shape)``; inside a sharded step, this process's rows of the global draw."""
    if _current is None:
        return torch.randn(shape, device=device, dtype=dtype, generator=generator)
    return _global_draw(shape, lambda s: torch.randn(s, device=device, dtype=dtype, generator=generator))


def rand(shape, *, device=None, dtype=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """``torch.rand(shape)``; inside a sharded step, this process's rows of the global draw."""
    if _current is None:
        return torch.rand(shape, device=device, dtype=dtype, generator=generator)
    return _global_draw(shape, lambda s: torch.rand(s, device=device, dtype=dtype, generator=generator))


def randint(high: int, shape, *, device=None, generator: torch.Generator | None = None) -> torch.Tensor:
    """``torch.randint(high, shape)``; inside a sharded step, this process's rows of the global draw."""
    if _current is None:
        return torch.randint(high, shape, device=device, generator=generator)
    return _global_draw(shape, lambda s: torch.randint(high, s, device=device, generator=generator))


def randn_like(x: torch.Tensor) -> torch.Tensor:
    """``torch.randn_like(x)`` (x's memory layout kept); inside a sharded step, this process's rows of the
    global draw, filled in the same memory order as one process filling the whole tensor."""
    if _current is None:
        return torch.randn_like(x)
    layout = (
        torch.channels_last
        if x.dim() == 4 and not x.is_contiguous() and x.is_contiguous(memory_format=torch.channels_last)
        else torch.contiguous_format
    )

    def draw(shape):
        return torch.empty(shape, device=x.device, dtype=x.dtype).contiguous(memory_format=layout).normal_()

    return _global_draw(x.shape, draw).contiguous(memory_format=layout)
