"""What one metric (or a group of metrics sharing their work, e.g. FID and KID) does during `gmdrit eval`.

``evaluate()`` (``gmdrit_cli/evaluate.py``) owns the loop: it loads the model and the images, translates, and
calls every selected :class:`Evaluator` at fixed points. An evaluator never sees the other metrics. Adding a
metric: one file here with an ``Evaluator`` subclass, and one ``MetricInfo`` entry in ``metrics/__init__.py``
naming it (``evaluator="module:Class"``).

The life of an evaluator, in call order:

1. ``check_options(options, names)`` (class method): refuse bad settings before any work;
2. ``__init__(ctx, names)``: load weights (a missing file must stop the run before any work);
3. ``setup()``: after the test split is opened (e.g. train or load a cached classifier);
4. ``add_train_images(target, images)`` for every batch of the target's training images, then
   ``fit_train(target, n_train)`` (only with ``needs_train_images``);
5. ``reference(target, real)``: entries of the reference line's row (real test images vs training images);
6. per task: ``start_task(source, target)``, ``update(fakes, per_input)`` per generated batch, ``task_result()``;
7. ``section_result(test_images)``: a top-level ``eval.json`` section (only with ``section``);
8. ``protocols()``, ``weights()``, ``seeds()``, ``summaries()``, ``final_notes(tasks, reference)``: the report.

Images are uint8 N x 3 x S x S on the CPU, exactly the PNG values (``images.quantise``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import torch


def fmt(value: float | None, digits: int = 2) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


@dataclass(frozen=True)
class TableColumn:
    """One column of the table `gmdrit eval` prints: its header, the cell of a row (task or reference line,
    ``real`` for the latter) and the cell of a mean line; columns appear by ``order``."""

    header: str
    order: int
    cell: Callable[[dict, bool], str]
    mean: Callable[[dict, bool], str]


@dataclass
class EvalContext:
    """What every evaluator may read of the evaluation: options, model, data and where notes go."""

    options: Any  # evaluate.EvalOptions
    metrics: list[str]  # every selected metric name, in registry order
    model: Any  # the ModelFamily under test (test-time contract only)
    device: torch.device
    domains: list[str]
    root: str | Path  # dataset root
    progress: Callable[[str, int, int], None]
    notes: list[str] = field(default_factory=list)
    #: uint8 test images of every domain (N x 3 x S x S), set once they are loaded (before any task)
    test_images: list[torch.Tensor] | None = None

    @property
    def cfg(self):
        return self.model.cfg


def task_temperature(options, target: str) -> float:
    """The temperature of the random attributes into domain ``target`` (a name) under eval ``options``
    (evaluate.EvalOptions, defaults filled in): --temperature when given, else the model's default for that domain."""
    return (options.temperature_by_domain or {}).get(target, options.temperature)


class Evaluator:
    """Computes the registered metrics ``names`` (all of one evaluator's names that were selected)."""

    #: where this evaluator's entries go in the reference line's rows and in the seeds protocol
    reference_order: ClassVar[int] = 100
    #: reads the target domain's training images (one pass over them, shared by all evaluators)
    needs_train_images: ClassVar[bool] = False
    #: the top-level ``eval.json`` key this evaluator fills (None: it adds to rows only)
    section: ClassVar[str | None] = None
    #: metric name -> its column in the printed table (metrics without one print elsewhere or nothing)
    table_columns: ClassVar[dict[str, TableColumn]] = {}

    def __init__(self, ctx: EvalContext, names: list[str]):
        self.ctx = ctx
        self.names = names
        self.options = ctx.options

    @classmethod
    def check_options(cls, options, names: list[str]) -> None:
        """Raise ``MetricError`` on settings this evaluator cannot work with."""

    def setup(self) -> None:
        pass

    def add_train_images(self, target: int, images: torch.Tensor) -> None:
        pass

    def fit_train(self, target: int, n_train: int) -> None:
        pass

    def reference(self, target: int, real: torch.Tensor) -> dict:
        return {}

    def start_task(self, source: int, target: int) -> None:
        pass

    def update(self, fakes: torch.Tensor, per_input: int) -> None:
        """One generated batch: ``per_input`` consecutive outputs of each input, (inputs * per_input) rows."""

    def task_result(self) -> dict:
        return {}

    def section_result(self, test_images: list[torch.Tensor]) -> Any:
        return None

    def protocols(self) -> dict:
        return {}

    def weights(self) -> dict:
        return {}

    def seeds(self) -> dict:
        return {}

    def summaries(self) -> list[tuple[str, Callable[[dict], float | None]]]:
        """(key of ``mean`` / ``reference_mean``, value of one row or None) for the means over rows."""
        return []

    def final_notes(self, tasks: list[dict], reference: dict[str, dict]) -> list[str]:
        return []


def to_float(u8: torch.Tensor, device: torch.device) -> torch.Tensor:
    """uint8 images -> float in [-1, 1] on ``device``."""
    return u8.to(device).float().div(127.5).sub(1.0)
