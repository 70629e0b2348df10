"""CLI commands `gmdrit data list` and `gmdrit data download` (the public CycleGAN and pix2pix datasets) and
`gmdrit data edges` (an edges -> photo paired dataset made from photos), `gmdrit data cache` (a local copy).

Parsing and rendering only; the work is in :mod:`gmdrit_cli.data.download`, :mod:`gmdrit_cli.data.edges` and
:mod:`gmdrit_cli.data.cache`.
"""

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from .app import app, console, err_console

data_app = typer.Typer(
    no_args_is_help=True,
    rich_markup_mode=None,
    help=(
        "List and download the public CycleGAN (unpaired) and pix2pix (paired) datasets; make an edges -> photo "
        "set; copy a dataset to local disk."
    ),
)
app.add_typer(data_app, name="data")

ToOption = Annotated[Path, typer.Option("--to", help="folder that holds the datasets; each goes to TO/NAME")]


def _size_text(size: Optional[int]) -> str:
    if size is None:
        return "-"
    return f"{size / 1e6:,.1f} MB" if size < 10e6 else f"{size / 1e6:,.0f} MB"


@data_app.command("list")
def list_(to: ToOption = Path("data")) -> None:
    """List the datasets: kind, folders with image counts where known, archive size, URL, and whether
    each is already under --to."""
    from ..data.download import list_datasets

    table = Table(
        "name",
        "kind",
        "folders (images)",
        "size",
        "url",
        "present",
        box=None,
        header_style="bold",
        caption=f"present: a complete folder {to}/NAME (--to DIR looks elsewhere)",
        caption_justify="left",
    )
    for spec, state in list_datasets(to):
        folders = ", ".join(f"{f} {spec.counts[f]}" if f in spec.counts else f for f in spec.folders)
        table.add_row(
            spec.name,
            spec.kind,
            folders,
            _size_text(spec.size),
            spec.url,
            "yes" if state == "present" else "" if state == "absent" else state,
        )
    console.print(table, soft_wrap=True)


@data_app.command("download")
def download(
    name: Annotated[str, typer.Argument(metavar="NAME", help="dataset name (see `gmdrit data list`)")],
    to: ToOption = Path("data"),
    url: Annotated[
        Optional[str], typer.Option("--url", help="download from this URL (a mirror) instead of the official one")
    ] = None,
    force: Annotated[
        bool, typer.Option("--force", help="download and unpack again even if TO/NAME is complete")
    ] = False,
    keep_archive: Annotated[
        bool, typer.Option("--keep-archive", help="keep TO/NAME.zip (or .tar.gz) after unpacking")
    ] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="seconds to wait for the server before giving up", min=1)
    ] = 30.0,
) -> None:
    """Download a dataset into TO/NAME (resuming an interrupted download), check it and unpack it."""
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    from ..data.download import download_dataset

    bars = {
        "download": Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            TimeRemainingColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        ),
        "count": Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            console=console,
            transient=True,
            disable=not console.is_terminal,
        ),
    }
    tasks: dict[str, int] = {}
    shown: list[Progress] = []  # Rich allows one live display at a time: the bytes bar, then the members bar

    def update(stage: str, done: int, total: Optional[int]) -> None:
        bar = bars["download" if stage == "download" else "count"]
        if stage not in tasks:
            if stage == "download":
                console.print(f"downloading {name} into {to / name}", markup=False, highlight=False)
            if shown and shown[-1] is not bar:
                shown[-1].stop()
            if not shown or shown[-1] is not bar:
                bar.start()
                shown.append(bar)
            # the bar starts at the first update's `done`, so bytes resumed from a .part do not count as speed
            tasks[stage] = bar.add_task(stage, total=total, completed=done)
        bar.update(tasks[stage], completed=done, total=total)

    try:
        result = download_dataset(
            name, to, url=url, force=force, keep_archive=keep_archive, progress=update, timeout=timeout
        )
    except KeyboardInterrupt:
        err_console.print(
            f"interrupted; what was downloaded so far stays in {to}: run the same command again to continue",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        raise typer.Exit(130) from None
    finally:
        if shown:
            shown[-1].stop()
    counts = ", ".join(f"{f} {n}" for f, n in result.counts.items())
    if result.already_present:
        console.print(
            f"{result.spec.name} is already complete in {result.path} ({counts} images); --force downloads it again",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
        return
    fetched = (
        f"downloaded {_size_text(result.downloaded)} from {result.url}"
        + (f" (resumed at {_size_text(result.resumed_from)})" if result.resumed_from else "")
        if result.downloaded or result.resumed_from
        else "used the archive already in " + str(to)
    )
    console.print(
        f"{fetched}; unpacked into {result.path} ({counts} images)", markup=False, highlight=False, soft_wrap=True
    )
    if result.archive:
        console.print(f"kept the archive {result.archive}", markup=False, highlight=False, soft_wrap=True)
    if result.spec.kind == "unpaired":
        console.print(
            f"train on it with: gmdrit train --set data.root={result.path}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )


@data_app.command("edges")
def edges(
    src: Annotated[
        str,
        typer.Argument(
            metavar="SRC", help="folder of photos, a CycleGAN root (train*/ and test*/ folders) or sample:NAME"
        ),
    ],
    dst: Annotated[Path, typer.Argument(metavar="DST", help="new dataset folder: DST/train, DST/val, DST/test")],
    size: Annotated[int, typer.Option("--size", help="side of each half in pixels (pairs are 2*SIZE x SIZE)")] = 256,
    val: Annotated[float, typer.Option("--val", help="fraction of the (train) images that goes to val/")] = 0.1,
    test: Annotated[
        Optional[float],
        typer.Option(
            "--test",
            help="fraction that goes to test/ (default 0.1; a CycleGAN root's test folders are its test split)",
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of the split (same seed and files: same split)")] = 0,
    sigma: Annotated[
        Optional[float],
        typer.Option("--sigma", help="Canny's Gaussian sigma (default 2 at 256 px, scaled with --size, at least 1)"),
    ] = None,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="replace DST if it is not empty")] = False,
) -> None:
    """Make an edges -> photo paired dataset (pix2pix A|B JPEGs: edges left, photo right) from photos."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ..data.edges import make_edges_dataset

    progress = Progress(
        TextColumn("edges"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    task = progress.add_task("edges", total=None)
    with progress:
        result = make_edges_dataset(
            src,
            dst,
            size=size,
            val=val,
            test=test,
            seed=seed,
            overwrite=overwrite,
            sigma=sigma,
            progress=lambda done, total: progress.update(task, completed=done, total=total),
        )
    for path, reason in result.skipped:
        err_console.print(f"skipped {path}: {reason}", markup=False, highlight=False, soft_wrap=True)
    table = Table("split", "pairs", "folder", box=None, header_style="bold")
    for split, count in result.counts.items():
        table.add_row(split, str(count), str(result.path / split))
    console.print(table, soft_wrap=True)
    console.print(
        f"wrote {sum(result.counts.values())} pairs of {2 * result.size}x{result.size} px into {result.path} "
        f"(A = edges on the left, B = photo on the right; Canny sigma {result.sigma:g}; settings in "
        f"{result.path / 'edges.json'})",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )


@data_app.command("cache")
def cache(
    src: Annotated[str, typer.Argument(metavar="SRC", help="dataset folder on a slow mount, e.g. a Drive folder")],
    to: Annotated[Path, typer.Option("--to", help="local folder for the copy: it goes to TO/<name of SRC>")],
) -> None:
    """Copy a dataset folder to local disk once; run again (or train with --set speed.data_cache=TO) and a
    complete copy of the same source (file count and size) is reused."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn

    from ..data.cache import cache_dataset

    progress = Progress(
        TextColumn("copying"),
        BarColumn(),
        MofNCompleteColumn(),
        console=console,
        transient=True,
        disable=not console.is_terminal,
    )
    task = progress.add_task("copy", total=None)
    with progress:
        result = cache_dataset(src, to, progress=lambda done, total: progress.update(task, completed=done, total=total))
    what = "copied" if result.copied else "already complete:"
    console.print(
        f"{what} {result.files} files ({_size_text(result.size)}) of {result.source} in {result.path}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    console.print(
        f"train from it with: --set data.root={result.path}, or keep data.root and add --set speed.data_cache={to}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
