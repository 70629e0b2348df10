"""CLI command `gmdrit eval`: the metrics the report could not compute.

Parsing and rendering only; the work is in :mod:`gmdrit_cli.evaluation.evaluate` and
:mod:`gmdrit_cli.evaluation.metrics`.
"""

from enum import Enum
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.table import Table

from ..evaluation.metrics import DEFAULT_METRICS, METRICS, PAIRED_DEFAULT_METRICS, real_line_label
from .app import app, console, run_with_stage_progress

_WIDTH = max(len(name) for name in METRICS)
_METRIC_LIST = "\n".join(f"  {m.name:{_WIDTH}s} {m.description}" for m in METRICS.values())


class Mode(str, Enum):
    latent = "latent"
    reference = "reference"


class Split(str, Enum):
    test = "test"
    val = "val"


class LpipsVersion(str, Enum):
    v01 = "0.1"
    v00 = "0.0"


def _columns(metrics: list[str]) -> list:
    """The table columns of the selected metrics (each evaluator declares its own), in their order."""
    found = [METRICS[name].evaluator_class.table_columns.get(name) for name in metrics]
    return sorted((c for c in found if c is not None), key=lambda c: c.order)


def _temperature(report: dict) -> str:
    settings = report["settings"]
    t, own = settings.get("temperature", 1.0), settings.get("temperature_by_domain")
    if own:  # the model's defaults differ by target domain
        rest = {task["target"] for task in report.get("tasks", [])} - set(own)
        by_target = ", ".join(f"into {name} {value:g}" for name, value in own.items())
        return f" at temperature {by_target}" + (f", else {t:g}" if rest else "")
    return f" at temperature {t:g}" if t != 1.0 else ""


def render(report: dict) -> None:
    """The Rich table of one eval report: one row per task, the mean, and the real-vs-real lines."""
    metrics = report["settings"]["metrics"]
    columns = _columns(metrics)
    if columns:
        table = Table(
            "task",
            "outputs",
            *(c.header for c in columns),
            header_style="bold",
            title=f"{report['model']['family']} {report['model']['config']} "
            f"(iteration {report['model']['iteration']}), {report['settings']['mode']} mode"
            f"{_temperature(report)}, "
            f"{report['settings']['samples_per_input']} outputs per input",
        )
        for row in report["tasks"]:
            table.add_row(
                f"{row['source']} → {row['target']}", str(row["outputs"]), *(c.cell(row, False) for c in columns)
            )
        table.add_row("mean", "", *(c.mean(report["mean"], False) for c in columns), style="bold")
        if report["reference"]:
            table.add_section()
            for name, row in report["reference"].items():
                table.add_row(
                    real_line_label(name, report["settings"]),
                    str(row["n_test"]),
                    *(c.cell(row, True) for c in columns),
                    style="dim",
                )
            table.add_row(
                "real: mean", "", *(c.mean(report["reference_mean"], True) for c in columns), style="dim bold"
            )
        console.print(table)
    cluster = report.get("cluster")
    if cluster and "skipped" in cluster:
        console.print(f"cluster: skipped ({cluster['skipped']})", markup=False)
    elif cluster:
        usage = ", ".join(f"{u:.2f}" for u in cluster["component_usage"])
        console.print(
            f"cluster ({cluster['images']} test images, K={cluster['components']}): accuracy "
            f"{cluster['accuracy']:.3f} (Hungarian), NMI {cluster['nmi']:.3f}, domain accuracy "
            f"{cluster['domain_accuracy']:.3f}, component usage [{usage}]",
            markup=False,
        )
    for name, row in (report.get("reconstruction") or {}).items():
        values = ", ".join(f"{k} {row[k]:.4f}" for k in ("recon_mse", "recon_msssim") if k in row)
        console.print(f"reconstruction {name} ({row['images']} test images): {values}", markup=False)
    for key in ("inception", "lpips_backbone"):
        w = report["weights"].get(key)
        if w:
            console.print(f"{key} weights: {w['path']} (sha256 {w['sha256'][:16]}…)", markup=False, style="dim")
    clf = report["protocols"].get("domain_accuracy", {}).get("classifier")
    if clf:
        how = "loaded from cache" if clf["loaded_from_cache"] else f"trained in {clf['training_seconds']:.0f} s"
        acc = ", ".join(f"{d} {v:.3f}" for d, v in clf["real_test_accuracy"].items())
        junk = max(clf["held_out_junk_called_a_domain"].values())
        console.print(
            f"domain classifier ({how}, {clf['folder']}): accuracy on all real test images {acc}; "
            f"held-out junk called a domain: at most {junk:.3f} per kind",
            markup=False,
            style="dim",
        )
    diversity = [name for key, name in (("lpips", "LPIPS"), ("diversity_msssim", "1-MS-SSIM")) if key in metrics]
    if diversity and report["reference"]:
        console.print(
            f"{' and '.join(diversity)} of the real lines: set-level (random pairs of distinct test "
            f"images), not per input.",
            style="dim",
        )


@app.command("eval", epilog="Metrics (--metrics, comma-separated):\n\n\b\n" + _METRIC_LIST)
def eval_(
    run: Annotated[
        Optional[Path],
        typer.Argument(
            help="run folder (latest valid checkpoint), checkpoint folder, or exported model.safetensors "
            "(default: the pretrained model inside the package)",
            show_default=False,
        ),
    ] = None,
    data: Annotated[Optional[str], typer.Option("--data", help="dataset root (default: the run's data.root)")] = None,
    metrics: Annotated[
        Optional[str],
        typer.Option(
            "--metrics",
            help=f"comma-separated subset of {','.join(METRICS)} [default: {','.join(DEFAULT_METRICS)}; "
            f"paired models (BicycleGAN): {','.join(PAIRED_DEFAULT_METRICS)}]",
            show_default=False,
        ),
    ] = None,
    samples_per_input: Annotated[
        Optional[int],
        typer.Option(
            "--samples-per-input",
            help="outputs per test image and target domain [default: 10; paired models: 20, BicycleGAN's protocol]",
            show_default=False,
        ),
    ] = None,
    mode: Annotated[
        Mode,
        typer.Option(
            "--mode", help="latent: random attributes from the prior; reference: attributes of target test images"
        ),
    ] = Mode.latent,
    split: Annotated[
        Split,
        typer.Option(
            "--split",
            help="test: the test images; val: the training images held out by data.val_fraction (choose "
            "settings here, report them on test)",
        ),
    ] = Split.test,
    temperature: Annotated[
        Optional[str],
        typer.Option(
            "--temperature",
            help="latent mode: scale of the prior's standard deviation (<1: more faithful, >1: more "
            "diverse) [default: the model's model.sample_temperature, 1 unless set, or its "
            "model.sample_temperature_by_domain entry for each target]. Several "
            "values (0.7,0.8,0.9,1.0): one evaluation each, one row each, and the choice (highest "
            "value with domain_accuracy >= --min-accuracy in every task); with --split val it is "
            "stored in RUN/sampling.json as the run's default",
            show_default=False,
        ),
    ] = None,
    min_accuracy: Annotated[
        Optional[float],
        typer.Option(
            "--min-accuracy",
            help="temperature sweep (several --temperature values): the domain accuracy every task must reach "
            "[default: 0.9]",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[int, typer.Option("--seed", help="seed of attributes, references, KID subsets, NDB bins")] = 0,
    out: Annotated[Optional[Path], typer.Option("--out", help="output folder (default RUN/eval/iter_N-MODE)")] = None,
    inception_weights: Annotated[
        Optional[Path],
        typer.Option(
            "--inception-weights",
            help="torch-fidelity InceptionV3 weights (weights-inception-2015-12-05-6726825d.pth) for offline FID/KID",
        ),
    ] = None,
    lpips_version: Annotated[
        LpipsVersion,
        typer.Option(
            "--lpips-version", help="LPIPS linear weights: 0.1 (current) or 0.0 (BicycleGAN/MUNIT-era numbers)"
        ),
    ] = LpipsVersion.v01,
    lpips_backbone_weights: Annotated[
        Optional[Path],
        typer.Option(
            "--lpips-backbone-weights", help="torchvision AlexNet weights (alexnet-owt-7be5be79.pth) for offline LPIPS"
        ),
    ] = None,
    ndb_bins: Annotated[
        Optional[int],
        typer.Option(
            "--ndb-bins",
            help="NDB/JSD: K, the number of K-means bins [default: 50, fewer when the target domain "
            "has under 500 training images: at least 10 per bin]",
            show_default=False,
        ),
    ] = None,
    ndb_size: Annotated[
        int, typer.Option("--ndb-size", help="NDB/JSD: images are downscaled to this many pixels square")
    ] = 32,
    ndb_alpha: Annotated[
        float, typer.Option("--ndb-alpha", help="NDB: significance level of the per-bin z-test")
    ] = 0.05,
    kid_subset_size: Annotated[
        int, typer.Option("--kid-subset-size", help="KID: samples per subset (lowered to the smaller set)")
    ] = 1000,
    kid_subsets: Annotated[int, typer.Option("--kid-subsets", help="KID: number of random subsets")] = 100,
    max_inputs: Annotated[
        int, typer.Option("--max-inputs", help="use only the first N test images of each domain (0 = all)")
    ] = 0,
    batch_size: Annotated[int, typer.Option("--batch-size", help="generated images per forward pass")] = 32,
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or auto")] = "auto",
    no_reference: Annotated[bool, typer.Option("--no-reference", help="skip the real-vs-real reference line")] = False,
    threads: Annotated[int, typer.Option("--threads", help="CPU threads for torch (0 = torch's default)", min=0)] = 0,
    classifier_cache: Annotated[
        Optional[Path],
        typer.Option(
            "--classifier-cache",
            help=(
                "domain_accuracy: folder of cached domain classifiers (default $GMDRIT_CACHE/domain_classifier or "
                "~/.cache/gmdrit/domain_classifier)"
            ),
        ),
    ] = None,
    no_ema: Annotated[
        bool,
        typer.Option(
            "--no-ema", help="evaluate the raw weights instead of their EMA copy (runs trained with train.ema_beta > 0)"
        ),
    ] = False,
) -> None:
    """Translate every test image into every other domain and compute FID, KID, LPIPS, NDB, JSD, cluster scores
    (and, when named, domain_accuracy and diversity_msssim).

    Outputs are PNGs under --out; eval.json there records every number, setting, library version,
    weight hash and seed. Missing weights (offline) stop the command before any work, naming the file
    and the flag that takes it; GMDRIT_OFFLINE=1 forbids downloads.
    """
    from ..evaluation.evaluate import EvalOptions, evaluate
    from ..evaluation.temperature_sweep import parse_temperatures, sweep, sweep_threshold

    if threads:
        import torch

        from ..limits import MAX_THREADS, bounded

        torch.set_num_threads(
            bounded(threads, "--threads", 0, MAX_THREADS, "more threads than cores only slow torch down")
        )
    temperatures = parse_temperatures(temperature) if temperature is not None else []
    min_accuracy = sweep_threshold(min_accuracy, temperatures)
    options = EvalOptions(
        run=run,
        data=data,
        metrics=metrics,
        samples_per_input=samples_per_input,
        mode=mode.value,
        split=split.value,
        temperature=temperatures[0] if temperatures else None,
        seed=seed,
        out=out,
        inception_weights=inception_weights,
        lpips_version=lpips_version.value,
        lpips_backbone_weights=lpips_backbone_weights,
        ndb_bins=ndb_bins,
        ndb_size=ndb_size,
        ndb_alpha=ndb_alpha,
        kid_subset_size=kid_subset_size,
        kid_subsets=kid_subsets,
        max_inputs=max_inputs,
        batch_size=batch_size,
        device=device,
        reference_line=not no_reference,
        classifier_cache=classifier_cache,
        ema=not no_ema,
    )
    if len(temperatures) > 1:
        result = run_with_stage_progress(lambda update: sweep(options, temperatures, min_accuracy, update))
        render_sweep(result)
        return
    result = run_with_stage_progress(lambda update: evaluate(options, update))
    render(result.report)
    for note in result.notes:
        console.print(f"note: {note}", markup=False)
    console.print(f"outputs in {result.out}; report {result.json_path}", markup=False)


def render_sweep(result) -> None:
    """One row per temperature: each task's figures of the columns the metrics declare, then the choice."""
    first = result.rows[0].result.report
    columns = _columns(first["settings"]["metrics"])
    tasks = [f"{t['source']}→{t['target']}" for t in first["tasks"]]
    table = Table(
        "temperature",
        *(f"{c.header} {task}" for c in columns for task in tasks),
        header_style="bold",
        title=f"{first['model']['family']} {first['model']['config']} (iteration "
        f"{first['model']['iteration']}), {first['settings']['split']} split, "
        f"{first['settings']['samples_per_input']} outputs per input",
    )
    for row in result.rows:
        report = row.result.report
        mark = " ◀" if row.temperature == result.chosen else ""
        table.add_row(f"{row.temperature:g}{mark}", *(c.cell(task, False) for c in columns for task in report["tasks"]))
    if first["reference"]:
        table.add_section()
        table.add_row(
            "real",
            *(c.cell(first["reference"][task["target"]], True) for c in columns for task in first["tasks"]),
            style="dim",
        )
    console.print(table)
    if result.chosen is not None:
        console.print(f"chosen: temperature {result.chosen:g} ({result.reason})", markup=False)
    else:
        console.print(f"{result.reason}", markup=False)
    if result.stored is not None:
        console.print(
            f"stored in {result.stored}: translate, eval and export of this run now sample at {result.chosen:g}",
            markup=False,
        )
    for note in result.notes:
        console.print(f"note: {note}", markup=False)
    console.print(f"sweep report {result.json_path}", markup=False)
