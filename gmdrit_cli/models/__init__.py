"""Registry of model families: name -> class. `gmdrit models` lists it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from ..config import Config
    from ..engine import Engine
    from .base import ModelFamily

MODEL_FAMILIES: dict[str, type[ModelFamily]] = {}


def register(cls: type[ModelFamily]) -> type[ModelFamily]:
    MODEL_FAMILIES[cls.name] = cls
    return cls


def build_model(cfg: Config, device: torch.device, training: bool = True) -> ModelFamily:
    """The model family of ``cfg``; ``training=False`` builds no optimizers (test time)."""
    return MODEL_FAMILIES[cfg.model.family](cfg, device, training)


def build_for_training(cfg: Config, device: torch.device, iterations_per_epoch: int = 1) -> tuple[ModelFamily, Engine]:
    """The model family of ``cfg`` and the engine that trains it (what the trainer builds, for tests and tools)."""
    from ..engine import Engine

    model = build_model(cfg, device)
    return model, Engine(model, iterations_per_epoch)


from . import mdmm  # noqa: E402,F401  (registers the families)
from . import gmdrit  # noqa: E402,F401
