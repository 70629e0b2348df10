"""Model families: one folder each (``model.py`` with the :class:`~.base.ModelFamily` subclass, registered by
``@register``; ``nets.py``, ``losses.py``; ``config.py`` with its own config section, where it has one). A folder
that holds a ``model.py`` is a family: nothing else lists them. Importing this package loads no network code (the
config tree reads the families' names and sections); the models are imported when first asked for."""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType
from typing import TYPE_CHECKING

from .registry import register  # noqa: F401

if TYPE_CHECKING:
    import torch

    from ..config.schema import Config
    from ..training.engine import Engine
    from .base import ModelFamily

_HERE = Path(__file__).resolve().parent


def family_names() -> tuple[str, ...]:
    """The families, by folder name (sorted): the subfolders of this package that hold a ``model.py``."""
    return tuple(sorted(p.name for p in _HERE.iterdir() if (p / "model.py").is_file()))


def family_config_modules() -> dict[str, ModuleType]:
    """family -> its ``config.py`` (``SECTION``: the section's name, ``Section``: its dataclass, optionally
    ``validate(cfg) -> list[str]``), for the families that have one. Torch-free."""
    return {
        name: importlib.import_module(f"{__name__}.{name}.config")
        for name in family_names()
        if (_HERE / name / "config.py").is_file()
    }


def load_families() -> dict[str, type[ModelFamily]]:
    """Import every family's ``model.py`` (which registers it) and return the registry, in family_names() order."""
    from .registry import MODEL_FAMILIES

    for name in family_names():
        importlib.import_module(f"{__name__}.{name}.model")
    return {name: MODEL_FAMILIES[name] for name in family_names()}


def family_class(name: str) -> type[ModelFamily]:
    """The class of family ``name``, importing only that family's ``model.py`` (a translate loads one family's
    networks, not every family's)."""
    from .registry import MODEL_FAMILIES

    if name not in MODEL_FAMILIES:
        importlib.import_module(f"{__name__}.{name}.model")
    return MODEL_FAMILIES[name]


def __getattr__(name: str):
    if name == "MODEL_FAMILIES":  # name -> class, every family loaded
        return load_families()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def build_model(cfg: Config, device: torch.device, training: bool = True) -> ModelFamily:
    """The model family of ``cfg`` (networks only: optimizers and precision are the trainer's
    :class:`~gmdrit_cli.training.engine.Engine`); ``training=False`` marks a test-time model."""
    return family_class(cfg.model.family)(cfg, device, training)


def build_for_training(cfg: Config, device: torch.device, iterations_per_epoch: int = 1) -> tuple[ModelFamily, Engine]:
    """The model family of ``cfg`` and the engine that trains it (what the trainer builds, for tests and tools)."""
    from ..training.engine import Engine

    model = build_model(cfg, device)
    return model, Engine(model, iterations_per_epoch)
