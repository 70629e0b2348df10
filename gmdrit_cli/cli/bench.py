"""CLI command `gmdrit benchmark`: the report's seconds-per-iteration table, measured here."""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .app import SetOption, app, console


@app.command()
def benchmark(
    iters: Annotated[int, typer.Option("--iters", min=1, help="timed iterations per row")] = 50,
    warmup: Annotated[int, typer.Option("--warmup", min=0, help="untimed iterations first")] = 5,
    rows: Annotated[
        Optional[str],
        typer.Option(
            "--rows",
            help="comma-separated rows: gmdrit, double_gen_enc, half_discr, adain, double_conv, mdmm (the report's "
            "Table 3, the default, 108/216 px), bicyclegan (128 and 256 px), vae_phase1, vae_phase2 (256 px)",
        ),
    ] = None,
    resolution: Annotated[
        str,
        typer.Option(
            "--resolution", help="108 or 216 (Table 3 rows), 128 or 256 (BicycleGAN, VAE), or both: every row's sizes"
        ),
    ] = "both",
    device: Annotated[str, typer.Option("--device", help="auto, cpu or cuda")] = "auto",
    amp: Annotated[Optional[str], typer.Option("--amp", help="bf16, fp16, off (default: speed.amp=auto)")] = None,
    compile_: Annotated[bool, typer.Option("--compile", help="torch.compile every network")] = False,
    channels_last: Annotated[
        Optional[bool], typer.Option("--channels-last/--no-channels-last", help="default: speed.channels_last=auto")
    ] = None,
    data: Annotated[
        Optional[str],
        typer.Option(
            "--data",
            help=(
                "time the real loader on this dataset folder too (and the share of each iteration spent waiting for "
                "it; --set speed.prefetch=0 loads inline)"
            ),
        ),
    ] = None,
    loader_only: Annotated[
        bool,
        typer.Option(
            "--loader-only", help="with --data: time only the loading of each iteration's batches, no training step"
        ),
    ] = False,
    set_: SetOption = None,
    out: Annotated[Path, typer.Option("--out", help="folder for benchmark.json, .csv and .png")] = Path("benchmark"),
) -> None:
    """Time full training iterations of the report's Table 3 rows, beside the report's T4 figures."""
    from ..errors import ConfigError
    from ..outputs import claimed_folder
    from ..training.benchmark import (
        ALL_RESOLUTIONS,
        OUTPUT_NAMES,
        benchmark_folder,
        run_benchmark,
        select_rows,
        write_outputs,
    )

    if resolution not in ("108", "216", "128", "256", "both"):
        raise ConfigError(f"--resolution must be 108, 216, 128, 256 or both, not {resolution!r}")
    resolutions = list(ALL_RESOLUTIONS) if resolution == "both" else [int(resolution)]
    selected = select_rows(None if rows is None else [r.strip() for r in rows.split(",") if r.strip()], resolutions)
    overrides = list(set_ or [])
    if amp is not None:
        overrides.append(f"speed.amp={amp}")
    if compile_:
        overrides.append("speed.compile=true")
    if channels_last is not None:
        overrides.append(f"speed.channels_last={'on' if channels_last else 'off'}")

    def on_row(r) -> None:
        wait = "" if r.data_wait_share is None else f", {100 * r.data_wait_share:.1f}% waiting for data"
        console.print(f"{r.resolution} px {r.label}: median {r.median:.3f} s/it{wait}", markup=False)

    benchmark_folder(out)  # refused now, not after the timing
    # numbered and held from now: a benchmark started meanwhile writes its figures elsewhere (gmdrit_cli.outputs)
    with claimed_folder(out, OUTPUT_NAMES) as folder:
        result = run_benchmark(
            selected,
            iters=iters,
            warmup=warmup,
            device=device,
            overrides=overrides,
            data_root=data,
            loader_only=loader_only,
            on_row=on_row,
        )
        _show(result, iters, data is not None)
        for path in write_outputs(result, folder):
            console.print(f"wrote {path}", markup=False)


def _show(result, iters: int, waits: bool) -> None:
    """The table of timed rows."""
    env = result.environment
    table = Table(
        title=f"seconds per iteration on {env['device']} ({env.get('gpu', env['machine'])}), "
        f"torch {env['torch']}, {env['threads']} threads, {iters} iterations",
        header_style="bold",
    )
    columns = ("resolution", "model", "report T4", "ours (median)", "mean", "stdev", "ours/report", "peak memory")
    for column in columns + (("data wait",) if waits else ()):
        table.add_column(column, justify="left" if column == "model" else "right")
    for r in result.rows:
        report = "-" if r.report_seconds is None else f"{r.report_seconds:.3f}"
        ratio = "-" if r.ratio is None else f"{r.ratio:.2f}x"
        table.add_row(
            str(r.resolution),
            r.label,
            report,
            f"{r.median:.3f}",
            f"{r.mean:.3f}",
            f"{r.stdev:.3f}",
            ratio,
            f"{r.peak_memory_bytes / 2**30:.2f} GiB",
            *((f"{100 * r.data_wait_share:.1f}%",) if waits else ()),
        )
    console.print(table)
