"""The registry of model families (name -> class), apart from the families so that they can import it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from .base import ModelFamily

MODEL_FAMILIES: dict[str, type[ModelFamily]] = {}


def register(cls: type[ModelFamily]) -> type[ModelFamily]:
    """Class decorator: make ``cls`` a model family under ``cls.name`` (``model.family`` in configs; the
    name is also the family's folder, gmdrit_cli/families/<name>/)."""
    MODEL_FAMILIES[cls.name] = cls
    return cls
