"""`gmdrit eval`: translate every test image into every other domain and score the translations.

Core code only (no typer, no rich); the CLI (``cli/eval.py``) renders the :class:`EvalResult`.

For each task (source -> target, every ordered pair of different domains) every test image of the
source (resized to ``data.resize`` and centre-cropped to ``data.crop``, the model's test input) is
translated ``samples_per_input`` times, with random attributes (``latent``: the model's prior for the
target; GM-DRIT: a component of the target, z ~ p(z|y)) or with the attributes of test images of the
target (``reference``: distinct references per input, drawn at random). The outputs are saved as PNG
under ``out/<source>2<target>/`` and every metric is computed from exactly those 8-bit images:

* fid / kid: torch-fidelity InceptionV3 features of the outputs vs the target's *training* images
  (preprocessed like the test inputs, so both sides have the model's resolution);
* lpips: mean over inputs of the mean LPIPS over all pairs of that input's outputs;
* ndb / jsd: bins fitted on the target's training images, queried with the outputs;
* cluster (GM-DRIT): argmax q(y|x) on every test image vs its domain;
* domain_accuracy: the fraction of outputs that a CNN trained on the training images (cached, see
  ``metrics/domain_classifier.py``) assigns to the target, rather than to another domain or "neither";
* diversity_msssim: mean over inputs of the mean 1 - MS-SSIM over all pairs of that input's outputs.

Each metric is an :class:`~gmdrit_cli.evaluation.metrics.evaluator.Evaluator` named by its registry entry
(``gmdrit_cli.evaluation.metrics.METRICS``); this module only loads, translates and assembles the report.

The reference line ("real") scores the target's test images against its training images the same way
(FID, KID, NDB, JSD; LPIPS and 1 - MS-SSIM over random pairs of distinct test images; the classifier's
accuracy on them), the floor each number is read against. ``eval.json`` in ``out`` records every
setting, library version, weight hash and seed.
"""

from __future__ import annotations

import contextlib
import logging
import platform
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from .. import __version__, atomic, jsonfile
from ..config.schema import TEMPERATURE_RANGE, Config, by_domain
from ..errors import LimitError
from ..families.base import ModelFamily
from ..inference.model_files import untrained_note
from ..limits import MAX_EVAL_BATCH, MAX_SAMPLES_PER_INPUT, MAX_TEMPERATURE, bounded, finite
from ..limits import seed as check_seed
from ..outputs import claimed_folder
from ..training.checkpoint import run_of_latest
from .metrics import DEFAULT_METRICS, METRICS, PAIRED_DEFAULT_METRICS, MetricError, parse_metric_names
from .metrics.eval_diversity import REAL_PAIRS as REAL_LPIPS_PAIRS  # noqa: F401  (its old home)
from .metrics.evaluator import EvalContext, Evaluator, task_temperature, to_float
from .metrics.images import PreprocessedImages, open_images
from .metrics.images import quantise as _quantise

log = logging.getLogger("gmdrit")

MODES = ("latent", "reference")
SAMPLES_PER_INPUT = 10
#: BicycleGAN's diversity protocol: 20 outputs per input (the official evaluation script; docs/bicyclegan.md)
PAIRED_SAMPLES_PER_INPUT = 20
REPORT_FORMAT = "gmdrit-eval/1"

ProgressCallback = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class EvalOptions:
    run: Path | str | None  # None: the pretrained model inside the package
    data: str | None = None
    metrics: str | list[str] | None = None  # None: DEFAULT_METRICS (paired families: PAIRED_DEFAULT_METRICS)
    samples_per_input: int | None = None  # None: 10 (paired families: 20, BicycleGAN's protocol)
    mode: str = "latent"
    split: str = "test"  # test, or val: the images held out of training (data.val_fraction)
    temperature: float | None = None  # latent mode: scale of the prior's std (None: the model's default)
    #: filled in from the model when --temperature is not given: the default of each target domain that has its
    #: own (model.sample_temperature_by_domain), by name
    temperature_by_domain: dict[str, float] | None = None
    seed: int = 0
    out: Path | str | None = None
    inception_weights: Path | str | None = None
    lpips_version: str = "0.1"
    lpips_backbone_weights: Path | str | None = None
    ndb_bins: int | None = None  # None: 50, fewer when the target has under 10 training images per bin
    ndb_size: int = 32
    ndb_alpha: float = 0.05
    kid_subset_size: int = 1000
    kid_subsets: int = 100
    max_inputs: int = 0  # test images per domain (0 = all)
    batch_size: int = 32  # generated images per forward pass
    device: str = "auto"
    reference_line: bool = True  # real test vs real train
    classifier_cache: Path | str | None = None  # domain classifier cache (None: $GMDRIT_CACHE or ~/.cache/gmdrit)
    ema: bool = True  # the EMA copy of the weights where the run kept one


@dataclass
class EvalResult:
    report: dict
    json_path: Path
    out: Path
    notes: list[str] = field(default_factory=list)

    @property
    def metrics(self) -> list[str]:
        return self.report["settings"]["metrics"]


# ------------------------------------------------------------------------------------------ helpers


def _versions() -> dict[str, str]:
    out = {"gmdrit": __version__, "python": platform.python_version()}
    for dist in (
        "torch",
        "torchvision",
        "torch-fidelity",
        "lpips",
        "pytorch-msssim",
        "safetensors",
        "scipy",
        "numpy",
        "pillow",
    ):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _save_png(u8: torch.Tensor, path: Path) -> None:
    Image.fromarray(u8.permute(1, 2, 0).numpy()).save(path, format="PNG")


def _default_out(run: Path | None, iteration: int | None, mode: str, split: str = "test") -> Path:
    mode = mode if split == "test" else f"{mode}-{split}"
    if run is None:  # the pretrained model: never write into the installed package
        return (
            Path("runs") / "pretrained" / "eval" / (f"iter_{iteration:07d}-{mode}" if iteration is not None else mode)
        )
    run = Path(run).expanduser()
    run = run_of_latest(run) or run  # RUN/checkpoints/latest: the run's own eval folder, not one in checkpoints/
    if run.is_file():
        base = run.parent
    elif (run / "state.json").is_file() and run.parent.name == "checkpoints":
        base = run.parent.parent
    else:
        base = run
    tag = f"iter_{iteration:07d}-{mode}" if iteration is not None else mode
    return base / "eval" / tag


@contextlib.contextmanager
def eval_folder(wanted: Path, notes: list[str]) -> Iterator[Path]:
    """The folder this eval writes, held while it does: ``wanted`` when it is new or empty, else the first free
    ``wanted-2``, ``wanted-3``, ... (an earlier eval's results, or those of an eval writing at the same time, are
    never replaced; a note says where this one went)."""
    with claimed_folder(wanted) as out:
        if out != wanted:
            held = "earlier results" if (wanted / "eval.json").exists() else "files (or another eval is writing there)"
            notes.append(f"{wanted} holds {held}, which are kept: this eval went to {out}")
        yield out


def check_eval_numbers(o: EvalOptions) -> None:
    """The eval's numbers: finite, and the counts within what one run can hold (a :class:`MetricError`)."""
    try:
        _check_numbers(o)
    except LimitError as exc:
        raise MetricError(str(exc)) from None


def _check_numbers(o: EvalOptions) -> None:
    if o.temperature is not None:
        finite(o.temperature, "--temperature", high=MAX_TEMPERATURE, why="1 = the model's prior")
    finite(o.ndb_alpha, "--ndb-alpha", high=1, why="a significance level")
    bounded(
        o.samples_per_input,
        "--samples-per-input",
        1,
        MAX_SAMPLES_PER_INPUT,
        "every output is a PNG per test image and task",
    )
    check_seed(o.seed)
    bounded(
        o.ndb_size,
        "--ndb-size",
        1,
        256,
        "NDB bins images downscaled to a few pixels (32 is the paper's); memory grows with its square",
    )
    bounded(o.kid_subsets, "--kid-subsets", 1, 10_000, "each subset is one more kernel estimate; 100 is the usual")
    bounded(o.batch_size, "--batch-size", 1, MAX_EVAL_BATCH, "generated images per forward pass; memory grows with it")


# ------------------------------------------------------------------------------------------ evaluate


def _check_options(o: EvalOptions, metrics: list[str]) -> None:
    if o.mode not in MODES:
        raise MetricError(f"--mode {o.mode!r}: choose latent or reference")
    check_eval_numbers(o)
    if o.split not in ("test", "val"):
        raise MetricError(f"--split {o.split!r}: choose test or val")
    if o.temperature is not None and o.temperature != 1.0 and o.mode != "latent":
        raise MetricError("--temperature scales random attributes: use it with --mode latent")
    for cls, names in _evaluator_classes(metrics):
        cls.check_options(o, names)
    if o.max_inputs < 0 or o.batch_size < 1:
        raise MetricError("--max-inputs must be >= 0 and --batch-size >= 1")


def _evaluator_classes(metrics: list[str]) -> list[tuple[type[Evaluator], list[str]]]:
    """The evaluator of each selected metric, once each, in registry order, with its selected names."""
    out: dict[type[Evaluator], list[str]] = {}
    for name in metrics:
        out.setdefault(METRICS[name].evaluator_class, []).append(name)
    return list(out.items())


def _mean_of(rows: list[dict], evaluators: list[Evaluator]) -> dict:
    out: dict = {}
    for ev in evaluators:
        for key, get in ev.summaries():
            values = [v for v in (get(r) for r in rows) if v is not None]
            if values:
                out[key] = float(np.mean(values))
    return out


def _task_attributes(
    ctx: EvalContext, target: int, n: int, gen: torch.Generator, picker: np.random.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """The attributes (z, y) of ``n`` inputs' ``M = samples_per_input`` outputs each: z n*M x nz, y n*M x (C or K).

    Latent mode draws them from the target's prior with ``gen`` (a family whose ``random_by_default`` is False
    takes the prior's mean); reference mode encodes M test images of the target per input, picked by ``picker``."""
    o, model, device = ctx.options, ctx.model, ctx.device
    m = o.samples_per_input
    if o.mode == "latent":
        z, y = model.draw_attributes(target, n * m, None, gen, task_temperature(o, ctx.domains[target]))
        if not model.capabilities.random_by_default:  # e.g. the VAE: z = mu, no draws
            z, _ = model.attribute_prior(y)
        return z, y
    refs = ctx.test_images[target]
    idx = np.concatenate([picker.choice(len(refs), m, replace=len(refs) < m) for _ in range(n)])
    z, y = model.encode_reference(
        to_float(refs[torch.as_tensor(idx)], device),
        torch.full((n * m,), target, dtype=torch.long, device=device),
    )
    return z, y


def _save_outputs(fakes: torch.Tensor, paths: list[Path], m: int, folder: Path, used_stems: set[str]) -> None:
    """Save uint8 ``fakes`` (len(paths)*M x 3 x S x S, M consecutive outputs per input) as ``<stem>_<j>.png``."""
    for i, path in enumerate(paths):
        stem = path.stem or "image"
        while stem in used_stems:
            stem += "_"
        used_stems.add(stem)
        for j in range(m):
            _save_png(fakes[i * m + j], folder / f"{stem}_{j:02d}.png")


def _translate_task(
    ctx: EvalContext,
    evaluators: list[Evaluator],
    task_index: int,
    source: int,
    target: int,
    paths: list[Path],
    folder: Path,
) -> None:
    """Translate every test image of ``source`` (uint8 N x 3 x S x S, files ``paths``) ``samples_per_input``
    times into ``target``, save the PNGs into ``folder`` and hand each generated batch (uint8, M consecutive
    outputs per input) to every evaluator."""
    o, model, device = ctx.options, ctx.model, ctx.device
    gen = torch.Generator(device=device).manual_seed(o.seed * 1000 + task_index)
    picker = np.random.default_rng([o.seed, task_index])
    inputs = ctx.test_images[source]
    label = f"translate {ctx.domains[source]} -> {ctx.domains[target]}"
    m = o.samples_per_input
    per_batch = max(1, o.batch_size // m)
    used_stems: set[str] = set()
    for b in range(0, len(inputs), per_batch):
        ctx.progress(label, b, len(inputs))
        batch = inputs[b : b + per_batch]
        with torch.no_grad():
            attributes = _task_attributes(ctx, target, len(batch), gen, picker)
            fakes = _quantise(model.translate(to_float(batch, device), target, attributes))
        _save_outputs(fakes, paths[b : b + len(batch)], m, folder, used_stems)
        for ev in evaluators:
            ev.update(fakes, m)
    ctx.progress(label, len(inputs), len(inputs))


def _prepare(o: EvalOptions) -> tuple[EvalOptions, list[str], Config, ModelFamily, torch.device]:
    """Check the options, load the model, and complete the options with its defaults (metrics, samples per
    input, temperature): (options, metrics, config, model, device). Options given in full are refused before
    the model is loaded."""
    metrics = parse_metric_names(o.metrics) if o.metrics is not None else None
    if metrics is not None and o.samples_per_input is not None:
        _check_options(o, metrics)  # settings given in full: refuse bad ones before loading anything
    from ..inference.model_files import load_for_inference
    from ..training.speed import resolve_device

    device = resolve_device(o.device)
    cfg, model = load_for_inference(o.run, device, ema=o.ema)
    paired = model.capabilities.paired_data
    if metrics is None:
        metrics = list(PAIRED_DEFAULT_METRICS if paired else DEFAULT_METRICS)
    if o.samples_per_input is None:
        o = replace(o, samples_per_input=PAIRED_SAMPLES_PER_INPUT if paired else SAMPLES_PER_INPUT)
    _check_options(o, metrics)
    if o.temperature is None and o.mode == "latent":  # the model's own defaults
        own = by_domain(cfg.model.sample_temperature_by_domain, cfg.data.domains, TEMPERATURE_RANGE)
        o = replace(o, temperature=cfg.model.sample_temperature, temperature_by_domain=own or None)
    elif o.temperature is None:  # reference mode draws nothing from the prior
        o = replace(o, temperature=1.0)
    return o, metrics, cfg, model, device


def _load_test_images(
    test: PreprocessedImages, domains: list[str], split: str
) -> tuple[list[torch.Tensor], list[list[Path]]]:
    """Every domain's test (or val) images, uint8 N_d x 3 x S x S, and their files; a domain without one
    readable image stops the eval."""
    test_images: list[torch.Tensor] = []
    test_paths: list[list[Path]] = []
    for d in range(len(domains)):
        images, kept = test.load(test.files[d], d)
        if len(images) == 0:
            raise MetricError(f"domain '{domains[d]}' has no readable {split} images in {test.ds.folders[d]}")
        test_images.append(images)
        test_paths.append(kept)
    return test_images, test_paths


def _settings(o: EvalOptions, metrics: list[str], cfg: Config, device: torch.device, out: Path) -> dict:
    """The ``settings`` section of ``eval.json``."""
    return {
        "metrics": metrics,
        "mode": o.mode,
        "split": o.split,
        "temperature": o.temperature,
        **({"temperature_by_domain": o.temperature_by_domain} if o.temperature_by_domain else {}),
        "samples_per_input": o.samples_per_input,
        "seed": o.seed,
        "max_inputs": o.max_inputs,
        "batch_size": o.batch_size,
        "device": str(device),
        "image_format": "PNG (8-bit RGB); every metric reads the saved 8-bit values",
        "image_size": cfg.data.crop,
        "preprocess": f"resize {cfg.data.resize}x{cfg.data.resize} (bicubic), centre crop "
        f"{cfg.data.crop}x{cfg.data.crop}: test inputs, references and real images alike",
        "out": str(out),
    }


def _learn_train_images(
    ctx: EvalContext, train: PreprocessedImages, targets: list[int], learners: list[Evaluator]
) -> dict[int, int]:
    """One pass over the target domains' training images (uint8 batches of ``batch_size``), shared by every
    evaluator that learns from them; the number of readable images of each target."""
    n_train: dict[int, int] = {}
    for t in targets:
        name = ctx.domains[t]
        total, done, n = len(train.files[t]), 0, 0
        for images, _ in train.batches(t, ctx.options.batch_size):
            done += len(images)
            ctx.progress(f"train images {name}", done, total)
            if len(images) == 0:
                continue
            n += len(images)
            for ev in learners:
                ev.add_train_images(t, images)
        n_train[t] = n
        for ev in learners:
            ev.fit_train(t, n)
    return n_train


def _reference_line(
    ctx: EvalContext, evaluators: list[Evaluator], targets: list[int], n_train: dict[int, int]
) -> dict[str, dict]:
    """The reference line: each target's real test images (uint8 N x 3 x S x S) scored as the translations are."""
    reference: dict[str, dict] = {}
    for t in targets:
        name = ctx.domains[t]
        ctx.progress(f"reference {name}", 0, 1)
        real = ctx.test_images[t]
        row: dict = {"target": name, "n_test": len(real)}
        if t in n_train:
            row["n_train"] = n_train[t]
        for ev in sorted(evaluators, key=lambda e: e.reference_order):
            row.update(ev.reference(t, real))
        reference[name] = row
        ctx.progress(f"reference {name}", 1, 1)
    return reference


def _check_task_folders(domains: list[str], pairs: list[tuple[int, int]]) -> None:
    """Refuse, before any work, domain names that give two tasks one ``<source>2<target>`` folder (``a`` -> ``b2c``
    and ``a2b`` -> ``c`` both ``a2b2c``): the second task would remove the first one's PNGs."""
    seen: dict[str, tuple[str, str]] = {}
    for s, t in pairs:
        name = f"{domains[s]}2{domains[t]}"
        if name in seen:
            first = " -> ".join(seen[name])
            raise MetricError(
                f"tasks {first} and {domains[s]} -> {domains[t]} would share the output folder {name}/ (domain names "
                f"containing '2'); rename a domain (data.domains and its folders) so each task has its own"
            )
        seen[name] = (domains[s], domains[t])


def _run_task(
    ctx: EvalContext, evaluators: list[Evaluator], task_index: int, s: int, t: int, paths: list[Path], out: Path
) -> dict:
    """Translate the task ``s`` -> ``t`` into ``out/<source>2<target>/`` (earlier PNGs there removed); its row
    of the report."""
    task_start = time.perf_counter()
    domains = ctx.domains
    folder = out / f"{domains[s]}2{domains[t]}"
    if folder.is_dir():
        for old in folder.glob("*.png"):
            old.unlink()
    folder.mkdir(parents=True, exist_ok=True)
    for ev in evaluators:
        ev.start_task(s, t)
    _translate_task(ctx, evaluators, task_index, s, t, paths, folder)
    n_inputs = len(ctx.test_images[s])
    row = {
        "source": domains[s],
        "target": domains[t],
        "inputs": n_inputs,
        "outputs": n_inputs * ctx.options.samples_per_input,
        "folder": str(folder),
    }
    for ev in evaluators:
        row.update(ev.task_result())
    row["seconds"] = round(time.perf_counter() - task_start, 2)
    return row


def _sections(evaluators: list[Evaluator], test_images: list[torch.Tensor]) -> dict:
    """The report's sections of their own (e.g. clustering of the test images by q(y|x)); None for a
    registered section whose metric was not selected."""
    sections = {cls.section: None for cls in (info.evaluator_class for info in METRICS.values()) if cls.section}
    for ev in evaluators:
        if ev.section:
            sections[ev.section] = ev.section_result(test_images)
    return sections


def _protocols(
    evaluators: list[Evaluator], domains: list[str], pairs: list[tuple[int, int]], seed: int
) -> tuple[dict, dict]:
    """The ``protocols`` (with the seeds of every random choice) and ``weights`` sections of the report."""
    protocols: dict = {}
    weights: dict = {}
    for ev in evaluators:
        protocols.update(ev.protocols())
        weights.update(ev.weights())
    protocols["seeds"] = {
        "attributes": f"torch.Generator(device).manual_seed(seed * 1000 + task index); "
        f"tasks in order {[f'{domains[s]}2{domains[t]}' for s, t in pairs]}",
        "references": "numpy default_rng([seed, task index]): M distinct test images of the "
        "target per input (with replacement only when there are fewer than M)",
        "kid_ndb_lpips_real": f"seed {seed}",
    }
    for ev in sorted(evaluators, key=lambda e: e.reference_order):
        protocols["seeds"].update(ev.seeds())
    return protocols, weights


def _final_notes(
    o: EvalOptions,
    cfg: Config,
    model: ModelFamily,
    evaluators: list[Evaluator],
    tasks: list[dict],
    reference: dict,
    skipped: list[str],
) -> list[str]:
    """The notes that need the results: each evaluator's, identical outputs of a family that does not draw,
    unreadable images."""
    notes: list[str] = []
    for ev in evaluators:
        notes += ev.final_notes(tasks, reference)
    if o.mode == "latent" and o.samples_per_input > 1 and not model.capabilities.random_by_default:
        notes.append(
            f"{cfg.model.family} translates with the prior's mean attribute (no random draws): the "
            f"{o.samples_per_input} outputs per input are identical; --samples-per-input 1 is enough"
        )
    if skipped:
        notes.append(f"{len(skipped)} unreadable image(s) skipped")
    return notes


def _data_section(
    root: str | Path,
    split: str,
    domains: list[str],
    test_paths: list[list[Path]],
    n_train: dict[int, int],
    skipped: list[str],
) -> dict:
    """The ``data`` section of the report: where the images came from and how many were read."""
    return {
        "root": str(root),
        f"{split}_images": {n: len(p) for n, p in zip(domains, test_paths)},
        "train_images": ({domains[i]: n for i, n in n_train.items()} if n_train else None),
        "skipped": skipped,
    }


def _model_section(o: EvalOptions, cfg: Config, model: ModelFamily) -> dict:
    """The ``model`` section of the report: which weights, of which family and config."""
    from ..inference.model_files import networks_fingerprint

    source, capabilities = model.source, model.capabilities
    return {
        "path": str(o.run) if o.run is not None else "pretrained",
        "weights": str(source.weights),
        "kind": source.kind,
        "ema": source.ema,
        "family": cfg.model.family,
        "config": cfg.name,
        "iteration": source.iteration,
        # which weights exactly (export --sweep checks it): fp32 values of the test-time networks used
        "fingerprint": networks_fingerprint(model),
        "domains": list(cfg.data.domains),
        "crop": cfg.data.crop,
        "resize": cfg.data.resize,
        "nz": cfg.model.nz,
        "components_per_domain": (
            capabilities.components_per_domain if capabilities.has_mixture and capabilities.classifies_domains else None
        ),
    }


def evaluate(o: EvalOptions, on_progress: ProgressCallback | None = None) -> EvalResult:
    """Run the whole evaluation described in the module docstring; write ``eval.json``; return the result.

    The metrics are :class:`~gmdrit_cli.evaluation.metrics.evaluator.Evaluator` objects of the registry; this function
    owns the data and the translations and calls them at the points that class describes."""
    start = time.perf_counter()
    o, metrics, cfg, model, device = _prepare(o)
    domains = list(cfg.data.domains)
    _check_task_folders(domains, model.capabilities.tasks(len(domains)))
    root = o.data or cfg.data.root
    ctx = EvalContext(o, metrics, model, device, domains, root, on_progress or (lambda stage, done, total: None))
    notes = ctx.notes
    # weights first: a missing file must stop the run before any work
    evaluators = [cls(ctx, names) for cls, names in _evaluator_classes(metrics)]
    paired = model.capabilities.paired_data
    test = open_images(root, cfg, o.split, o.max_inputs, paired)
    if o.split == "val":
        _check_held_out(o.run, domains, test.files)
    for ev in evaluators:
        ev.setup()
    learners = [ev for ev in evaluators if ev.needs_train_images]
    train = open_images(root, cfg, "train", 0, paired) if learners else None
    iteration = model.source.iteration
    run = None if o.run is None else Path(o.run)
    wanted = Path(o.out).expanduser() if o.out is not None else _default_out(run, iteration, o.mode, o.split)
    with eval_folder(wanted, notes) as out:
        return _evaluate_into(out, ctx, evaluators, test, train, start)


def _check_held_out(run_path, domains: list[str], files: list[list[Path]]) -> None:
    """Refuse validation images that the run trained on: the split is chosen by file name among the files present,
    so a dataset changed since training (files added or removed) gives another split than the run's
    ``splits.json`` records. Models without a run folder (exports, the pretrained model) are not checked."""

    from ..inference.model_files import run_folder_of

    run = run_folder_of(run_path)
    record_path = None if run is None else run / "splits.json"
    if record_path is None or not record_path.is_file():
        return
    try:
        record = jsonfile.loads(record_path.read_text(encoding="utf-8"))["domains"]
        held = {name: set(record[name]["val_files"]) for name in domains}
    except (OSError, ValueError, KeyError, TypeError):
        return  # damaged: the split cannot be checked, and the eval says which files it used (eval.json)
    for name, chosen in zip(domains, files):
        trained = [p.name for p in chosen if p.name not in held[name]]
        if trained:
            raise MetricError(
                f"--split val: {len(trained)} of the {name!r} validation images chosen now (e.g. {trained[0]}) are "
                f"training images of {run} (its splits.json): the dataset changed since training; evaluate on the "
                f"data the run trained on, or use --split test"
            )


def _evaluate_into(out: Path, ctx: EvalContext, evaluators: list[Evaluator], test, train, start: float) -> EvalResult:
    """The translations, metrics and eval.json of :func:`evaluate`, into its folder ``out``."""
    o, model, cfg, device, root = ctx.options, ctx.model, ctx.cfg, ctx.device, ctx.root
    notes, domains, metrics = ctx.notes, ctx.domains, ctx.metrics
    learners = [ev for ev in evaluators if ev.needs_train_images]
    pairs = model.capabilities.tasks(len(domains))
    targets = sorted({t for _, t in pairs})
    notes += [n for n in [untrained_note(model, targets)] if n]
    ctx.test_images, test_paths = _load_test_images(test, domains, o.split)

    n_train = _learn_train_images(ctx, train, targets, learners) if train is not None else {}
    reference = _reference_line(ctx, evaluators, targets, n_train) if o.reference_line else {}
    tasks = [_run_task(ctx, evaluators, i, s, t, test_paths[s], out) for i, (s, t) in enumerate(pairs)]
    sections = _sections(evaluators, ctx.test_images)
    protocols, weights = _protocols(evaluators, domains, pairs, o.seed)
    skipped = test.skipped + (train.skipped if train is not None else [])
    notes += _final_notes(o, cfg, model, evaluators, tasks, reference, skipped)
    report = {
        "format": REPORT_FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": _model_section(o, cfg, model),
        "data": _data_section(root, o.split, domains, test_paths, n_train, skipped),
        "settings": _settings(o, metrics, cfg, device, out),
        "protocols": protocols,
        "weights": weights,
        "libraries": _versions(),
        "tasks": tasks,
        "mean": _mean_of(tasks, evaluators),
        "reference": reference,
        "reference_mean": _mean_of(list(reference.values()), evaluators),
        **sections,
        "notes": notes,
        "seconds": round(time.perf_counter() - start, 2),
    }
    json_path = out / "eval.json"
    atomic.write_json(json_path, report)
    return EvalResult(report, json_path, out, notes)
