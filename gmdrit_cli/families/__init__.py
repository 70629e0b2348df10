"""Registry of model families: name -> class. `gmdrit models` lists it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from ..config.schema import Config
    from ..training.engine import Engine
    from .base import ModelFamily

from .registry import MODEL_FAMILIES, register  # noqa: F401


def build_model(cfg: Config, device: torch.device, training: bool = True) -> ModelFamily:
    """The model family of ``cfg`` (networks only: optimizers and precision are the trainer's
    :class:`~gmdrit_cli.training.engine.Engine`); ``training=False`` marks a test-time model."""
    return MODEL_FAMILIES[cfg.model.family](cfg, device, training)


def build_for_training(cfg: Config, device: torch.device, iterations_per_epoch: int = 1) -> tuple[ModelFamily, Engine]:
    """The model family of ``cfg`` and the engine that trains it (what the trainer builds, for tests and tools)."""
    from ..training.engine import Engine

    model = build_model(cfg, device)
    return model, Engine(model, iterations_per_epoch)


# importing a family module registers it (add new families here)
from .mdmm import model as mdmm  # noqa: E402,F401
from .gmdrit import model as gmdrit  # noqa: E402,F401
from .bicyclegan import model as bicyclegan  # noqa: E402,F401
from .vae import model as vae  # noqa: E402,F401
