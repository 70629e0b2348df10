"""The Typer ``app`` and the consoles every CLI module registers its commands on and prints to.

Its own module so that ``main.py`` (which assembles the commands) and the command modules (which add
theirs) all import it and never each other.
"""

import logging
import sys
from typing import Annotated, Optional

import typer
from rich.console import Console
from rich.logging import RichHandler

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    rich_markup_mode=None,
    pretty_exceptions_enable=False,
    help="gmdrit: diverse unpaired image-to-image translation with Gaussian-mixture latents.",
)
# Piped output (logs, CI, notebooks) gets wide lines instead of Rich's 80-column wrapping.
console = Console(width=None if sys.stdout.isatty() else 200)
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 200)

PresetOption = Annotated[str, typer.Option("--preset", "-p", help="preset name (see `gmdrit presets`) or YAML path")]
SetOption = Annotated[Optional[list[str]], typer.Option("--set", "-s", help="override a config key: section.key=value")]


def _setup_logging() -> None:
    handler = RichHandler(console=err_console, show_time=False, show_path=False, markup=False)
    logging.basicConfig(level=logging.INFO, format="%(message)s", handlers=[handler], force=True)
    # gmdrit's own INFO lines are for the user; torch's (e.g. cache statistics its exit handlers log when an
    # import was interrupted) are not
    logging.getLogger("torch").setLevel(logging.WARNING)


@app.callback()
def _main() -> None:
    _setup_logging()


def run_with_stage_progress(work):
    """Call ``work(update)`` under a transient bar per stage (nothing in logs or pipes) and return its
    result; ``update(stage, done, total)`` is the progress callback of the core functions."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    tasks: dict[str, int] = {}

    def update(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = progress.add_task(stage, total=total)
        progress.update(tasks[stage], completed=done, total=total)

    with progress:
        return work(update)
