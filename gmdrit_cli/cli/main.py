"""The `gmdrit` command line: parse, load the config, call one core function, render the result.

Only the CLI modules (this package: ``app.py``, this one and one module per command group) import typer and rich.
Core code
raises ``GmdritError``; here it becomes one line on stderr and exit code 1.
"""

import json
import signal
import sys
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table
from rich.text import Text

from ..errors import GmdritError
from .app import PresetOption, SetOption, app, console, err_console, run_with_stage_progress  # noqa: F401


@app.command()
def presets() -> None:
    """List the presets with a one-line description each."""
    from ..config.schema import list_presets

    table = Table("preset", "description", box=None, header_style="bold")
    for name, description in list_presets().items():
        table.add_row(name, description)
    console.print(table)


@app.command()
def models() -> None:
    """List the model families."""
    from ..families import MODEL_FAMILIES

    table = Table("family", "description", box=None, header_style="bold")
    for name, cls in MODEL_FAMILIES.items():
        table.add_row(name, cls.description)
    console.print(table)


def _loss_text(losses: dict[str, float] | None, keys: tuple[str, ...]) -> str:
    if not losses:
        return ""
    return "  ".join(f"{k} {losses[k]:.3f}" for k in keys if k in losses)


def _fit(run) -> None:
    """Run ``run.fit`` under a progress bar and say how it ended (and how to continue it). Under torchrun
    only rank 0 talks; the others train silently and exit alike."""
    cfg = run.cfg
    run.take_lock()  # a folder another process writes is refused before anything is said
    if run.iteration >= run.end_iteration:  # e.g. train.max_iters below where the run already is
        run.release_lock()
        if run.processes.is_writer:
            console.print(
                f"{run.run_dir} is already at iteration {run.iteration}, the end of this run "
                f"(train.max_iters={cfg.train.max_iters}); nothing to train: pass a higher "
                f"--set train.max_iters=N to continue it",
                markup=False,
            )
        return
    if not run.processes.is_writer:
        result = run.fit()
        if not result.finished and result.stopped != "time budget":
            raise typer.Exit(128 + getattr(signal, result.stopped, 15))
        return
    if run.resumed_from is not None:
        console.print(f"resuming {run.run_dir} from {run.resumed_from.name} (iteration {run.iteration})")
    precision = {None: "fp32"}.get(run.engine.amp_dtype, str(run.engine.amp_dtype).removeprefix("torch."))
    where = (
        f"{run.processes.world} processes ({run.processes.backend}, global batch {cfg.train.batch_size})"
        if run.processes.world > 1
        else str(run.device)
    )
    console.print(
        f"training {cfg.model.family} ({cfg.name}) on {where} ({precision}, speed.amp={cfg.speed.amp}: "
        f"{run.engine.amp_reason}) into {run.run_dir}",
        markup=False,
    )
    if run.data_cache is not None:
        c = run.data_cache
        console.print(
            f"data: {'copied' if c.copied else 'reusing the copy of'} {c.source} ({c.files} files, "
            f"{c.size / 1e6:.1f} MB) {'to' if c.copied else 'in'} {c.path}",
            markup=False,
        )
    for span in run.engine.spans:
        console.print(
            f"phase {span.index + 1} {span.phase.name}: iterations {span.start}-{span.end - 1} "
            f"({span.phase.epochs} epochs of {span.iterations_per_epoch})",
            markup=False,
        )
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    shown = ("loss_eg", "loss_g_alone", "dis_encoded", "dis_random", "loss", "mse", "msssim")
    columns = (
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[rate]}"),
        TimeElapsedColumn(),
        TextColumn("eta"),
        TimeRemainingColumn(),
        TextColumn("{task.fields[losses]}"),
    )
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("train", total=run.end_iteration, completed=run.iteration, rate="", losses="")

        def on_progress(iteration: int, losses: dict[str, float] | None) -> None:
            speed = progress.tasks[task].speed
            fields = {"rate": f"{speed:.2f} it/s" if speed else ""}
            if losses:
                fields["losses"] = _loss_text(losses, shown)
            progress.update(task, completed=iteration, **fields)

        result = run.fit(on_progress)
    ckpt = result.checkpoint.name if result.checkpoint else "-"
    if result.finished:
        console.print(
            f"done: iteration {result.iterations} after {result.seconds:.0f} s; "
            f"run folder {result.run_dir} (checkpoint {ckpt})",
            markup=False,
        )
        return
    console.print(
        f"stopped ({result.stopped}) at iteration {result.iterations}; checkpoint {ckpt} saved. "
        f"Continue with: gmdrit resume {result.run_dir}",
        markup=False,
    )
    if result.stopped != "time budget":
        raise typer.Exit(128 + getattr(signal, result.stopped, 15))


@app.command()
def train(
    preset: PresetOption = "quickstart",
    set_: SetOption = None,
    run_dir: Annotated[
        Optional[Path], typer.Option("--run-dir", help="run folder (default runs/<preset name>)")
    ] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="start a new run in a new folder instead of continuing")
    ] = False,
    time_budget: Annotated[
        Optional[str],
        typer.Option("--time-budget", help="stop with a checkpoint before this much wall time, e.g. 3h50m"),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="print the resolved config and parameter counts, then exit")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="with --dry-run: print JSON")] = False,
) -> None:
    """Train a model from a preset; continues the run folder's checkpoint if there is one."""
    from ..config.schema import config_to_dict, dump_config, load_config
    from ..errors import ConfigError
    from ..training.trainer import describe_model, open_run

    if as_json and not dry_run:
        raise ConfigError("--json prints the config of --dry-run; add --dry-run, or leave --json out to train")
    overrides = list(set_ or []) + ([f"train.time_budget={time_budget}"] if time_budget else [])
    cfg = load_config(preset, overrides)
    if dry_run:
        counts = describe_model(cfg)
        if as_json:
            print(json.dumps({"config": config_to_dict(cfg), "params": counts}, indent=1))
            return
        console.print(dump_config(cfg), highlight=False, markup=False)
        table = Table("network", "parameters", box=None, header_style="bold")
        for name, count in counts.items():
            table.add_row(name, f"{count:,}")
        table.add_row("total", f"{sum(counts.values()):,}", style="bold")
        console.print(table)
        return
    _fit(open_run(cfg, run_dir or Path("runs") / cfg.name, fresh=fresh))


@app.command()
def resume(
    path: Annotated[Path, typer.Argument(help="run folder or checkpoint folder")],
    set_: SetOption = None,
    time_budget: Annotated[
        Optional[str],
        typer.Option("--time-budget", help="stop with a checkpoint before this much wall time, e.g. 3h50m"),
    ] = None,
) -> None:
    """Continue a run exactly where it stopped (only max_iters, time budget, logging and saving may change)."""
    from ..training.trainer import resume_run

    overrides = list(set_ or []) + ([f"train.time_budget={time_budget}"] if time_budget else [])
    _fit(resume_run(path, overrides))


# Commands of the other CLI modules register themselves on `app` (from cli_app) when imported.
from . import bench as cli_bench  # noqa: E402,F401  (benchmark)
from . import data as cli_data  # noqa: E402,F401  (data list, data download)
from . import eval as cli_eval  # noqa: E402,F401  (eval)
from . import infer as cli_infer  # noqa: E402,F401  (translate, interpolate, export)
from . import mixture as cli_mixture  # noqa: E402,F401  (mixture)
from . import report as cli_report  # noqa: E402,F401  (report)
from . import webapp as cli_webapp  # noqa: E402,F401  (app: the web page)


def main() -> None:
    """Console entry point: user errors become one line and exit code 1. Ends the process."""
    _end_process(_run_app())


class _Terminated(SystemExit):
    """The unwinding of :func:`_terminate` (told apart from a command's own exit, to say why it stopped)."""


def _terminate(signum, frame) -> None:
    """SIGTERM / SIGHUP outside training: unwind like an exception, so every ``finally`` removes its temporary
    files (a half-written output, a dataset being built); training installs its own handlers meanwhile."""
    raise _Terminated(128 + signum)


class _CtrlC:
    """Whether Ctrl+C was pressed during this command (see :func:`_ctrl_c`)."""

    pressed = False


def _ctrl_c(signum, frame) -> None:
    """SIGINT as Python's default (KeyboardInterrupt), remembered: torch's import swallows a KeyboardInterrupt that
    lands while it imports numpy, and the command then fails later in some half-imported module; an exception
    after a Ctrl+C is reported as the interruption it is, not as a traceback."""
    _CtrlC.pressed = True
    raise KeyboardInterrupt


def _run_app() -> int:
    for name in ("SIGTERM", "SIGHUP"):
        if hasattr(signal, name):
            signal.signal(getattr(signal, name), _terminate)
    _CtrlC.pressed = False
    signal.signal(signal.SIGINT, _ctrl_c)
    try:
        _refuse_empty_values(sys.argv[1:])
        _refuse_unknown_homes(sys.argv[1:])
        app()
    except SystemExit as exc:
        if isinstance(exc, _Terminated):
            err_console.print(
                f"stopped by signal {exc.code - 128}: what was complete is kept, nothing half-written is left"
            )
            return exc.code
        if exc.code == 130 and _CtrlC.pressed:  # typer turns a KeyboardInterrupt into a silent exit 130
            err_console.print("interrupted")
            return 130
        if exc.code is None or isinstance(exc.code, int):
            return exc.code or 0
        print(exc.code, file=sys.stderr)
        return 1
    except GmdritError as exc:
        _error_line(exc, str(exc))
        return 1
    except OSError as exc:  # the commands name the path where they can; this is the safety net
        from ..outputs import os_error_line

        _error_line(exc, os_error_line(exc, "cannot read or write a file", "choose another path"))
        return 1
    except (KeyboardInterrupt, Exception) as exc:
        if isinstance(exc, KeyboardInterrupt) or _CtrlC.pressed:  # any exception after a Ctrl+C is its doing
            err_console.print("interrupted")
            return 130
        if not (isinstance(exc, RuntimeError) and "home directory" in str(exc)):
            raise
        # Path.expanduser of ~NAME in a value no argument carried (a preset file, a config): the safety net
        _error_line(exc, "a path starts with ~NAME for a user this machine does not have; write it in full")
        return 1
    return 0


def _refuse_empty_values(args: list[str]) -> None:
    """No option or argument takes an empty value: as a path it would read as ``.`` (``--out ''``, an unset
    shell variable, wrote into the current folder; ``train --run-dir ''`` trained there)."""
    from ..errors import GmdritError

    for i, arg in enumerate(args):
        if arg.startswith("--") and arg.endswith("=") and len(arg) > 3:
            where = f"in {arg}"
        elif arg == "":
            where = f"after {args[i - 1]}" if i else "as the command"
        else:
            continue
        raise GmdritError(
            f"an empty value ('') {where}; give one (an unset shell variable expands to nothing; "
            f"for the current folder write .)"
        )


#: environment variables gmdrit reads as paths
PATH_VARIABLES = ("GMDRIT_CACHE",)


def _refuse_unknown_homes(args: list[str]) -> None:
    """A path that starts with ``~NAME`` for a user this machine does not have (a typo of ``~/``, a path copied
    from another machine) makes ``Path.expanduser`` raise deep inside a command: named here, before any work, in
    every argument (and the value of ``--opt=VALUE`` or ``--set key=VALUE``) and the path variables."""
    import os
    from pathlib import Path

    from ..errors import GmdritError

    given = [(a, f"argument {a!r}") for a in args]
    given += [(a.partition("=")[2], f"argument {a!r}") for a in args if "=" in a]
    given += [(os.environ[v], f"{v}={os.environ[v]!r}") for v in PATH_VARIABLES if v in os.environ]
    for value, where in given:
        if not value.startswith("~") or value.startswith("~/") or value == "~":
            continue
        try:
            Path(value).expanduser()
        except RuntimeError:
            name = value[1:].split("/", 1)[0]
            raise GmdritError(
                f"{where}: this machine has no user {name!r} whose home ~{name} could be; write the path in full "
                f"(or ~/ for your own home)"
            ) from None


def _error_line(exc: BaseException, text: str) -> None:
    """Print ``error: text`` on stderr; under torchrun only rank 0 does (every process meets the same
    errors), unless the error is about this process alone."""
    import os

    from ..errors import speaks
    from ..limits import whole_number

    # a process is one of a group only when both torchrun variables are set (training.distributed); a RANK left
    # in a shell by something else must not silence a plain command's errors
    rank = os.environ.get("RANK", "0") if "WORLD_SIZE" in os.environ else "0"
    if not speaks(exc, whole_number(rank) or 0):
        return
    err_console.print(Text.assemble(("error: ", "bold red"), text), soft_wrap=True, highlight=False)


def _end_process(code: int) -> None:
    """Exit with ``code``. Python's orderly shutdown after torch was imported takes about 0.45 s on 2 cores
    (tearing down torch's modules), a quarter of a whole `gmdrit translate`; once the command has returned,
    everything it wrote is closed (atomic writes are fsynced and renamed), so when nothing else runs (one
    thread, no child processes) the exit handlers run (``atexit``: a process group's teardown, coverage, the
    logs), the streams are flushed and the process ends without tearing down the modules."""
    import atexit
    import os
    import threading

    children = "multiprocessing" in sys.modules and sys.modules["multiprocessing"].active_children()
    if "torch" in sys.modules and threading.active_count() == 1 and not children:
        atexit._run_exitfuncs()  # what the handlers do matters; only the module teardown is slow
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    sys.exit(code)
