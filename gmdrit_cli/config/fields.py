"""The dataclass field of a config key: its default, help text and validation rules (used by the config tree and
by each family's own section, gmdrit_cli/families/<name>/config.py)."""

from __future__ import annotations

from dataclasses import field
from typing import Any


def option(
    default: Any,
    help: str,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: tuple | None = None,
    min_exclusive: bool = False,
    max_exclusive: bool = False,
    why: str = "",
) -> Any:
    """A dataclass field with its help text and validation rules in the metadata; ``why``: the reason for
    ``max``, part of the message when a value passes it (every size-like key has a bound: past it a run would
    exhaust the memory or take hours instead of failing at once)."""
    meta = {"help": help, "min": min, "max": max, "choices": choices, "why": why}
    meta.update(min_exclusive=min_exclusive, max_exclusive=max_exclusive)
    if isinstance(default, list):
        return field(default_factory=lambda: list(default), metadata=meta)
    return field(default=default, metadata=meta)
