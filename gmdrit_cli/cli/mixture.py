"""CLI command `gmdrit mixture`: what GM-DRIT's mixture learned, over training.

Parsing and rendering only; the work is in :mod:`gmdrit_cli.families.gmdrit.mixture_report`.
"""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .app import app, console, run_with_stage_progress


def _render(result) -> None:
    if result.curve:
        table = Table(
            "iteration",
            "checkpoint",
            "accuracy",
            "NMI",
            "domain accuracy",
            "components used",
            box=None,
            header_style="bold",
            title="q(y|x) on the test images (accuracy: Hungarian)",
        )
        for e in result.curve:
            table.add_row(
                str(e["iteration"]),
                e["checkpoint"],
                f"{e['accuracy']:.3f}",
                f"{e['nmi']:.3f}",
                f"{e['domain_accuracy']:.3f}",
                f"{e['components_used']} / {len(e['component_usage'])}",
            )
        console.print(table)
    c = result.components
    claimed = "; ".join(
        f"{s['component']} ({s['domain_name']}/{s['index_in_domain']}): "
        + ", ".join(f"{n} {v}" for n, v in s["claimed_by_domain"].items())
        for s in c["components"]
    )
    console.print(
        f"components of {Path(c['checkpoint']).name} (iteration {c['iteration']}), test images claimed: {claimed}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    fits = [
        f"{s['component']}: mean gap {s['prior_fit']['mean_gap']:.2f}, std ratio {s['prior_fit']['std_ratio']:.2f}"
        for s in c["components"]
        if s["prior_fit"].get("claimed")
    ]
    console.print(
        "p(z|y) vs the codes of the images each component claims (0 and 1 = a prior that tracks them): "
        + "; ".join(fits),
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    for note in result.notes:
        console.print(f"note: {note}", markup=False, highlight=False, soft_wrap=True)
    for path in result.written:
        console.print(f"wrote {path}", markup=False, highlight=False, soft_wrap=True)


@app.command("mixture")
def mixture(
    run: Annotated[Path, typer.Argument(metavar="RUN", help="GM-DRIT run folder (with checkpoints/)")],
    data: Annotated[Optional[str], typer.Option("--data", help="dataset root (default: the run's data.root)")] = None,
    out: Annotated[Optional[Path], typer.Option("--out", help="output folder (default RUN/eval/mixture)")] = None,
    max_inputs: Annotated[
        int, typer.Option("--max-inputs", help="use only the first N test images of each domain (0 = all)")
    ] = 0,
    samples: Annotated[int, typer.Option("--samples", help="translations per component in components_samples.png")] = 8,
    seed: Annotated[int, typer.Option("--seed", help="seed of the attributes drawn from p(z|y)")] = 0,
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda")] = "auto",
    skip_curve: Annotated[
        bool, typer.Option("--skip-curve", help="only the components of one checkpoint, no curve over checkpoints")
    ] = False,
    checkpoint: Annotated[
        Optional[str],
        typer.Option(
            "--checkpoint",
            help=(
                "checkpoint for the component pictures: folder, name (iter_0001000) or iteration (default: the newest)"
            ),
        ),
    ] = None,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for torch (0 = torch's default)", min=0)] = 0,
) -> None:
    """Report on GM-DRIT's mixture: q(y|x) test accuracy and NMI at every kept checkpoint (JSON and a plot),
    samples of every component from p(z|y), and the test images each component claims."""
    from ..families.gmdrit.mixture_report import MixtureOptions, mixture_report

    if threads:
        import torch

        from ..limits import MAX_THREADS, bounded

        torch.set_num_threads(
            bounded(threads, "--threads", 0, MAX_THREADS, "more threads than cores only slow torch down")
        )
    options = MixtureOptions(
        run=run,
        data=data,
        out=out,
        max_inputs=max_inputs,
        samples=samples,
        seed=seed,
        device=device,
        skip_curve=skip_curve,
        checkpoint=checkpoint,
    )
    result = run_with_stage_progress(lambda update: mixture_report(options, update))
    _render(result)
