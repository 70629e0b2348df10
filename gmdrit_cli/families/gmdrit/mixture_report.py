"""`gmdrit mixture RUN`: what GM-DRIT's mixture learned, and how it got there over training.

Core code only (no typer, no rich); the CLI (``cli/mixture.py``) renders the :class:`MixtureResult`.
Everything goes into ``RUN/eval/mixture/`` (or ``out``):

* ``qy_accuracy.json`` / ``qy_accuracy.png``: for every checkpoint kept in ``RUN/checkpoints`` (in
  iteration order), argmax_k q(y=k|x) on the test images of every domain (preprocessed as ``gmdrit
  eval`` does: resize, centre crop, 8-bit) scored against the true domain with
  :func:`gmdrit_cli.evaluation.metrics.cluster.cluster_scores` (Hungarian accuracy, NMI, component usage), plus
  the accuracy of each domain under that matching; the plot shows accuracy and NMI against iteration.
* ``components_samples.png``: for one checkpoint (the newest, or the one asked for), one row per
  component k (global index, domain ``k // components_per_domain``): a few fixed test inputs of the
  next domain (the other one with two domains), then ``samples`` translations with z ~ p(z|y=onehot(k)).
  Every row draws the same noise, so rows differ only by their component's p(z|y).
* ``components_claims.png`` / ``components.json``: the test images each component claims (argmax
  q(y|x)), most confident first, and the counts per (component, true domain).

Only GM-DRIT conditioned on its inferred y has a q(y|x) worth reporting; MDMM runs and GM-DRIT with
``mixture.condition_on: domain`` are refused with :class:`MixtureError`.
"""

from __future__ import annotations

import io
import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageDraw, ImageFont

from ...config.schema import Config
from ...errors import CheckpointError, GmdritError
from ...evaluation.metrics import write_bytes_atomic, write_json_atomic
from ...limits import whole_number
from ...outputs import claimed_folder
from ...training.checkpoint import (
    STATE_FILE,
    checkpoint_name,
    find_checkpoint,
    list_checkpoints,
    run_of_latest,
    verify_checkpoint,
)

FORMAT = "gmdrit-mixture/1"
TARGET = 0.90  # the accuracy the curve is read against (dashed line)
BATCH = 32  # test images per attribute-encoder call
SAMPLE_INPUTS = 2  # fixed test inputs of the source domain in each row of components_samples.png
CLAIMS_PER_ROW = 12  # claimed test images shown per component
GUTTER, SEPARATOR, PAD = 2, 6, 4  # px: between tiles, between inputs and outputs, around labels
BACKGROUND = (255, 255, 255)

ProgressCallback = Callable[[str, int, int], None]  # (stage, done, total)

log = logging.getLogger("gmdrit")


class MixtureError(GmdritError):
    """`gmdrit mixture` cannot run: no q(y|x) in the model, not a run folder, bad option."""


@dataclass
class MixtureOptions:
    run: Path | str
    data: str | None = None  # dataset root (default: the run's data.root)
    out: Path | str | None = None  # default RUN/eval/mixture
    max_inputs: int = 0  # test images per domain (0 = all)
    samples: int = 8  # translations per component row
    seed: int = 0
    device: str = "auto"
    skip_curve: bool = False  # only the per-component part
    checkpoint: Path | str | None = None  # folder, name (iter_0001000) or iteration; default the newest


#: the files a report writes into its folder (a folder holding one of them is an earlier report's)
OUTPUT_NAMES = (
    "qy_accuracy.json",
    "qy_accuracy.png",
    "components_samples.png",
    "components_claims.png",
    "components.json",
)


@dataclass
class MixtureResult:
    out: Path
    curve: list[dict] | None  # one entry per checkpoint, iteration order (None with skip_curve)
    components: dict  # the content of components.json
    written: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    margins: dict[str, int] = field(default_factory=dict)  # label margin (px) of each PNG grid


# ------------------------------------------------------------------------------------------ checks


def check_mixture(cfg: Config, where: Path | str) -> None:
    """Raise :class:`MixtureError` unless ``cfg`` is GM-DRIT conditioned on its inferred y."""
    if cfg.model.family != "gmdrit":
        raise MixtureError(
            f"{where} is a run of model family '{cfg.model.family}', which has no q(y|x) mixture "
            f"to report on; `gmdrit mixture` needs a GM-DRIT run (model.family: gmdrit)"
        )
    if cfg.mixture.condition_on != "inferred":
        raise MixtureError(
            f"{where} is GM-DRIT conditioned on the domain code (mixture.condition_on: "
            f"{cfg.mixture.condition_on}): its q(y|x) is untrained and conditions nothing; "
            f"`gmdrit mixture` needs mixture.condition_on: inferred"
        )


def _run_folder(path: Path | str) -> Path:
    run = Path(path).expanduser()
    run = run_of_latest(run) or run  # RUN/checkpoints/latest: the run (whose default checkpoint is the latest)
    if (run / STATE_FILE).is_file():
        raise MixtureError(
            f"{run} is a checkpoint folder; give the run folder ({run.parent.parent}) and --checkpoint {run.name}"
        )
    if not (run / "checkpoints").is_dir():
        raise MixtureError(f"{run} is not a run folder (no checkpoints/ in it); give the folder `gmdrit train` wrote")
    return run


def _pick_checkpoint(run: Path, spec: Path | str | None) -> Path:
    """The checkpoint folder of ``--checkpoint`` (a path, a name in RUN/checkpoints, an iteration, or ``latest``)."""
    latest_of = run_of_latest(spec) if spec is not None else None  # RUN/checkpoints/latest given as a path
    if latest_of is not None and latest_of.resolve() != run.resolve():
        raise MixtureError(f"--checkpoint {spec} is the latest checkpoint of {latest_of}, not of {run}")
    if spec is None or str(spec) == "latest" or latest_of is not None:
        found = find_checkpoint(run)
        if found is None:
            raise MixtureError(f"run folder {run} has no checkpoint yet; train it first (gmdrit train)")
        return found[0]
    text = str(spec)
    candidates = [Path(text).expanduser(), run / "checkpoints" / text]
    if whole_number(text, 7) is not None:  # checkpoint names hold 7 digits
        candidates.append(run / "checkpoints" / checkpoint_name(int(text)))
    for folder in candidates:
        if (folder / STATE_FILE).is_file():
            if folder.resolve().parent != (run / "checkpoints").resolve():
                # its pictures would be filed under this run's eval/ as if this run had made them
                raise MixtureError(
                    f"--checkpoint {text} is not a checkpoint of {run}; give one of its own (a name such as "
                    f"iter_0001000 or an iteration), or report on the run it belongs to"
                )
            verify_checkpoint(folder)  # a damaged one stops here, before the curve is computed
            return folder
    kept = ", ".join(p.name for p in reversed(list_checkpoints(run / "checkpoints"))) or "none"
    raise MixtureError(f"--checkpoint {text}: no such checkpoint; {run} keeps: {kept}")


# ------------------------------------------------------------------------------------------ q(y|x)


@dataclass
class TestImages:
    """The test images of every domain as the model's test input (``gmdrit eval``'s preprocessing)."""

    images: list[torch.Tensor]  # per domain: uint8 N_d x 3 x S x S
    paths: list[list[Path]]

    @property
    def labels(self) -> np.ndarray:
        """N (all domains, in order): the true domain of each image."""
        return np.concatenate([np.full(len(x), d) for d, x in enumerate(self.images)])

    @property
    def all_paths(self) -> list[Path]:
        return [p for paths in self.paths for p in paths]

    def float(self, domain: int, device: torch.device, rows: slice = slice(None)) -> torch.Tensor:
        """Images of ``domain`` (``rows`` of them) in [-1, 1]: n x 3 x S x S."""
        return self.images[domain][rows].to(device).float().div(127.5).sub(1.0)


def load_test_images(root: str, cfg: Config, max_inputs: int = 0) -> TestImages:
    """The first ``max_inputs`` (0 = all) test images of every domain, resized (``data.resize``, bicubic),
    centre-cropped (``data.crop``) and rounded to 8 bit: the model's test input, as ``gmdrit eval`` reads it.
    Undecodable files are skipped with a warning."""
    from ...data.factory import training_dataset
    from ...data.unpaired import open_rgb

    ds = training_dataset(cfg, "test", paired=False, root=root, flip=False)
    images, paths = [], []
    for d, name in enumerate(cfg.data.domains):
        files = ds.files[d][:max_inputs] if max_inputs > 0 else ds.files[d]
        kept, tensors = [], []
        for path in files:
            try:
                im = open_rgb(path)
            except Exception:  # any decoder failure: this image is left out, the others go on
                log.warning("skipping unreadable image %s", path)
                continue
            tensors.append(((ds.transform(im, train=False) + 1.0) * 127.5).round().to(torch.uint8))
            kept.append(path)
        if not tensors:
            raise MixtureError(f"domain '{name}' has no readable test images in {ds.folders[d]}")
        images.append(torch.stack(tensors))
        paths.append(kept)
    return TestImages(images, paths)


@torch.no_grad()
def component_probs(model, test: TestImages) -> np.ndarray:
    """q(y|x) of every test image (domains in order): N x K float64."""
    out = []
    for d, x in enumerate(test.images):
        for b in range(0, len(x), BATCH):
            batch = test.float(d, model.device, slice(b, b + BATCH))
            out.append(model.component_probabilities(batch).double().cpu().numpy())
    return np.concatenate(out)


def curve_entry(labels: np.ndarray, probs: np.ndarray, components_per_domain: int, domains: list[str]) -> dict:
    """Clustering scores of one checkpoint from true domains (N) and q(y|x) (N x K).

    ``cluster_scores`` plus ``per_domain[name]["accuracy"]``: the fraction of the domain's images whose
    argmax component is the one the Hungarian matching gives that domain (these sum, weighted by
    images, to ``accuracy``).
    """
    from ...evaluation.metrics.cluster import cluster_scores

    scores = cluster_scores(labels, probs, components_per_domain, domains)
    # matching is {component: domain name}; unmatched components count as wrong for every domain
    matched = np.full(probs.shape[1], -1)
    for c, name in scores["matching"].items():
        if name in domains:
            matched[int(c)] = domains.index(name)
    pred = probs.argmax(axis=1)
    per_domain = {}
    for d, name in enumerate(domains):
        mask = labels == d
        per_domain[name] = {
            "images": int(mask.sum()),
            "accuracy": float((matched[pred[mask]] == d).mean()),
            "domain_accuracy": scores["per_domain"][name]["domain_accuracy"],
        }
    return {
        "accuracy": scores["accuracy"],
        "nmi": scores["nmi"],
        "domain_accuracy": scores["domain_accuracy"],
        "per_domain": per_domain,
        "component_usage": scores["component_usage"],
        "components_used": scores["components_used"],
        "matching": scores["matching"],
    }


# ------------------------------------------------------------------------------------------ pictures


def _font() -> ImageFont.ImageFont:
    return ImageFont.load_default()


def labelled_grid(
    rows: list[list[Image.Image | None]], labels: list[str], tile: int, split: int | None = None
) -> tuple[Image.Image, int]:
    """Rows of ``tile`` px tiles (None = empty slot) with each row's label on a left margin.

    ``split``: a wider gap after that many columns. Returns the image and the margin width; the image
    is ``margin + cols * (tile + GUTTER) + GUTTER (+ SEPARATOR)`` wide and ``rows * (h + GUTTER) + GUTTER``
    high, ``h = max(tile, label height)`` (the label height only matters for tiles under ~30 px).
    """
    font = _font()
    probe = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    boxes = [probe.multiline_textbbox((0, 1), text, font=font) for text in labels]
    margin = int(max((b[2] for b in boxes), default=0)) + 2 * PAD
    height = max([tile] + [int(b[3]) + 1 for b in boxes])
    cols = max((len(r) for r in rows), default=0)
    extra = SEPARATOR if split else 0
    canvas = Image.new(
        "RGB", (margin + cols * (tile + GUTTER) + GUTTER + extra, len(rows) * (height + GUTTER) + GUTTER), BACKGROUND
    )
    draw = ImageDraw.Draw(canvas)
    for r, (row, text) in enumerate(zip(rows, labels)):
        top = GUTTER + r * (height + GUTTER)
        draw.multiline_text((PAD, top + 1), text, fill=(0, 0, 0), font=font)
        for c, im in enumerate(row):
            if im is not None:
                left = margin + GUTTER + c * (tile + GUTTER) + (extra if split and c >= split else 0)
                canvas.paste(im, (left, top))
    return canvas, margin


def _u8_image(x: torch.Tensor) -> Image.Image:
    """uint8 3 x S x S -> PIL."""
    return Image.fromarray(x.permute(1, 2, 0).cpu().numpy())


def _float_image(x: torch.Tensor) -> Image.Image:
    """3 x S x S in [-1, 1] -> PIL, rounded as PNGs of every other command."""
    return _u8_image(((x.float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8))


def plot_curve(curve: list[dict], path: Path, title: str) -> None:
    """Accuracy and NMI against iteration, the TARGET line dashed, into ``path`` (PNG, Agg)."""
    logging.getLogger("matplotlib").setLevel(logging.WARNING)  # no "generated new fontManager" on first use
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator

    # a Figure with its own Agg canvas: no pyplot, no global backend switch in the caller's process
    fig = Figure(figsize=(7, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    iters = [e["iteration"] for e in curve]
    ax.plot(iters, [e["accuracy"] for e in curve], marker="o", label="accuracy (Hungarian)")
    ax.plot(iters, [e["nmi"] for e in curve], marker="s", label="NMI")
    ax.axhline(TARGET, linestyle="--", color="grey", label="target")
    ax.set_xlabel("iteration")
    ax.set_ylabel("score of argmax q(y|x) on test images")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if len(set(iters)) == 1:  # one checkpoint: matplotlib would span +-0.2 iterations
        ax.set_xlim(iters[0] - 1, iters[0] + 1)
    ax.set_ylim(-0.02, 1.02)  # a score of exactly 0 or 1 stays visible
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png")
    write_bytes_atomic(path, buffer.getvalue())


def _save_png(im: Image.Image, path: Path) -> None:
    buffer = io.BytesIO()
    im.save(buffer, format="PNG")
    write_bytes_atomic(path, buffer.getvalue())


def _write_json(path: Path, data: dict) -> None:
    write_json_atomic(path, data)


# ------------------------------------------------------------------------------------------ components


def component_label(k: int, components_per_domain: int) -> str:
    return f"domain {k // components_per_domain} / component {k % components_per_domain}"


@torch.no_grad()
def sample_rows(model, test: TestImages, samples: int, seed: int) -> tuple[list[list[Image.Image | None]], dict]:
    """One row per component k: the source inputs, then ``samples`` outputs with z ~ p(z|y=onehot(k)).

    Source domain: ``(k // cpd + 1) % domains``; its first ``n_in = min(SAMPLE_INPUTS, samples)`` test images
    (fewer when it has fewer; the slots stay empty). Output column c translates input ``c * n_in // samples``.
    Returns the rows (``min(SAMPLE_INPUTS, samples) + samples`` slots each) and {target domain: input paths}.
    """
    cpd, n_domains = model.components_per_domain, model.cfg.num_domains
    slots = min(SAMPLE_INPUTS, samples)
    rows, inputs = [], {}
    for k in range(model.num_components):
        d, j = divmod(k, cpd)
        src = (d + 1) % n_domains
        n_in = min(SAMPLE_INPUTS, samples, len(test.images[src]))
        content = model.encode_content(test.float(src, model.device, slice(0, n_in)))
        which = torch.arange(samples, device=model.device) * n_in // samples
        generator = torch.Generator(device=model.device).manual_seed(int(seed))  # same noise every row
        z, y = model.sample_attributes(d, samples, component=j, generator=generator)
        outputs = []
        for b in range(0, samples, BATCH):
            outputs.extend(model.generate(content[which[b : b + BATCH]], z[b : b + BATCH], y[b : b + BATCH]))
        shown = [_u8_image(x) for x in test.images[src][:n_in]] + [None] * (slots - n_in)
        rows.append(shown + [_float_image(o) for o in outputs])
        inputs[model.cfg.data.domains[d]] = [str(p) for p in test.paths[src][:n_in]]
    return rows, inputs


def claims(
    probs: np.ndarray, labels: np.ndarray, components_per_domain: int, domains: list[str], paths: list[Path]
) -> tuple[list[np.ndarray], list[dict], list[list[int]]]:
    """Which test images each component claims (argmax q(y|x)), most confident first.

    probs N x K, labels N. Returns per component the claimed image indices (sorted by -q(y=k|x)), one
    summary dict per component and the K x domains count table.
    """
    pred = probs.argmax(axis=1)
    order, summary, counts = [], [], []
    for k in range(probs.shape[1]):
        idx = np.flatnonzero(pred == k)
        idx = idx[np.argsort(-probs[idx, k], kind="stable")]
        row = [int((labels[idx] == d).sum()) for d in range(len(domains))]
        d, j = divmod(k, components_per_domain)
        summary.append(
            {
                "component": k,
                "domain": d,
                "domain_name": domains[d],
                "index_in_domain": j,
                "claimed": int(len(idx)),
                "claimed_by_domain": dict(zip(domains, row)),
                "mean_confidence": float(probs[idx, k].mean()) if len(idx) else None,
                "shown": [str(paths[i]) for i in idx[:CLAIMS_PER_ROW]],
            }
        )
        order.append(idx)
        counts.append(row)
    return order, summary, counts


@torch.no_grad()
def prior_summary(model) -> list[dict]:
    """p(z|y=onehot(k)) per component: L2 norm of the mean and the mean standard deviation."""
    y = F.one_hot(torch.arange(model.num_components, device=model.device), model.num_components).float()
    mean, std = model.attribute_prior(y)
    return [{"mean_norm": float(m.norm()), "std_mean": float(s.mean())} for m, s in zip(mean, std)]


@torch.no_grad()
def prior_fit(model, test: TestImages, probs: np.ndarray) -> list[dict]:
    """Does the learned p(z|y=k) track the aggregate posterior of the images k claims (GM-DRIT's thesis)?

    For each component k: the means of q(z|x, y=onehot(k)) of the test images whose argmax q(y|x) is k,
    their average m_k and spread s_k (per dimension, over images, each posterior's own variance added:
    the aggregate posterior's moments); against p(z|y=k) = N(mu_k, sigma_k^2): ``mean_gap`` =
    RMS over dimensions of (m_k - mu_k) / sigma_k (0 = the prior is centred on the codes), and
    ``std_ratio`` = mean over dimensions of s_k / sigma_k (1 = as wide as the codes; much above 1 = random
    draws land off the codes the generator learned).
    """
    E_a = model.networks["attribute_encoder"]
    k_of = probs.argmax(axis=1)
    means, variances = [], []
    for d, x in enumerate(test.images):
        for b in range(0, len(x), BATCH):
            batch = test.float(d, model.device, slice(b, b + BATCH))
            enc = E_a(batch, argmax=True, sample=False)
            means.append(enc.mean.double().cpu())
            variances.append(enc.var.double().cpu())
    means, variances = torch.cat(means), torch.cat(variances)
    y = F.one_hot(torch.arange(model.num_components, device=model.device), model.num_components).float()
    prior_mean, prior_std = (t.double().cpu() for t in model.attribute_prior(y))
    out = []
    for k in range(model.num_components):
        rows = torch.as_tensor(k_of == k)
        if not rows.any():
            out.append({"claimed": 0})
            continue
        m = means[rows].mean(0)
        second = (means[rows].pow(2) + variances[rows]).mean(0)
        s = (second - m.pow(2)).clamp_min(0).sqrt()
        out.append(
            {
                "claimed": int(rows.sum()),
                "mean_gap": float(((m - prior_mean[k]) / prior_std[k]).pow(2).mean().sqrt()),
                "std_ratio": float((s / prior_std[k]).mean()),
                "posterior_spread_of_means": float(means[rows].std(0, unbiased=False).mean()),
            }
        )
    return out


# ------------------------------------------------------------------------------------------ report


def _check_options(o: MixtureOptions) -> None:
    from ...limits import MAX_SAMPLES, LimitError, bounded, seed

    if o.samples < 1:
        raise MixtureError(f"--samples {o.samples}: give at least 1")
    if o.max_inputs < 0:
        raise MixtureError(f"--max-inputs {o.max_inputs}: give 0 (all) or more")
    try:
        bounded(
            o.samples, "--samples", 1, MAX_SAMPLES, "each is a column of components_samples.png, for every component"
        )
        seed(o.seed)
    except LimitError as exc:
        raise MixtureError(str(exc)) from None


def _load(folder: Path, device: torch.device):
    from ...inference.model_files import load_for_inference

    cfg, model = load_for_inference(folder, device)
    check_mixture(cfg, folder)
    return cfg, model


def _protocol() -> dict:
    """How the scores of ``qy_accuracy.json`` and ``components.json`` are computed."""
    return {
        "images": "test images of every domain: resize data.resize (bicubic), centre crop data.crop, "
        "8-bit (as gmdrit eval)",
        "prediction": "argmax_k q(y=k|x) (attribute encoder, eval mode)",
        "accuracy": "Hungarian matching of components to domains (metrics.cluster.cluster_scores); "
        "with several components per domain only one component per domain can match",
        "per_domain_accuracy": "fraction of the domain's images whose argmax component is matched to it",
        "domain_accuracy": "argmax of q(y|x) summed per domain vs the true domain (no matching)",
        "nmi": "arithmetic-mean normalisation, nats",
    }


def _checked_run(o: MixtureOptions) -> tuple[Path, Config, Path]:
    """The run folder, its config (the newest valid checkpoint's) and the checkpoint to picture; refused
    before any work unless both are GM-DRIT conditioned on its inferred y, of the same domains, size and
    components."""
    from ...inference.model_files import resolve_model

    run = _run_folder(o.run)
    cfg = resolve_model(run).cfg  # the newest valid checkpoint's config: refuse before any work
    check_mixture(cfg, run)
    chosen = _pick_checkpoint(run, o.checkpoint)
    domains, cpd = list(cfg.data.domains), cfg.mixture.components_per_domain
    other = resolve_model(chosen).cfg
    check_mixture(other, chosen)
    if (other.data.domains, other.data.crop, other.data.resize, other.mixture.components_per_domain) != (
        domains,
        cfg.data.crop,
        cfg.data.resize,
        cpd,
    ):  # its pictures would not fit this run's test set
        raise MixtureError(
            f"--checkpoint {chosen} is a model with other domains, image size or components than "
            f"{run}; give a checkpoint of this run"
        )
    return run, cfg, chosen


def _common(o: MixtureOptions, run: Path, cfg: Config, test: TestImages, device: torch.device) -> dict:
    """What both JSON files say first: the run, its domains and components, the test images read."""
    domains, cpd = list(cfg.data.domains), cfg.mixture.components_per_domain
    return {
        "format": FORMAT,
        "run": str(run),
        "domains": domains,
        "components_per_domain": cpd,
        "num_components": len(domains) * cpd,
        "data": str(o.data or cfg.data.root),
        "test_images": {name: len(p) for name, p in zip(domains, test.paths)},
        "max_inputs": o.max_inputs,
        "device": str(device),
    }


@dataclass
class _Report:
    """What the two parts of one report (the curve, the components of one checkpoint) share."""

    options: MixtureOptions
    run: Path
    cfg: Config  # the run's (the chosen checkpoint has the same domains, size and components)
    device: torch.device
    test: TestImages
    result: MixtureResult
    common: dict  # what both JSON files say first (:func:`_common`)
    progress: ProgressCallback

    @property
    def domains(self) -> list[str]:
        return list(self.cfg.data.domains)

    @property
    def cpd(self) -> int:
        return self.cfg.mixture.components_per_domain


def _accuracy_curve(r: _Report) -> dict[Path, np.ndarray]:
    """Score q(y|x) of the test images under every checkpoint of the run (a damaged one is skipped with a note)
    and write ``qy_accuracy.json`` / ``.png``; each checkpoint's q(y|x), N x K, by resolved folder."""
    folders = list(reversed(list_checkpoints(r.run / "checkpoints")))  # iteration order
    curve, skipped, probs_of = [], [], {}
    for i, folder in enumerate(folders):
        r.progress("q(y|x) per checkpoint", i, len(folders))
        try:
            _, model = _load(folder, r.device)
        except CheckpointError as exc:  # a damaged checkpoint costs its point, not the curve
            skipped.append({"checkpoint": folder.name, "reason": str(exc)})
            r.result.notes.append(f"skipped {folder.name}: {exc}")
            continue
        probs = component_probs(model, r.test)
        probs_of[folder.resolve()] = probs
        iteration = model.source.iteration
        curve.append(
            {
                "iteration": int(folder.name[len("iter_") :] if iteration is None else iteration),
                "checkpoint": folder.name,
                **curve_entry(r.test.labels, probs, r.cpd, r.domains),
            }
        )
        del model
    r.progress("q(y|x) per checkpoint", len(folders), len(folders))
    if not curve:
        raise MixtureError(f"no readable checkpoint in {r.run / 'checkpoints'}")
    curve.sort(key=lambda e: e["iteration"])
    r.result.curve = curve
    r.result.written += _write_curve(r.result.out, r.run, r.common, curve, skipped)
    return probs_of


def _write_curve(out: Path, run: Path, common: dict, curve: list[dict], skipped: list[dict]) -> list[Path]:
    """``qy_accuracy.json`` and ``qy_accuracy.png``; their paths."""
    _write_json(
        out / "qy_accuracy.json",
        {**common, "target": TARGET, "protocol": _protocol(), "checkpoints": curve, "skipped": skipped},
    )
    plot_curve(curve, out / "qy_accuracy.png", f"q(y|x) clustering of test images over training: {run.resolve().name}")
    return [out / "qy_accuracy.json", out / "qy_accuracy.png"]


def _samples_grid(r: _Report, rows: list[list[Image.Image | None]], components: int) -> tuple[Image.Image, int]:
    """The picture of :func:`sample_rows`' rows, each labelled with its component and domain; its margin."""
    names = [f"{component_label(k, r.cpd)}\n{r.domains[k // r.cpd]}" for k in range(components)]
    return labelled_grid(rows, names, r.cfg.data.crop, split=min(SAMPLE_INPUTS, r.options.samples))


def _claims_grid(r: _Report, order: list[np.ndarray], summary: list[dict]) -> tuple[Image.Image, int]:
    """The picture of the test images each component claims (``order``: per component, indices into the
    images of all domains), CLAIMS_PER_ROW slots a row, each row labelled with its counts; its margin."""
    flat = torch.cat(r.test.images)  # uint8 N x 3 x S x S, domains in order
    claim_rows = [
        [_u8_image(flat[i]) for i in idx[:CLAIMS_PER_ROW]] + [None] * max(0, CLAIMS_PER_ROW - len(idx)) for idx in order
    ]  # fixed width: every row has CLAIMS_PER_ROW slots
    claim_labels = [
        f"{component_label(k, r.cpd)}\nclaims {s['claimed']}: "
        + ", ".join(f"{n} {c}" for n, c in s["claimed_by_domain"].items())
        for k, s in enumerate(summary)
    ]
    return labelled_grid(claim_rows, claim_labels, r.cfg.data.crop)


def _report_components(r: _Report, chosen: Path, probs: np.ndarray | None) -> None:
    """``components_samples.png``, ``components_claims.png`` and ``components.json`` of the checkpoint ``chosen``;
    ``probs``: its q(y|x), N x K, when the curve computed it already."""
    o, test, result, out = r.options, r.test, r.result, r.result.out
    _, model = _load(chosen, r.device)
    r.progress("components", 0, 3)
    if probs is None:
        probs = component_probs(model, test)
    rows, inputs = sample_rows(model, test, o.samples, o.seed)
    r.progress("components", 1, 3)
    grid, result.margins["components_samples"] = _samples_grid(r, rows, model.num_components)
    _save_png(grid, out / "components_samples.png")
    order, summary, counts = claims(probs, test.labels, r.cpd, r.domains, test.all_paths)
    grid, result.margins["components_claims"] = _claims_grid(r, order, summary)
    _save_png(grid, out / "components_claims.png")
    r.progress("components", 2, 3)
    for s, prior, fit in zip(summary, prior_summary(model), prior_fit(model, test, probs)):
        s["prior"] = prior
        s["prior_fit"] = fit
    result.components = {
        **r.common,
        "checkpoint": str(chosen),
        "iteration": model.source.iteration,
        "seed": o.seed,
        "samples": o.samples,
        "sample_inputs": inputs,
        "sample_protocol": "row k: the first inputs of domain (k // components_per_domain + 1) mod "
        "domains, then `samples` outputs with y = onehot(k), z ~ p(z|y) drawn by "
        "model.sample_attributes with torch.Generator(device).manual_seed(seed) "
        "(the same noise for every row)",
        "scores": curve_entry(test.labels, probs, r.cpd, r.domains),
        "protocol": _protocol(),
        "counts": {"rows": "component", "columns": r.domains, "table": counts},
        "components": summary,
    }
    _write_json(out / "components.json", result.components)
    result.written += [out / "components_samples.png", out / "components_claims.png", out / "components.json"]
    r.progress("components", 3, 3)


def mixture_report(o: MixtureOptions, on_progress: ProgressCallback | None = None) -> MixtureResult:
    """Write the files of the module docstring; return what they hold."""
    from ...training.speed import resolve_device

    progress = on_progress or (lambda stage, done, total: None)
    _check_options(o)
    run, cfg, chosen = _checked_run(o)
    device = resolve_device(o.device)
    test = load_test_images(o.data or cfg.data.root, cfg, o.max_inputs)
    wanted = Path(o.out).expanduser() if o.out is not None else run / "eval" / "mixture"
    # an earlier report (or a file of the same name the user keeps there, or a report being written at the same
    # time) is never replaced: this one goes to the first OUT, OUT-2, ... that holds none of its files, as eval's
    # results do, and holds it while it writes (gmdrit_cli.outputs)
    with claimed_folder(wanted, OUTPUT_NAMES) as out:
        result = MixtureResult(out, None, {})
        if out != wanted:
            result.notes.append(f"{wanted} holds earlier results, which are kept: this report went to {out}")
        try:
            r = _Report(o, run, cfg, device, test, result, _common(o, run, cfg, test, device), progress)
            probs_of = {} if o.skip_curve else _accuracy_curve(r)
            _report_components(r, chosen, probs_of.get(chosen.resolve()))
        except OSError as exc:  # a full disk or a folder made read-only meanwhile: the one line names the report
            from ...outputs import os_error_line

            raise MixtureError(
                os_error_line(exc, f"cannot write the mixture report in {out}", "choose another --out")
            ) from None
        return r.result
