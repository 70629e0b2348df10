"""`gmdrit eval`: translate every test image into every other domain and score the translations.

Core code only (no typer, no rich); the CLI (``cli_eval.py``) renders the :class:`EvalResult`.

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

The reference line ("real") scores the target's test images against its training images the same way
(FID, KID, NDB, JSD; LPIPS and 1 - MS-SSIM over random pairs of distinct test images; the classifier's
accuracy on them), the floor each number is read against. ``eval.json`` in ``out`` records every
setting, library version, weight hash and seed.
"""

from __future__ import annotations

import logging
import platform
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image

from . import __version__
from . import atomic
from .metrics import DEFAULT_METRICS, MetricError, parse_metric_names
from .metrics.images import PreprocessedImages as _Images
from .metrics.images import quantise as _quantise

log = logging.getLogger("gmdrit")

MODES = ("latent", "reference")
REPORT_FORMAT = "gmdrit-eval/1"
#: random pairs of distinct real test images for the reference line's set-level LPIPS and MS-SSIM
REAL_LPIPS_PAIRS = 1000

ProgressCallback = Callable[[str, int, int], None]  # (stage, done, total)


@dataclass
class EvalOptions:
    run: Path | str | None       # None: the pretrained model inside the package
    data: str | None = None
    metrics: str | list[str] = ",".join(DEFAULT_METRICS)
    samples_per_input: int = 10
    mode: str = "latent"
    temperature: float = 1.0     # latent mode: scale of the prior's standard deviation
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
    max_inputs: int = 0          # test images per domain (0 = all)
    batch_size: int = 32         # generated images per forward pass
    device: str = "auto"
    reference_line: bool = True  # real test vs real train
    classifier_cache: Path | str | None = None  # domain classifier cache (None: $GMDRIT_CACHE or ~/.cache/gmdrit)


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
    for dist in ("torch", "torchvision", "torch-fidelity", "lpips", "pytorch-msssim", "safetensors", "scipy", "numpy",
                 "pillow"):
        try:
            out[dist] = version(dist)
        except PackageNotFoundError:
            out[dist] = "not installed"
    return out


def _to_float(u8: torch.Tensor, device: torch.device) -> torch.Tensor:
    return u8.to(device).float().div(127.5).sub(1.0)


def _save_png(u8: torch.Tensor, path: Path) -> None:
    Image.fromarray(u8.permute(1, 2, 0).numpy()).save(path, format="PNG")


def _default_out(run: Path | None, iteration: int | None, mode: str) -> Path:
    if run is None:  # the pretrained model: never write into the installed package
        return Path("runs") / "pretrained" / "eval" / (f"iter_{iteration:07d}-{mode}" if iteration is not None else mode)
    run = Path(run).expanduser()
    if run.is_file():
        base = run.parent
    elif (run / "state.json").is_file() and run.parent.name == "checkpoints":
        base = run.parent.parent
    else:
        base = run
    tag = f"iter_{iteration:07d}-{mode}" if iteration is not None else mode
    return base / "eval" / tag


@dataclass
class _Target:
    """What the metrics need of one target domain's training images, computed once."""

    n_train: int
    inception: object | None = None   # fid.FeatureSet
    ndb: object | None = None         # ndb.NDB


# ------------------------------------------------------------------------------------------ evaluate

NDB_BINS = 50            # the NDB paper's K
NDB_IMAGES_PER_BIN = 10  # fewer training images per bin make the per-bin proportion tests meaningless


def default_ndb_bins(n_train: int) -> int:
    """K for NDB/JSD when the user gave none: 50, or fewer so each bin has >= 10 training images (>= 2)."""
    return max(2, min(NDB_BINS, n_train // NDB_IMAGES_PER_BIN))


def _check_options(o: EvalOptions, metrics: list[str]) -> None:
    if o.mode not in MODES:
        raise MetricError(f"--mode {o.mode!r}: choose latent or reference")
    if not o.temperature > 0:
        raise MetricError(f"--temperature {o.temperature}: give a number above 0 (1 = the model's prior)")
    if o.temperature != 1.0 and o.mode != "latent":
        raise MetricError("--temperature scales random attributes: use it with --mode latent")
    if o.samples_per_input < 1:
        raise MetricError(f"--samples-per-input {o.samples_per_input}: give at least 1")
    for name in ("lpips", "diversity_msssim"):
        if name in metrics and o.samples_per_input < 2:
            raise MetricError(f"{name} compares outputs of one input: use --samples-per-input 2 or more, "
                              f"or leave {name} out of --metrics")
    if ("ndb" in metrics or "jsd" in metrics) and ((o.ndb_bins is not None and o.ndb_bins < 2) or o.ndb_size < 1
                                                   or not 0 < o.ndb_alpha < 1):
        raise MetricError(f"NDB settings: --ndb-bins >= 2, --ndb-size >= 1 and 0 < --ndb-alpha < 1 "
                          f"(got {o.ndb_bins}, {o.ndb_size}, {o.ndb_alpha})")
    if ("fid" in metrics or "kid" in metrics) and (o.kid_subset_size < 2 or o.kid_subsets < 1):
        raise MetricError(f"KID settings: --kid-subset-size >= 2 and --kid-subsets >= 1 "
                          f"(got {o.kid_subset_size}, {o.kid_subsets})")
    if o.max_inputs < 0 or o.batch_size < 1:
        raise MetricError("--max-inputs must be >= 0 and --batch-size >= 1")


def evaluate(o: EvalOptions, on_progress: ProgressCallback | None = None) -> EvalResult:
    """Run the whole evaluation described in the module docstring; write ``eval.json``; return the result."""
    start = time.perf_counter()
    metrics = parse_metric_names(o.metrics)
    _check_options(o, metrics)
    from .inference import load_for_inference
    from .speed import resolve_device

    device = resolve_device(o.device)
    cfg, model = load_for_inference(o.run, device)
    source = model.source
    iteration = source.iteration
    domains = list(cfg.data.domains)
    notes: list[str] = []
    progress = on_progress or (lambda stage, done, total: None)

    # weights first: a missing file must stop the run before any work
    inception = lp = None
    if "fid" in metrics or "kid" in metrics:
        from .metrics.fid import InceptionFeatures

        inception = InceptionFeatures(o.inception_weights, device)
    if "lpips" in metrics:
        from .metrics.lpips_diversity import LPIPSDiversity

        lp = LPIPSDiversity(o.lpips_version, o.lpips_backbone_weights, device)
    want_ndb = "ndb" in metrics or "jsd" in metrics
    ms = None
    if "diversity_msssim" in metrics:
        from .metrics.msssim_diversity import MSSSIMDiversity

        ms = MSSSIMDiversity(cfg.data.crop, device)
    capabilities = model.capabilities
    mixture = capabilities.has_mixture and capabilities.classifies_domains
    cluster_skipped = None
    if "cluster" in metrics and not mixture:
        cluster_skipped = ("the model has no q(y|x)" if cfg.model.family != "gmdrit"
                           else "the model is conditioned on the domain code (mixture.condition_on: domain)")
        notes.append(f"cluster skipped: {cluster_skipped}")

    root = o.data or cfg.data.root
    test = _Images(root, cfg, "test", o.max_inputs)
    clf = None
    if "domain_accuracy" in metrics:
        from .metrics.domain_classifier import domain_fractions, get_classifier

        clf = get_classifier(root, cfg, o.classifier_cache, progress=progress, device=device)
    train = _Images(root, cfg, "train") if (inception is not None or want_ndb) else None
    out = Path(o.out).expanduser() if o.out is not None else _default_out(None if o.run is None else Path(o.run), iteration, o.mode)
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise MetricError(f"cannot create output folder {out}: {exc.strerror or exc}") from None

    test_images: list[torch.Tensor] = []
    test_paths: list[list[Path]] = []
    for d in range(len(domains)):
        images, kept = test.load(test.files[d])
        if len(images) == 0:
            raise MetricError(f"domain '{domains[d]}' has no readable test images in {test.ds.folders[d]}")
        test_images.append(images)
        test_paths.append(kept)

    report_protocols: dict = {}
    settings = {"metrics": metrics, "mode": o.mode, "temperature": o.temperature,
                "samples_per_input": o.samples_per_input, "seed": o.seed,
                "max_inputs": o.max_inputs, "batch_size": o.batch_size, "device": str(device),
                "image_format": "PNG (8-bit RGB); every metric reads the saved 8-bit values",
                "image_size": cfg.data.crop,
                "preprocess": f"resize {cfg.data.resize}x{cfg.data.resize} (bicubic), centre crop "
                              f"{cfg.data.crop}x{cfg.data.crop}: test inputs, references and real images alike",
                "out": str(out)}

    # -- the target domains' training images: Inception statistics and NDB bins ------------------
    targets: dict[int, _Target] = {}
    if train is not None:
        from .metrics import fid as fidm
        from .metrics import ndb as ndbm

        for t, name in enumerate(domains):
            feats, vecs = [], []
            total = len(train.files[t])
            done = 0
            for images, _ in train.batches(t, o.batch_size):
                done += len(images)
                progress(f"train images {name}", done, total)
                if len(images) == 0:
                    continue
                if inception is not None:
                    feats.append(inception(images))
                if want_ndb:
                    vecs.append(ndbm.downscale(images, o.ndb_size))
            n = sum(len(v) for v in (feats or vecs))
            tgt = _Target(n)
            if inception is not None:
                tgt.inception = fidm.FeatureSet.from_features(np.concatenate(feats))
            if want_ndb:
                bins = o.ndb_bins if o.ndb_bins is not None else default_ndb_bins(n)
                if o.ndb_bins is None and bins < NDB_BINS:
                    notes.append(f"NDB/JSD for {name}: {bins} bins, not {NDB_BINS}: {n} training images "
                                 f"(the default keeps at least {NDB_IMAGES_PER_BIN} per bin; --ndb-bins sets K)")
                tgt.ndb = ndbm.NDB(np.concatenate(vecs), bins=bins, alpha=o.ndb_alpha, seed=o.seed)
            targets[t] = tgt

    # -- the reference line: real test images of the target vs its training images --------------
    reference: dict[str, dict] = {}
    if o.reference_line:
        for t, name in enumerate(domains):
            progress(f"reference {name}", 0, 1)
            real = test_images[t]
            row: dict = {"target": name, "n_test": len(real)}
            if t in targets:
                row["n_train"] = targets[t].n_train
            if inception is not None:
                from .metrics import fid as fidm

                fs = fidm.FeatureSet.from_features(inception(real)) if len(real) >= 2 else None
                if fs is not None:
                    if "fid" in metrics:
                        row["fid"] = targets[t].inception.fid_to(fs)
                    if "kid" in metrics:
                        row["kid"] = fidm.kernel_inception_distance(
                            targets[t].inception.features, fs.features, o.kid_subsets, o.kid_subset_size,
                            o.seed).to_dict()
            if want_ndb:
                from .metrics import ndb as ndbm

                r = targets[t].ndb.evaluate(ndbm.downscale(real, o.ndb_size))
                row["ndb"] = r.to_dict()
            if lp is not None and len(real) >= 2:
                value, pairs = lp.random_pairs(_to_float(real, device), REAL_LPIPS_PAIRS, o.seed)
                row["lpips_set"] = {"mean": value, "pairs": pairs}
            if ms is not None and len(real) >= 2:
                value, pairs = ms.random_pairs(real, REAL_LPIPS_PAIRS, o.seed)
                row["diversity_msssim_set"] = {"mean": value, "pairs": pairs}
            if clf is not None:
                row["domain_accuracy"] = domain_fractions(clf.predict(real), t, len(domains))
            reference[name] = row
            progress(f"reference {name}", 1, 1)

    # -- the tasks ------------------------------------------------------------------------------
    tasks = []
    pairs = [(s, t) for s in range(len(domains)) for t in range(len(domains)) if s != t]
    per_batch = max(1, o.batch_size // o.samples_per_input)
    for task_index, (s, t) in enumerate(pairs):
        task_start = time.perf_counter()
        name = f"{domains[s]}2{domains[t]}"
        folder = out / name
        if folder.is_dir():
            for old in folder.glob("*.png"):
                old.unlink()
        folder.mkdir(parents=True, exist_ok=True)
        gen = torch.Generator(device=device).manual_seed(o.seed * 1000 + task_index)
        picker = np.random.default_rng([o.seed, task_index])
        inputs, paths = test_images[s], test_paths[s]
        refs = test_images[t]
        m = o.samples_per_input
        feats, vecs, diversities, ms_div, predictions = [], [], [], [], []
        used_stems: set[str] = set()
        for b in range(0, len(inputs), per_batch):
            progress(f"translate {domains[s]} -> {domains[t]}", b, len(inputs))
            batch = inputs[b:b + per_batch]
            n = len(batch)
            with torch.no_grad():
                if o.mode == "latent":
                    z, y = model.sample_attributes(t, n * m, None, gen, o.temperature)
                else:
                    idx = np.concatenate([picker.choice(len(refs), m, replace=len(refs) < m) for _ in range(n)])
                    z, y = model.encode_reference(_to_float(refs[torch.as_tensor(idx)], device),
                                                  torch.full((n * m,), t, dtype=torch.long, device=device))
                fakes = _quantise(model.translate(_to_float(batch, device), t, (z, y)))
            for i in range(n):
                stem = paths[b + i].stem or "image"
                while stem in used_stems:
                    stem += "_"
                used_stems.add(stem)
                for j in range(m):
                    _save_png(fakes[i * m + j], folder / f"{stem}_{j:02d}.png")
            if inception is not None:
                feats.append(inception(fakes))
            if want_ndb:
                from .metrics import ndb as ndbm

                vecs.append(ndbm.downscale(fakes, o.ndb_size))
            if lp is not None:
                for i in range(n):
                    diversities.append(lp.diversity(_to_float(fakes[i * m:(i + 1) * m], device)))
            if ms is not None:
                ms_div += [ms.diversity(fakes[i * m:(i + 1) * m]) for i in range(n)]
            if clf is not None:
                predictions.append(clf.predict(fakes))
        progress(f"translate {domains[s]} -> {domains[t]}", len(inputs), len(inputs))
        row = {"source": domains[s], "target": domains[t], "inputs": len(inputs), "outputs": len(inputs) * m,
               "folder": str(folder)}
        if inception is not None:
            from .metrics import fid as fidm

            fs = fidm.FeatureSet.from_features(np.concatenate(feats))
            if "fid" in metrics:
                row["fid"] = targets[t].inception.fid_to(fs)
            if "kid" in metrics:
                row["kid"] = fidm.kernel_inception_distance(targets[t].inception.features, fs.features,
                                                            o.kid_subsets, o.kid_subset_size, o.seed).to_dict()
        if lp is not None:
            row["lpips"] = {"mean": float(np.mean(diversities)), "std_over_inputs": float(np.std(diversities)),
                            "inputs": len(diversities), "pairs_per_input": m * (m - 1) // 2}
        if want_ndb:
            r = targets[t].ndb.evaluate(np.concatenate(vecs))
            row["ndb"] = r.to_dict()
        if clf is not None:
            row["domain_accuracy"] = domain_fractions(np.concatenate(predictions), t, len(domains))
        if ms is not None:
            row["diversity_msssim"] = {"mean": float(np.mean(ms_div)), "std_over_inputs": float(np.std(ms_div)),
                                       "inputs": len(ms_div), "pairs_per_input": m * (m - 1) // 2}
        row["seconds"] = round(time.perf_counter() - task_start, 2)
        tasks.append(row)

    # -- clustering of the test images by q(y|x) ---------------------------------------------------
    cluster = None
    if "cluster" in metrics and mixture:
        from .metrics.cluster import cluster_scores

        probs, labels = [], []
        with torch.no_grad():
            for d, images in enumerate(test_images):
                progress("cluster", d, len(test_images))
                for b in range(0, len(images), o.batch_size):
                    x = _to_float(images[b:b + o.batch_size], device)
                    probs.append(model.component_probabilities(x).float().cpu().numpy())
                    labels.append(np.full(len(x), d))
        cluster = cluster_scores(np.concatenate(labels), np.concatenate(probs),
                                 capabilities.components_per_domain, domains)
        progress("cluster", len(test_images), len(test_images))

    # -- the report -------------------------------------------------------------------------------
    def mean_of(rows: list[dict]) -> dict:
        out_: dict = {}
        for key, get in (("fid", lambda r: r.get("fid")),
                         ("kid", lambda r: r["kid"]["mean"] if "kid" in r else None),
                         ("lpips", lambda r: r["lpips"]["mean"] if "lpips" in r else None),
                         ("lpips_set", lambda r: r["lpips_set"]["mean"] if "lpips_set" in r else None),
                         ("ndb", lambda r: r["ndb"]["ndb"] if "ndb" in r else None),
                         ("ndb_over_k", lambda r: r["ndb"]["ndb_over_k"] if "ndb" in r else None),
                         ("jsd", lambda r: r["ndb"]["jsd"] if "ndb" in r else None),
                         ("domain_accuracy", lambda r: r["domain_accuracy"]["to_target"] if "domain_accuracy" in r
                          else None),
                         ("domain_neither", lambda r: r["domain_accuracy"]["neither"] if "domain_accuracy" in r
                          else None),
                         ("diversity_msssim", lambda r: r["diversity_msssim"]["mean"] if "diversity_msssim" in r
                          else None),
                         ("diversity_msssim_set", lambda r: r["diversity_msssim_set"]["mean"]
                          if "diversity_msssim_set" in r else None)):
            values = [v for v in (get(r) for r in rows) if v is not None]
            if values:
                out_[key] = float(np.mean(values))
        return out_

    protocols = report_protocols
    if inception is not None:
        protocols["fid"] = {"real": "training images of the target domain", "fake": "all outputs of the task",
                            "features": "torch-fidelity inception-v3-compat, 2048-d pool",
                            "statistics": "mean and unbiased covariance, float64",
                            "trace_term": "nuclear norm of X_fake X_real^T / sqrt((n_real-1)(n_fake-1)) (centred "
                                          "features) when a set has fewer vectors than dimensions, else "
                                          "eigenvalues of sigma_real^1/2 sigma_fake sigma_real^1/2"}
        protocols["kid"] = {"kernel": "polynomial, degree 3, gamma 1/d, coef0 1", "estimator": "unbiased MMD^2",
                            "subsets": o.kid_subsets, "subset_size": o.kid_subset_size,
                            "subset_size_rule": "lowered to the smaller sample when that is smaller (see each row)",
                            "rng": f"numpy RandomState({o.seed})"}
    if lp is not None:
        protocols["lpips"] = {"pairs": "all M(M-1)/2 pairs of the M outputs of one input; mean per input, "
                                       "then mean over inputs (StarGAN v2)",
                              "reference_line": f"set-level: mean over up to {REAL_LPIPS_PAIRS} random pairs of "
                                                f"distinct real test images of the target (numpy default_rng({o.seed}))",
                              **lp.info()}
    if want_ndb:
        any_ndb = next(iter(targets.values())).ndb
        protocols["ndb"] = {**any_ndb.settings(), "image_size": o.ndb_size,
                            "downscale": "bilinear, antialiased, to image_size x image_size, pixels in [0, 1]",
                            "bins_rule": (f"given (--ndb-bins {o.ndb_bins})" if o.ndb_bins is not None else
                                          f"{NDB_BINS}, or n_train // {NDB_IMAGES_PER_BIN} (at least 2) when smaller; "
                                          "each row's ndb.bins is the K used"),
                            "train": "training images of the target domain (fitted once per target)",
                            "query": "all outputs of the task; the reference line queries the target's test images"}
    if "cluster" in metrics and mixture:
        protocols["cluster"] = {"images": "test images of every domain (model test input)",
                                "prediction": "argmax_k q(y=k|x) (attribute encoder, eval mode)",
                                "accuracy": "Hungarian matching of components to domains (scipy linear_sum_assignment)",
                                "nmi": "arithmetic-mean normalisation, nats"}
    if clf is not None:
        protocols["domain_accuracy"] = {
            "images": "every output of the task; the reference line: the target's test images",
            "prediction": "argmax over the domains and 'neither' of the domain classifier's logits",
            "fractions": "to_target: argmax is the target; neither: argmax is 'neither'; other: another domain",
            "classifier": clf.info(), "classifier_protocol": clf.record["protocol"],
            "classifier_held_out": {"test": clf.record["test"], "junk": clf.record["junk"]}}
    if ms is not None:
        protocols["diversity_msssim"] = {
            "pairs": "all M(M-1)/2 pairs of the M outputs of one input; mean per input, then mean over inputs",
            "reference_line": f"set-level: mean over up to {REAL_LPIPS_PAIRS} random pairs of distinct real test "
                              f"images of the target (numpy default_rng({o.seed}))",
            **ms.info()}
    protocols["seeds"] = {"attributes": f"torch.Generator(device).manual_seed(seed * 1000 + task index); "
                                        f"tasks in order {[f'{domains[s]}2{domains[t]}' for s, t in pairs]}",
                          "references": "numpy default_rng([seed, task index]): M distinct test images of the "
                                        "target per input (with replacement only when there are fewer than M)",
                          "kid_ndb_lpips_real": f"seed {o.seed}",
                          **({"msssim_real": f"seed {o.seed}"} if ms is not None else {}),
                          **({"domain_classifier": f"its own seed {clf.record['protocol']['settings']['seed']} "
                                                   f"(independent of --seed, so the cache serves every seed)"}
                             if clf is not None else {})}

    weights = {}
    if inception is not None:
        weights["inception"] = inception.info()
    if lp is not None:
        weights["lpips_backbone"] = lp.info()["backbone"]
        weights["lpips_linear"] = lp.info()["linear"]
    if clf is not None:
        weights["domain_classifier"] = {"path": str(clf.folder), "sha256": clf.record["weights"]["sha256"],
                                        "loaded_from_cache": clf.from_cache}

    kid_sizes = sorted({r["kid"]["subset_size"] for r in [*tasks, *reference.values()] if "kid" in r})
    if kid_sizes and kid_sizes[0] < o.kid_subset_size:
        notes.append(f"KID: subsets of {', '.join(map(str, kid_sizes))} images, not {o.kid_subset_size}: "
                     "the smaller sample of a comparison is that small (each row's kid.subset_size)")
    skipped = test.skipped + (train.skipped if train is not None else [])
    if skipped:
        notes.append(f"{len(skipped)} unreadable image(s) skipped")
    report = {
        "format": REPORT_FORMAT,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "model": {"path": str(o.run) if o.run is not None else "pretrained", "weights": str(source.weights),
                  "kind": source.kind, "family": cfg.model.family, "config": cfg.name,
                  "iteration": iteration, "domains": domains, "crop": cfg.data.crop, "resize": cfg.data.resize,
                  "nz": cfg.model.nz,
                  "components_per_domain": capabilities.components_per_domain if mixture else None},
        "data": {"root": str(root),
                 "test_images": {n: len(p) for n, p in zip(domains, test_paths)},
                 "train_images": ({n: targets[i].n_train for i, n in enumerate(domains)} if targets else None),
                 "skipped": skipped},
        "settings": settings,
        "protocols": protocols,
        "weights": weights,
        "libraries": _versions(),
        "tasks": tasks,
        "mean": mean_of(tasks),
        "reference": reference,
        "reference_mean": mean_of(list(reference.values())),
        "cluster": cluster if cluster is not None else ({"skipped": cluster_skipped} if cluster_skipped else None),
        "notes": notes,
        "seconds": round(time.perf_counter() - start, 2),
    }
    json_path = out / "eval.json"
    atomic.write_json(json_path, report)
    return EvalResult(report, json_path, out, notes)
