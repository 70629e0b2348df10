"""CLI commands that use a trained model: translate, interpolate, export.

Parsing and rendering only; the work is in :mod:`gmdrit_cli.inference.translate`. Inputs that fail are reported
one line each on stderr, the others are still processed, and the command then exits with code 1.
"""

import contextlib
import secrets
from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from .app import app, console, err_console

RunOption = Annotated[
    Optional[Path],
    typer.Option("--run", help="run folder: its latest valid checkpoint (or any path --checkpoint takes)"),
]
CheckpointOption = Annotated[
    Optional[Path],
    typer.Option(
        "--checkpoint",
        "-c",
        help="checkpoint folder, or an exported model.safetensors (config.yaml beside it) or its folder",
    ),
]
SeedOption = Annotated[
    Optional[int],
    typer.Option(
        "--seed",
        help="seed of the random attributes: the same seed gives the same output bytes (default: random, printed)",
    ),
]
SizeOption = Annotated[
    Optional[int],
    typer.Option("--size", help="working resolution in pixels, a multiple of 4 (default: the training crop)"),
]
SquareOption = Annotated[
    bool, typer.Option("--square", help="write square outputs instead of keeping the input's aspect ratio")
]
DeviceOption = Annotated[str, typer.Option("--device", help="cpu, cuda or auto")]
ThreadsOption = Annotated[int, typer.Option("--threads", help="CPU threads for torch (0 = torch's default)")]
NoEmaOption = Annotated[
    bool,
    typer.Option(
        "--no-ema", help="use the raw weights instead of their EMA copy (runs trained with train.ema_beta > 0)"
    ),
]
ReferenceOption = Annotated[
    Optional[list[Path]], typer.Option("--reference", "-r", help="reference image whose attribute is used (repeatable)")
]
InputsArgument = Annotated[
    list[str], typer.Argument(metavar="INPUT", help="image files, folders (their images) or globs", show_default=False)
]


class ExportFormat(str, Enum):
    safetensors = "safetensors"
    onnx = "onnx"


class Engine(str, Enum):
    auto = "auto"
    torch = "torch"
    onnx = "onnx"


class Between(str, Enum):
    random = "random"
    references = "references"
    components = "components"
    domains = "domains"


def _load(run: Optional[Path], checkpoint: Optional[Path], device: str, threads: int, no_ema: bool = False):
    from ..errors import GmdritError
    from ..inference.model_files import load_for_inference

    if run is not None and checkpoint is not None:
        raise GmdritError("give either --run or --checkpoint, not both")
    path = run if run is not None else checkpoint  # None: the pretrained model inside the package
    if threads < 0:
        raise GmdritError(f"--threads {threads}: give a positive count, or 0 for torch's default")
    from ..limits import MAX_THREADS, bounded

    bounded(threads, "--threads", 0, MAX_THREADS, "more threads than cores only slow torch down")
    if threads:
        import torch

        torch.set_num_threads(threads)
    return load_for_inference(path, device, ema=not no_ema)


def _seed(seed: Optional[int]) -> int:
    from ..limits import seed as check_seed

    return check_seed(seed) if seed is not None else secrets.randbelow(2**31)


def _progress(header: str, inputs: list[str]):
    """A transient progress bar when stdout is a terminal (nothing in logs or pipes) and there is more than one
    image file to work on; ``header`` is printed when the work starts, i.e. once the options have been checked."""
    started = []

    def say_header() -> None:
        if not started:
            started.append(True)
            console.print(header, markup=False, highlight=False, soft_wrap=True)

    one_file = len(inputs) == 1 and Path(inputs[0]).is_file()  # a fraction of a second: nothing to follow
    if one_file or not console.is_terminal:  # no bar: rich.progress is not even imported (ONNX start-up)
        return contextlib.nullcontext(), lambda done, total, current: say_header()
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TextColumn("{task.fields[current]}"),
        console=console,
        transient=True,
    )
    task = progress.add_task("images", total=None, current="")

    def update(done: int, total: int, current: str) -> None:
        say_header()
        progress.update(task, completed=done, total=total, current=Path(current).name if current else "")

    return progress, update


def _table(*columns: str) -> Table:
    table = Table(box=None, header_style="bold")
    for name in columns:
        table.add_column(name, overflow="fold")  # long paths wrap, never get cut
    return table


def _temperature_note(given: float | None, default: float) -> str:
    used = default if given is None else given
    if used == 1.0:
        return ""
    return f" at temperature {used:g}" + (" (the model's default)" if given is None else "")


def _default_temperature(cfg, domain: str) -> float:
    """The model's default temperature into ``domain`` (a name; one it does not have: its overall default, the
    core refuses the name)."""
    from ..config.schema import temperature_of

    names = list(cfg.data.domains)
    return temperature_of(cfg, names.index(domain)) if domain in names else cfg.model.sample_temperature


def _header(model, seed: int, size: int, what: str, engine: str = "") -> str:
    """The first line of translate / interpolate; ``engine``: said after the device (" with torch")."""
    source = model.source
    where = source.describe() if source is not None else "model"
    return f"model {where} on {model.device}{engine}; {what}; seed {seed}; working size {size} px"


def _onnx_model_folder(
    engine: Engine, run: Optional[Path], checkpoint: Optional[Path], device: str, no_ema: bool
) -> tuple[Optional[Path], bool]:
    """(the ONNX export translate runs, whether it is the pretrained model's packaged copy), or (None, False)
    for the torch path. A model given as an ONNX export runs on onnxruntime; no model given: the packaged ONNX
    copy of the pretrained model with ``--engine auto`` on the CPU when onnxruntime is installed and the copy was
    made from the pretrained weights there now (``packaged_onnx``), else the torch model."""
    from ..errors import InferenceError
    from ..inference.onnx_translate import onnx_folder, packaged_onnx

    given = checkpoint if checkpoint is not None else run
    if given is not None:
        folder = onnx_folder(given)
        if engine == Engine.onnx and folder is None:
            raise InferenceError(
                f"--engine onnx: {given} is not an ONNX export; export it with gmdrit export MODEL --format onnx "
                "--out DIR and give DIR/model.onnx"
            )
        if engine == Engine.torch and folder is not None:
            raise InferenceError(
                f"--engine torch: {given} is an ONNX export, which runs on onnxruntime only; give the run or "
                "a safetensors export for torch"
            )
        return folder, False
    if engine == Engine.torch or (engine == Engine.auto and (device != "cpu" or no_ema)):
        return None, False
    folder, why = packaged_onnx()
    if folder is None and engine == Engine.onnx:
        raise InferenceError(f"--engine onnx: {why}; or leave --engine out (torch runs the pretrained model)")
    return folder, folder is not None


def _report_failures(result, verb: str) -> None:
    """One line per failed input, a summary, exit code 1 when anything failed."""
    for note in result.notes:
        err_console.print(Text.assemble(("note: ", "bold yellow"), note), soft_wrap=True, highlight=False)
    if not result.failures:
        if not result.items:
            err_console.print(Text.assemble(("error: ", "bold red"), "no input images"), soft_wrap=True)
            raise typer.Exit(1)
        return
    for failure in result.failures:
        err_console.print(
            Text.assemble(("error: ", "bold red"), f"{failure.source}: {failure.message}"),
            soft_wrap=True,
            highlight=False,
        )
    total = len(result.items) + len(result.failures)
    failed = ", ".join(f.source for f in result.failures)
    err_console.print(
        f"{verb} {len(result.items)} of {total} inputs; failed: {failed}", soft_wrap=True, highlight=False, markup=False
    )
    raise typer.Exit(1)


@app.command()
def translate(
    inputs: InputsArgument,
    domain: Annotated[str, typer.Option("--domain", "-d", help="target domain, by name (see the model's config)")],
    samples: Annotated[
        Optional[int],
        typer.Option(
            "--samples", "-n", help="outputs per input with random attributes [default: 5]", show_default=False
        ),
    ] = None,
    component: Annotated[
        Optional[int],
        typer.Option("--component", "-k", help="GM-DRIT: draw attributes from this component of the domain (0-based)"),
    ] = None,
    temperature: Annotated[
        Optional[float],
        typer.Option(
            "--temperature",
            "-t",
            help="scale of the prior's standard deviation for random attributes (<1: more "
            "faithful, >1: more diverse) [default: the model's model.sample_temperature, "
            "1 unless set, or its model.sample_temperature_by_domain entry for the target]",
            show_default=False,
        ),
    ] = None,
    reference: ReferenceOption = None,
    run: RunOption = None,
    checkpoint: CheckpointOption = None,
    seed: SeedOption = None,
    size: SizeOption = None,
    square: SquareOption = False,
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")] = Path("translations"),
    device: DeviceOption = "cpu",
    threads: ThreadsOption = 0,
    no_ema: NoEmaOption = False,
    engine: Annotated[
        Engine,
        typer.Option(
            "--engine",
            help="auto: an ONNX export (and, without --run/--checkpoint, the pretrained model's packaged ONNX copy "
            "when onnxruntime is installed and --device is cpu) runs on onnxruntime without torch, anything else on "
            "torch; torch / onnx: that one or an error. onnxruntime draws random attributes with numpy: the same "
            "--seed gives other samples than torch",
        ),
    ] = Engine.auto,
) -> None:
    """Translate images into a domain: several outputs per input from random attributes, or the attribute of
    reference images (--reference). An ONNX export (--checkpoint model.onnx), and the pretrained model when
    onnxruntime is installed (--engine), run on onnxruntime without torch."""
    folder, pretrained = _onnx_model_folder(engine, run, checkpoint, device, no_ema)
    if folder is not None:
        from .onnx import translate_onnx

        return translate_onnx(
            inputs,
            domain=domain,
            samples=samples,
            component=component,
            temperature=temperature,
            reference=reference,
            run=run,
            checkpoint=folder if pretrained else checkpoint,
            seed=seed,
            size=size,
            square=square,
            out=out,
            device=device,
            threads=threads,
            no_ema=no_ema,
            pretrained=pretrained,
        )
    from ..inference.translate import translate as run_translate

    cfg, model = _load(run, checkpoint, device, threads, no_ema)
    seed = _seed(seed)
    mode = (
        f"attributes of {len(reference)} reference image(s)"
        if reference
        else "the prior's mean attribute (z = mu; --samples N draws)"
        if samples is None and not model.capabilities.random_by_default
        else f"{samples or 5} random attribute(s)"
        + (f" of component {component}" if component is not None else "")
        + _temperature_note(temperature, _default_temperature(cfg, domain))
    )
    progress, update = _progress(_header(model, seed, size or cfg.data.crop, mode, " with torch"), inputs)
    with progress:
        result = run_translate(
            model,
            inputs,
            domain=domain,
            samples=samples,
            component=component,
            temperature=temperature,
            references=reference,
            seed=seed,
            size=size,
            square=square,
            out=out,
            on_progress=update,
        )
    if result.items:
        table = _table("input", f"outputs (in {result.out})", "grid", "size")
        for item in result.items:
            first, last = item.outputs[0].name, item.outputs[-1].name
            outputs = first if first == last else f"{first} .. {last}"
            table.add_row(str(item.source), outputs, item.grid.name, f"{item.size[0]}x{item.size[1]}")
        console.print(table)
        console.print(
            f"wrote {len(result.written)} files into {result.out} ({len(result.items)} input(s) "
            f"to '{result.domain}', {result.seconds:.1f} s)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    _report_failures(result, "translated")


@app.command()
def interpolate(
    inputs: InputsArgument,
    domain: Annotated[
        list[str],
        typer.Option(
            "--domain", "-d", help="target domain; give two (start, end) with --between domains or references"
        ),
    ],
    steps: Annotated[int, typer.Option("--steps", help="frames, both endpoints included")] = 8,
    between: Annotated[
        Between,
        typer.Option(
            "--between",
            help="endpoints: two random attributes, two --reference images, two mixture components "
            "(GM-DRIT) or two domains",
        ),
    ] = Between.random,
    component: Annotated[
        Optional[list[int]],
        typer.Option("--component", "-k", help="GM-DRIT: pin the component (twice with --between components)"),
    ] = None,
    reference: ReferenceOption = None,
    run: RunOption = None,
    checkpoint: CheckpointOption = None,
    seed: SeedOption = None,
    size: SizeOption = None,
    square: SquareOption = False,
    out: Annotated[Path, typer.Option("--out", "-o", help="output folder")] = Path("interpolations"),
    fps: Annotated[float, typer.Option("--fps", help="GIF frames per second")] = 8.0,
    loop: Annotated[int, typer.Option("--loop", help="GIF loop count: 0 loops forever")] = 0,
    device: DeviceOption = "cpu",
    threads: ThreadsOption = 0,
    no_ema: NoEmaOption = False,
) -> None:
    """Walk the attribute between two endpoints and decode each step: a strip PNG and an animated GIF per input."""
    from ..inference.translate import interpolate as run_interpolate

    cfg, model = _load(run, checkpoint, device, threads, no_ema)
    seed = _seed(seed)
    progress, update = _progress(
        _header(model, seed, size or cfg.data.crop, f"{steps} steps between {between.value}"), inputs
    )
    with progress:
        result = run_interpolate(
            model,
            inputs,
            domains=list(domain),
            steps=steps,
            between=between.value,
            components=component,
            references=reference,
            seed=seed,
            size=size,
            square=square,
            out=out,
            fps=fps,
            loop=loop,
            on_progress=update,
        )
    if result.items:
        table = _table("input", f"strip (in {result.out})", "gif", "size")
        for item in result.items:
            table.add_row(str(item.source), item.strip.name, item.gif.name, f"{item.size[0]}x{item.size[1]}")
        console.print(table)
        console.print(
            f"wrote {len(result.written)} files into {result.out} ({result.steps} steps from "
            f"{result.start} to {result.end}, {result.seconds:.1f} s)",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    _report_failures(result, "interpolated")


@app.command()
def export(
    run: Annotated[
        Path, typer.Argument(metavar="RUN", help="run folder (latest checkpoint), checkpoint folder or exported model")
    ],
    out: Annotated[Path, typer.Option("--out", "-o", help="folder to write model.safetensors and config.yaml into")],
    int8: Annotated[
        bool,
        typer.Option(
            "--int8", help="int8 weights (per output channel) without training-only heads: about a quarter of the size"
        ),
    ] = False,
    meta: Annotated[
        Optional[list[str]],
        typer.Option(
            "--meta", help="KEY=VALUE stored in the weights' metadata (e.g. the training command); repeatable"
        ),
    ] = None,
    no_ema: Annotated[bool, typer.Option("--no-ema", help="export the raw weights instead of their EMA copy")] = False,
    force: Annotated[
        bool, typer.Option("--force", help="replace the model.safetensors / config.yaml already in --out")
    ] = False,
    format_: Annotated[
        ExportFormat,
        typer.Option(
            "--format",
            help="safetensors (torch) or onnx (graphs checked against torch; translate runs them without torch)",
        ),
    ] = None,
    refit_prior: Annotated[
        bool,
        typer.Option(
            "--refit-prior",
            help="GM-DRIT: move each prior mean onto the mean attribute of the training images (validation split "
            "held out) that choose its component, where random draws give the colours of real images",
        ),
    ] = False,
    data: Annotated[
        Optional[str],
        typer.Option("--data", help="dataset root for --refit-prior and --colour-gate [default: the run's data.root]"),
    ] = None,
    refit_images: Annotated[
        Optional[int],
        typer.Option(
            "--refit-images",
            help="training images per domain --refit-prior uses [default: 400 encoded; --refit-by discriminator or "
            "neutral: 16, at most 256, each translated by 256 draws]",
            show_default=False,
        ),
    ] = None,
    refit_strength: Annotated[
        Optional[float],
        typer.Option(
            "--refit-strength",
            help="share of the way --refit-prior moves each mean (0 < s <= 1) [default: 1.0]",
            show_default=False,
        ),
    ] = None,
    refit_by: Annotated[
        Optional[str],
        typer.Option(
            "--refit-by",
            help="what --refit-prior fits to: posterior (the means onto the training images' encoded attributes) or "
            "discriminator (means and spreads onto the prior draws the run's discriminator rates most real; needs "
            "the run or a checkpoint; 2 to 6 minutes at 128 px on 2 cores) or neutral (means and spreads onto the "
            "draws whose translations keep white, grey and black pixels as they are) or colour (onto the draws best "
            "at that and at keeping out of hues the target's images lack) [default: posterior]",
            show_default=False,
        ),
    ] = None,
    temperature: Annotated[
        Optional[str],
        typer.Option(
            "--temperature",
            help="the export's model.sample_temperature, e.g. one chosen on the validation split; or one per target "
            "domain, DOMAIN=T,DOMAIN=T (model.sample_temperature_by_domain) [default: the run's]",
            show_default=False,
        ),
    ] = None,
    sweep: Annotated[
        Optional[Path],
        typer.Option(
            "--sweep",
            help="the validation sweep's sweep.json --temperature was chosen from (each value one of its rows)",
        ),
    ] = None,
    keep_plain: Annotated[
        Optional[float],
        typer.Option(
            "--keep-plain",
            help="the export's model.keep_plain: how much of each white, grey or black input pixel its translations "
            "keep, 0 to 1 [default: the run's]",
            show_default=False,
        ),
    ] = None,
    colour_gate: Annotated[
        Optional[str],
        typer.Option(
            "--colour-gate",
            help="redraw random attributes whose translation would give the subject a colour outside the region "
            "holding this share of the target's training photos (0 < Q <= 1; or one per target domain, "
            "DOMAIN=Q,DOMAIN=Q, the others ungated; fitted on --data's training images, 4 to 6 minutes at 128 px on "
            "2 cores; 0 removes a gate) [default: the source's gate, if any]",
            show_default=False,
        ),
    ] = None,
    gate_by: Annotated[
        Optional[str],
        typer.Option(
            "--gate-by",
            help="what --colour-gate keeps: region (colours inside the region of that share of the target's photos) "
            "or chroma (at least as much of the target's hue as that share of the translations the target's own "
            "training images' encoded attributes give, inside the central 90% of the photos' lightness; about 10 "
            "minutes at 128 px on 2 cores) [default: region]",
            show_default=False,
        ),
    ] = None,
) -> None:
    """Write the test-time networks (model.safetensors) and config.yaml of a run into a folder, nothing else."""
    from ..errors import InferenceError
    from ..inference.model_files import export_model, refit_given, sweep_command

    extra = {}
    for item in meta or []:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise InferenceError(f"--meta {item!r}: write KEY=VALUE")
        try:  # bytes that are not UTF-8 (a file name in another encoding) reach Python as surrogates
            item.encode("utf-8")
        except UnicodeEncodeError:
            raise InferenceError(
                f"--meta {item!r}: not UTF-8 text, which the weights' metadata stores; write it in UTF-8"
            ) from None
        if key.strip() in extra:
            raise InferenceError(f"--meta {key.strip()!r} given twice; give each key once")
        extra[key.strip()] = value
    if format_ == ExportFormat.onnx:
        from .onnx import export_onnx_command

        refitting = refit_prior or refit_given(data, refit_images, refit_strength, refit_by)
        if refitting or any(v is not None for v in (temperature, sweep, keep_plain, colour_gate, gate_by)):
            raise InferenceError(
                "--refit-prior, --temperature, --keep-plain, --colour-gate and --gate-by belong to a safetensors "
                "export; export with them first, then export that folder with --format onnx"
            )

        return export_onnx_command(run, out, int8=int8, meta=extra, no_ema=no_ema, force=force)
    result = export_model(
        run,
        out,
        int8=int8,
        extra_metadata=extra,
        ema=not no_ema,
        force=force,
        refit_prior=refit_prior,
        data=data,
        refit_images=refit_images,
        refit_strength=refit_strength,
        temperature=temperature,
        sweep=sweep,
        refit_by=refit_by,
        keep_plain=keep_plain,
        colour_gate=colour_gate,
        gate_by=gate_by,
    )
    console.print(f"exported {result.source.describe()}", markup=False, highlight=False, soft_wrap=True)
    console.print(
        f"wrote {result.weights} ({result.parameters:,} parameters, {result.bytes / 1e6:.1f} MB) and {result.config}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
    if refit_prior and temperature is None:
        console.print(
            f"prior refitted: choose its --temperature with {sweep_command(result.source.cfg, result.out)}",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"use it with: gmdrit translate IMAGE --domain {result.source.cfg.data.domains[-1]} "
        f"--checkpoint {result.weights}",
        markup=False,
        highlight=False,
        soft_wrap=True,
    )
