"""Registry of model families: name -> class. `gmdrit models` lists it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

    from ..config import Config
    from .base import ModelFamily

MODEL_FAMILIES: dict[str, type[ModelFamily]] = {}


def register(cls: type[ModelFamily]) -> type[ModelFamily]:
    MODEL_FAMILIES[cls.name] = cls
    return cls


def build_model(cfg: Config, device: torch.device, training: bool = True) -> ModelFamily:
    """The model family of ``cfg``; ``training=False`` builds no optimizers (test time)."""
    return MODEL_FAMILIES[cfg.model.family](cfg, device, training)


from . import mdmm  # noqa: E402,F401  (registers the families)
from . import gmdrit  # noqa: E402,F401
