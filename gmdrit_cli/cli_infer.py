"""CLI commands that use a trained model: translate, interpolate, export."""

from __future__ import annotations

from .cli import app, console  # noqa: F401
