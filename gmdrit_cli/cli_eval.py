"""CLI command `gmdrit eval`: the metrics the report could not compute."""

from __future__ import annotations

from .cli import app, console  # noqa: F401
