"""CLI command `gmdrit report`: a static HTML page about run folders.

Parsing and rendering only; the work is in :mod:`gmdrit_cli.reporting.report`.
"""

from pathlib import Path
from typing import Annotated

import typer

from .app import app, console, run_with_stage_progress


@app.command("report")
def report(
    runs: Annotated[list[Path], typer.Argument(metavar="RUN...", help="run folders (several: their curves overlaid)")],
    out: Annotated[Path, typer.Option("--out", help="output folder: index.html and assets/")] = Path("report"),
    smoothing: Annotated[
        float, typer.Option("--smoothing", help="weight of the moving average of the loss curves (0 = none, below 1)")
    ] = 0.9,
    max_grids: Annotated[
        int, typer.Option("--max-grids", min=1, help="sample grids shown per run, evenly spaced over training")
    ] = 8,
    inputs_per_task: Annotated[
        int, typer.Option("--inputs-per-task", min=1, help="eval: test inputs shown per task")
    ] = 4,
    outputs_per_input: Annotated[
        int, typer.Option("--outputs-per-input", min=1, help="eval: translations shown per input")
    ] = 5,
) -> None:
    """Write a static HTML page (open it from disk) with the loss curves, the sample grids over time, the
    eval tables with a few translations per task, the benchmark chart, checkpoints and config of each run."""
    from ..reporting.report import build_report

    result = run_with_stage_progress(
        lambda update: build_report(
            runs,
            out,
            smoothing=smoothing,
            max_grids=max_grids,
            inputs_per_task=inputs_per_task,
            outputs_per_input=outputs_per_input,
            progress=update,
        )
    )
    for note in result.notes:
        console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"wrote {result.index} ({len(result.runs)} run{'s' if len(result.runs) != 1 else ''}, "
        f"{len(result.images)} pictures); open it in a browser",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
