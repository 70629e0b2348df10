"""Trained models as files: find one (run folder, checkpoint, export, or the pretrained model inside the
package), load its test-time networks, export them.

A model can be given as

* a run folder (``RUN/checkpoints/...``): its newest valid checkpoint;
* a checkpoint folder (``RUN/checkpoints/iter_NNNNNNN``);
* an exported ``model.safetensors`` with ``config.yaml`` beside it, or the folder holding both
  (written by :func:`export_model`);
* nothing (``None``): the pretrained GM-DRIT apple <-> orange model inside the package.

Only the networks used at test time are loaded: the content encoder, the attribute encoder and the
generator; by default their EMA copy when the run kept one (``train.ema_beta`` > 0; ``ema=False`` / the
CLI's ``--no-ema``: the raw weights). An export holds one set of weights, the EMA copy unless exported
with ``--no-ema``; it is written under temporary names and renamed into place.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from .. import __version__, jsonfile
from ..atomic import atomic_write
from ..colour_gate import gate_from_record, gate_name
from ..config.schema import TEMPERATURE_RANGE, Config, build_config, by_domain, dump_config, load_config_file
from ..errors import CheckpointError, ConfigError, InferenceError
from ..families import build_model, family_class
from ..families.base import ModelFamily
from ..limits import MAX_REFIT_CRITIC_IMAGES, MAX_REFIT_IMAGES, MAX_TEMPERATURE, bounded, finite, whole_number
from ..outputs import held_folder, os_error_line, output_folder, refuse_checkpoint_area, refuse_replacing
from ..training.checkpoint import MODEL_FILE, STATE_FILE, find_checkpoint, load_network_weights, run_of_latest
from ..training.speed import resolve_device

CONFIG_FILE = "config.yaml"
#: the metadata file of an ONNX export (onnx_export.META_FILE; not imported: that module imports this one)
ONNX_META_FILE = "onnx.json"
#: a run's chosen sampling temperature (``gmdrit eval --split val --temperature a,b,c``; temperature_sweep.py)
SAMPLING_FILE = "sampling.json"
#: the pretrained GM-DRIT apple <-> orange model inside the package (int8 export; README "The pretrained model"),
#: used when a command is given no model
PRETRAINED = Path(__file__).parents[1] / "pretrained" / "apple2orange"
#: the networks a translation needs (every family's ``test_time_networks`` so far); exports hold only these
INFERENCE_NETWORKS = ModelFamily.test_time_networks
#: parts of those networks that only a training loss uses (GM-DRIT's p(x|z) thumbnail head); int8 exports
#: leave them out and loading fills them with zeros
TRAINING_ONLY = ("generator.pxz.",)


def weights_fingerprint(tensors: dict[str, torch.Tensor]) -> str:
    """SHA-256 of a model's test-time weights ``{"network.key": tensor}`` as fp32 (an int8 model's dequantised
    values; :data:`TRAINING_ONLY` parts left out): the same for an evaluated model and for an export written from
    the same weights, whatever file or precision they were stored in. A sweep records it, and ``export --sweep``
    refuses a sweep of other weights."""
    import hashlib

    digest = hashlib.sha256()
    for key in sorted(k for k in tensors if not k.startswith(TRAINING_ONLY)):
        value = tensors[key].detach().cpu()
        value = value.float() if value.is_floating_point() else value
        digest.update(f"{key}{tuple(value.shape)}".encode())
        digest.update(value.contiguous().numpy().tobytes())
    return digest.hexdigest()


def networks_fingerprint(model: ModelFamily) -> str:
    """:func:`weights_fingerprint` of the test-time networks of a loaded model."""
    return weights_fingerprint(
        {
            f"{name}.{key}": value
            for name, net in model.networks.items()
            if name in model.test_time_networks
            for key, value in net.state_dict().items()
        }
    )


@dataclass
class ModelSource:
    """Where a model's weights and config come from."""

    path: Path  # what the user gave
    weights: Path  # the model.safetensors read
    cfg: Config
    kind: str  # "checkpoint" (of a run or given directly), "export" or "pretrained" (embedded)
    iteration: int | None
    ema: bool = False  # the weights used are the EMA copy (set by load_for_inference)
    phase: int | None = None  # a phased run (VAE) that stopped before its end: the index of its next phase
    #: how ``cfg.model.sample_temperature`` was chosen, when a sweep chose it (RUN/sampling.json, or an export's)
    sampling: dict | None = None
    #: (temperature, iteration) of a RUN/sampling.json choice made for another checkpoint's weights, not applied
    sampling_not_applied: tuple[float, int] | None = None
    #: how the model line names an export's colour gate, e.g. ``colour gate 0.9`` (set by load_for_inference)
    colour_gate: str | None = None

    def describe(self) -> str:
        it = f", iteration {self.iteration}" if self.iteration is not None else ""
        it += ", EMA weights" if self.ema else ""
        it += f", {self.colour_gate}" if self.colour_gate is not None else ""
        if self.sampling_not_applied is not None:
            value, chosen_for = self.sampling_not_applied
            it += (
                f"; temperature {self.cfg.model.sample_temperature:g} of its config: the {value:g} in {SAMPLING_FILE} "
                f"was chosen for iteration {chosen_for} (sweep these weights on --split val to choose again)"
            )
        if self.kind == "pretrained":
            return (
                f"the embedded pretrained {self.cfg.model.family} model {'/'.join(self.cfg.data.domains)} "
                f"({self.weights}{it}; pass --run or --checkpoint for your own)"
            )
        return f"{self.weights} ({self.cfg.model.family}, {self.kind}{it})"


def _export_metadata(path: Path) -> dict[str, str]:
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read weights {path}: {exc}") from None


def resolve_model(path: Path | str | None) -> ModelSource:
    """Find the weights and config of a run folder, checkpoint folder or exported model; ``None``: the
    pretrained model inside the package."""
    if path is None:
        if not (PRETRAINED / MODEL_FILE).is_file():
            raise CheckpointError(
                "this installation has no pretrained model; say which model to use: "
                "--run RUN (its latest checkpoint) or --checkpoint PATH"
            )
        source = resolve_model(PRETRAINED)
        source.kind = "pretrained"
        return source
    given = Path(path).expanduser()
    given = run_of_latest(given) or given  # RUN/checkpoints/latest: the run's newest (valid) checkpoint
    if given.is_file() and given.name == MODEL_FILE and (given.parent / STATE_FILE).is_file():
        given = given.parent  # a checkpoint's model.safetensors: that checkpoint (its config is in state.json)
    what = "give a run folder, a checkpoint folder or an exported model.safetensors (with config.yaml beside it)"
    if not given.exists():
        raise CheckpointError(f"{given} does not exist; {what}")
    if given.is_file() or (
        given.is_dir()
        and not (given / STATE_FILE).is_file()
        and not (given / "checkpoints").is_dir()
        and (given / MODEL_FILE).is_file()
    ):
        weights = given if given.is_file() else given / MODEL_FILE
        if weights.suffix == ".onnx":  # an ONNX export's graph given as a file: name it as its folder is named
            raise CheckpointError(
                f"{weights} is an ONNX export, which only `gmdrit translate` and `gmdrit app` run; give the run "
                f"or a safetensors export (`gmdrit export RUN --out DIR`)"
            )
        if weights.suffix != ".safetensors":
            raise CheckpointError(f"{weights} is not a model file; {what}")
        config = weights.parent / CONFIG_FILE
        if config.exists() and not config.is_file():
            raise CheckpointError(f"{config} is not a file (a folder?); put the export's {CONFIG_FILE} there")
        if not config.is_file():
            raise CheckpointError(
                f"{weights} has no {CONFIG_FILE} beside it; export models with "
                f"`gmdrit export RUN --out DIR`, which writes both files"
            )
        cfg = load_config_file(config)
        meta = _export_metadata(weights)
        iteration, phase = whole_number(meta.get("iteration")), whole_number(meta.get("phase"))
        for key, value in (("iteration", iteration), ("phase", phase)):
            if key in meta and value is None:  # a number no int64 holds, or not a number: damage, not a count
                raise CheckpointError(
                    f"{weights} is damaged: its metadata {key} {meta[key][:20]!r}"
                    f"{'...' if len(meta[key]) > 20 else ''} is not a whole number; export the model again"
                )
        sampling = _json_or_none(meta.get("sample_temperature_chosen"))
        return ModelSource(given, weights, cfg, "export", iteration, sampling=sampling, phase=phase)
    if given.is_dir() and ((given / STATE_FILE).is_file() or (given / "checkpoints").is_dir()):
        found = find_checkpoint(given)
        if found is None:
            raise CheckpointError(f"run folder {given} has no checkpoint yet; train it first (gmdrit train)")
        folder, state = found
        try:
            cfg = build_config(state["config"])
        except KeyError:
            raise CheckpointError(f"checkpoint {folder} records no config; it cannot be used") from None
        except ConfigError as exc:
            raise CheckpointError(f"checkpoint {folder} has a config this version cannot read: {exc}") from None
        phase = state.get("phase") if isinstance(state.get("phase"), dict) else {}
        index = phase.get("index") if isinstance(phase.get("index"), int) else None
        source = ModelSource(given, folder / MODEL_FILE, cfg, "checkpoint", state.get("iteration"), phase=index)
        _apply_sampling(source, read_sampling(run_folder_of(folder)))
        return source
    if given.is_dir() and (given / "model.onnx").is_file():  # torch reads no ONNX graph: say so, not "not a model"
        raise CheckpointError(
            f"{given} is an ONNX export, which only `gmdrit translate` and `gmdrit app` run; give the run "
            f"or a safetensors export (`gmdrit export RUN --out DIR`)"
        )
    raise CheckpointError(f"{given} is not a run folder, a checkpoint folder or an exported model; {what}")


def run_folder_of(path: Path | str | None) -> Path | None:
    """The run folder of a run folder, of one of its checkpoint folders or of its ``checkpoints/latest`` pointer;
    None for anything else."""
    if path is None:
        return None
    path = Path(path).expanduser()
    path = run_of_latest(path) or path
    if path.is_dir() and (path / "checkpoints").is_dir():
        return path
    if path.is_dir() and (path / STATE_FILE).is_file() and path.parent.name == "checkpoints":
        return path.parent.parent
    return None


def _json_or_none(text: str | None) -> dict | None:

    if not text:
        return None
    try:
        value = jsonfile.loads(text)
    except (ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


def read_sampling(run: Path | None) -> dict | None:
    """``RUN/sampling.json`` as a dict, or None when there is none (a damaged one is reported and ignored)."""
    if run is None or not (run / SAMPLING_FILE).is_file():
        return None
    try:
        value = _json_or_none((run / SAMPLING_FILE).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        value = None
    problem = "not a JSON object" if value is None else _sampling_problem(value)
    if problem:
        raise CheckpointError(
            f"{run / SAMPLING_FILE} is damaged ({problem}); delete it (the model then samples at "
            f"model.sample_temperature of its config) or run the sweep again"
        )
    return value


def _sampling_problem(record: dict) -> str | None:
    """What in a ``sampling.json`` is not as the temperature sweep writes it, or None."""
    if "sample_temperature" not in record:
        return f"it has no sample_temperature (keys: {', '.join(map(str, list(record)[:5])) or 'none'})"
    value = record.get("sample_temperature")
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (0 < value <= MAX_TEMPERATURE):
        return f"sample_temperature {value!r} is not a number above 0 and at most {MAX_TEMPERATURE:g}"
    history = record.get("history", [])
    if not isinstance(history, list) or not all(isinstance(h, dict) for h in history):
        return "history is not a list of earlier choices"
    model = record.get("model", {})
    chosen_for = model.get("iteration") if isinstance(model, dict) else None
    if not isinstance(model, dict) or not (chosen_for is None or type(chosen_for) is int):
        return "model.iteration, the checkpoint the choice was made for, is not a whole number"
    return None


def _apply_sampling(source: ModelSource, record: dict | None) -> None:
    """Set the config's ``model.sample_temperature`` to the one a sweep chose for the run, when it was chosen for
    the weights of this checkpoint: a choice made on another iteration's weights is named, not applied."""
    value = (record or {}).get("sample_temperature")
    if not (isinstance(value, (int, float)) and value > 0):
        return
    model = record.get("model")
    chosen_for = model.get("iteration") if isinstance(model, dict) else None
    if isinstance(chosen_for, int) and source.iteration is not None and chosen_for != source.iteration:
        source.sampling_not_applied = (float(value), chosen_for)
        return
    source.cfg.model.sample_temperature = float(value)
    source.sampling = record


_INIT_FUNCTIONS = (
    "uniform_",
    "normal_",
    "trunc_normal_",
    "constant_",
    "ones_",
    "zeros_",
    "eye_",
    "dirac_",
    "xavier_uniform_",
    "xavier_normal_",
    "kaiming_uniform_",
    "kaiming_normal_",
    "orthogonal_",
)


@contextlib.contextmanager
def _skip_weight_init():
    """Make ``torch.nn.init``'s initialisers no-ops while networks are built whose weights are loaded next
    (the usual trick of model loaders: building a 216 px MDMM otherwise spends a second drawing random
    weights that are overwritten at once)."""
    saved = {name: vars(torch.nn.init)[name] for name in _INIT_FUNCTIONS if name in vars(torch.nn.init)}
    try:
        for name in saved:
            setattr(torch.nn.init, name, lambda tensor, *args, **kwargs: tensor)
        yield
    finally:
        for name, fn in saved.items():
            setattr(torch.nn.init, name, fn)


def _build_empty(cfg: Config, device: torch.device) -> ModelFamily:
    """The model of ``cfg`` with only the test-time networks, on ``device``, weights not initialised (they are
    loaded next); discriminators and optimizers, which inference never uses, are dropped."""
    # training=False: no optimizers and none of the training speed paths (fp32, contiguous, not compiled,
    # deterministic); creating the first torch optimizer would also import torch._dynamo (1.5 s on 2 cores).
    with _skip_weight_init():
        model = build_model(cfg, torch.device("cpu"), training=False)
    model.keep_test_time_networks()
    return model.to(device)


EMA_PREFIX = "ema."


def _weights_info(weights: Path) -> tuple[dict[str, str], bool]:
    """(safetensors metadata, whether the file holds an EMA copy under ``ema.``) of a weights file."""
    try:
        with safe_open(str(weights), framework="pt") as f:
            return dict(f.metadata() or {}), any(k.startswith(EMA_PREFIX) for k in f.keys())
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read weights {weights}: {exc}") from None


def _ema_choice(source: ModelSource, ema: bool) -> str:
    """The key prefix of the weights to use ("ema." or ""), and ``source.ema`` set accordingly."""
    meta, has_copy = _weights_info(source.weights)
    if meta.get("weights") == "ema":  # an export of the EMA copy: its only weights
        if not ema:
            raise InferenceError(
                f"{source.weights} holds the EMA weights only; for the raw weights export the "
                f"run again with `gmdrit export RUN --no-ema`"
            )
        source.ema = True
        return ""
    source.ema = ema and has_copy
    return EMA_PREFIX if source.ema else ""


def load_for_inference(
    path: Path | str | None, device: torch.device | str = "cpu", ema: bool = True
) -> tuple[Config, ModelFamily]:
    """The config and the model of a run folder / checkpoint folder / exported model (``None``: the
    pretrained model inside the package), ready for test time.

    Only the content encoder, attribute encoder and generator are kept (discriminators and optimizers are
    dropped); the networks are in eval mode (no content noise). ``ema``: their EMA copy where the weights
    have one (``model.source.ema`` says whether it was used), else the raw weights. ``model.source`` says
    what was loaded.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    source = resolve_model(path)
    cfg = source.cfg
    prefix = _ema_choice(source, ema)
    model = _build_empty(cfg, device)
    load_network_weights(source.weights, model.networks, prefix)
    model.eval_mode()
    model.source = source
    _attach_colour_gate(model, source.weights)
    return cfg, model


def _attach_colour_gate(model: ModelFamily, weights: Path) -> None:
    """The colour gate an export's metadata holds (``colour_gate``), on ``model`` (:mod:`gmdrit_cli.colour_gate`)."""
    record = _weights_info(weights)[0].get("colour_gate")
    if record is None:
        return
    try:
        model.colour_gate_record = jsonfile.loads(record)
        model.colour_gate = gate_from_record(model.colour_gate_record, model.cfg.model.nz)
        model.source.colour_gate = gate_name(model.colour_gate_record)
    except (KeyError, TypeError, ValueError, AttributeError, RecursionError) as exc:
        raise CheckpointError(
            f"{weights}: its colour_gate metadata is damaged ({type(exc).__name__}); export the model again"
        ) from None


def untrained_note(model: ModelFamily, targets: list[int]) -> str | None:
    """A warning when ``model`` comes from a phased run that stopped before the phase that trains the
    translation into one of ``targets`` (a VAE in phase 1: its per-domain decoders are still untrained)."""
    source = model.source
    if source is None or source.phase is None:
        return None
    phases = model.phases()
    pending = [p for i, p in enumerate(phases) if i > source.phase and len(p.domains) == 1 and p.domains[0] in targets]
    if not pending or source.phase >= len(phases):
        return None
    names = model.cfg.data.domains
    what = ", ".join(f"{p.name} (into '{names[p.domains[0]]}')" for p in pending)
    return (
        f"{source.path} stopped in phase {source.phase + 1} of {len(phases)} ({phases[source.phase].name}): "
        f"{what} is not trained yet, so its outputs come from untrained weights; continue the run with "
        f"`gmdrit resume` first"
    )


def initialise_from(path: Path | str, networks: torch.nn.ModuleDict) -> dict:
    """Copy into ``networks`` every tensor of the model at ``path`` ('pretrained': the embedded one) whose name and
    shape match (an int8 export is dequantised first). Returns what was done: the weights file, its SHA-256 and
    metadata, the tensors copied and kept. A model that matches fewer than half of the tensors is refused: it is
    another family or width of network."""
    import hashlib

    from safetensors.torch import load_file

    source = resolve_model(None if str(path) == "pretrained" else path)
    meta, _ = _weights_info(source.weights)
    try:
        tensors = load_file(str(source.weights))
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read weights {source.weights}: {exc}") from None
    if meta.get("quantized"):
        from .quantize import dequantize_tensors

        tensors = dequantize_tensors(tensors)
    copied = kept = 0
    with torch.no_grad():
        for net_name, net in networks.items():
            for key, value in net.state_dict().items():
                found = tensors.get(f"{net_name}.{key}")
                if found is not None and tuple(found.shape) == tuple(value.shape):
                    value.copy_(found)
                    copied += 1
                else:
                    kept += 1
    if copied < kept:  # most of the model would start fresh: another family or width, most likely a mistake
        raise ConfigError(
            f"train.init_from={path}: only {copied} of {copied + kept} tensors of this model have a "
            f"match in {source.weights} ({source.cfg.model.family}, width {source.cfg.model.width}); "
            f"give a model of the same family and width"
        )
    digest = hashlib.sha256(source.weights.read_bytes()).hexdigest()
    return {
        "init_from": str(path),
        "weights": str(source.weights),
        "sha256": digest,
        "metadata": meta,
        "iteration": source.iteration,
        "crop": source.cfg.data.crop,
        "tensors_copied": copied,
        "tensors_fresh": kept,
    }


# ------------------------------------------------------------------------------------------ export


@dataclass
class ExportResult:
    source: ModelSource
    out: Path
    weights: Path
    config: Path
    bytes: int
    parameters: int


def make_output_folder(folder: Path) -> None:
    """Create ``folder`` (and its parents) for outputs, or say in one line why it cannot be (see
    :func:`gmdrit_cli.outputs.output_folder`)."""
    output_folder(folder, "--out")


#: the metadata keys an export writes itself (and reads back: format, weights, quantized, ...); --meta cannot set them
OWN_METADATA = (
    "format",
    "family",
    "networks",
    "gmdrit",
    "omitted",
    "quantized",
    "iteration",
    "phase",
    "weights",
    "ema_beta",
    "sample_temperature_chosen",
    "prior_refit",
    "colour_gate",
)

#: export --gate-by: what a colour gate keeps (:mod:`gmdrit_cli.colour_gate`)
GATE_KINDS = ("region", "chroma")
#: export --refit-prior: training images per domain used by default (the first, by file name): encoded once
#: each by ``--refit-by posterior``; translated by each of the prior's judged draws by ``--refit-by discriminator``
REFIT_IMAGES = {"posterior": 400, "discriminator": 16, "neutral": 16, "colour": 16}
#: what each --refit-by method does, in the words of the export's ``prior_refit`` record
REFIT_RULES = {
    "posterior": "each component's prior mean moved {s:g} of the way to the mean attribute (posterior mean) of the "
    "training images of its domain that choose it; the prior's standard deviations unchanged",
    "discriminator": "each component's prior mean and standard deviations moved {s:g} of the way to those of the "
    "prior's draws (a fixed-seed sample) that the run's discriminator rates most real when they translate the "
    "other domains' training images",
    "neutral": "each component's prior mean and standard deviations moved {s:g} of the way to those of the prior's "
    "draws (a fixed-seed sample) whose translations of the other domains' training images change their white, "
    "grey and black pixels least",
    "colour": "each component's prior mean and standard deviations moved {s:g} of the way to those of the prior's "
    "draws (a fixed-seed sample) with the best rank sum of two judgements of their translations of the other "
    "domains' training images: how little they change those images' white, grey and black pixels, and how little "
    "of their colour falls in hues the component's domain's training images hardly have",
}


def _load_training_networks(model: ModelFamily, source: ModelSource, names: tuple[str, ...], why: str) -> None:
    """Add the training networks ``names`` (discriminators, never EMA-copied) of ``source`` to ``model``."""
    with _skip_weight_init():
        full = build_model(source.cfg, torch.device("cpu"), training=False)
    try:
        with safe_open(str(source.weights), framework="pt") as f:
            keys = [k for k in f.keys() if k.startswith(tuple(f"{n}." for n in names))]
            tensors = {k: f.get_tensor(k) for k in keys}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read weights {source.weights}: {exc}") from None
    if not tensors:
        raise InferenceError(
            f"{why} needs the run's {', '.join(names)}, which {source.weights} does not hold (an export keeps only "
            "the test-time networks): give the run folder or one of its checkpoints"
        )
    for name in names:
        net = full.networks[name]
        own = {k[len(name) + 1 :]: v for k, v in tensors.items() if k.startswith(f"{name}.")}
        try:
            net.load_state_dict(own)
        except RuntimeError:
            raise CheckpointError(f"weights {source.weights} do not fit their config ({name})") from None
        model.networks[name] = net.to(model.device).eval()


def _training_images(model: ModelFamily, root: str, limit: int, option: str) -> list[torch.Tensor]:
    """The first ``limit`` training images (validation split held out) of each domain under ``root``, N_d x 3 x S x S
    in [-1, 1]."""
    from ..evaluation.metrics.images import open_images

    train = open_images(root, model.cfg, "train", limit, model.capabilities.paired_data)
    images = []
    for d, name in enumerate(model.cfg.data.domains):
        batches = [b for b, _ in train.batches(d, 50) if len(b)]
        if not batches:
            raise InferenceError(f"{option}: no readable training image of {name!r} under {root}; give --data")
        images.append(torch.cat(batches).float().div(127.5).sub(1.0))
    return images


def _single_or_by_domain(value: float | str | None, option: str) -> tuple[float | None, str | None]:
    """An option that takes one number or ``DOMAIN=V,DOMAIN=V`` (checked once the model's domains are known):
    (the number, None), (None, the text) or (None, None) when not given."""
    if value is None or not isinstance(value, str):
        return value, None
    if "=" in value:
        return None, value
    try:
        return float(value), None
    except ValueError:
        raise InferenceError(f"{option} {value!r}: give a number, or one per domain as DOMAIN=V,DOMAIN=V") from None


def _by_domain_option(text: str | None, domains: list[str], option: str, value_range) -> dict[str, float]:
    """The values of ``option``'s ``DOMAIN=V,...`` ``text`` by domain name; ``{}`` when None."""
    if text is None:
        return {}
    try:
        values = by_domain(text, domains, value_range)
    except ValueError as exc:
        raise InferenceError(f"{option} {text!r}: {exc}") from None
    if not values:
        raise InferenceError(f"{option} {text!r}: give at least one DOMAIN=V")
    return values


def _fit_colour_gate(path: Path | str, ema: bool, data: str | None, shares: dict[str, float], kind: str) -> str:
    """The JSON ``colour_gate`` record (``kind`` region or chroma) of the model at ``path``, one gate per domain of
    ``shares`` (domain name -> share; :mod:`gmdrit_cli.inference.gate_fit`)."""
    import json

    from .gate_fit import GATE_TARGETS, fit_colour_gate

    cfg, model = load_for_inference(path, ema=ema)
    if not model.capabilities.random_by_default:
        raise InferenceError(f"--colour-gate: the {cfg.model.family} family does not draw random attributes")
    root = data or cfg.data.root
    shares_by_index = {cfg.data.domains.index(name): share for name, share in shares.items()}
    images = _training_images(model, root, GATE_TARGETS, "--colour-gate")
    record = fit_colour_gate(model, images, shares_by_index, kind, cfg.data.domains)
    record.update(data=str(root), split="train (the validation split held out)")
    return json.dumps(record)


def _refit_prior(
    path: Path | str, source: ModelSource, ema: bool, data: str | None, limit: int, strength: float, method: str
) -> tuple[dict, str]:
    """The weights :meth:`ModelFamily.refit_prior` replaces (fp32, CPU) and the JSON record of what it did."""
    import json

    cfg, model = load_for_inference(path, ema=ema)
    model.refit_prior([], method=method)  # no images: a family (or stage) with nothing to refit refuses first
    extra = model.refit_networks(method)
    if extra:
        _load_training_networks(model, model.source, extra, f"--refit-by {method}")
    root = data or cfg.data.root
    images = _training_images(model, root, limit, "--refit-prior")
    fitted, records = model.refit_prior(images, strength, method=method)
    record = {
        "method": method,
        "rule": REFIT_RULES[method].format(s=strength),
        "strength": strength,
        "data": str(root),
        "images_per_domain": [len(x) for x in images],
        "split": "train (the validation split held out)",
        "components": records,
    }
    return {k: v.detach().float().cpu() for k, v in fitted.items()}, json.dumps(record)


def _chosen_from_sweep(
    path: Path | str, temperature: float | None, temperature_by: dict[str, float] | None = None
) -> dict:
    """The ``sample_temperature_chosen`` record of ``export --temperature T --sweep SWEEP.json``: T (or each
    value of ``temperature_by``, ``--temperature DOMAIN=T,...``) must be one of the rows of a sweep on the validation
    split (a choice made on test images is refused). :func:`export_model` has refused a sweep without either."""
    path = Path(path).expanduser()
    if path.exists() and not path.is_file() and not path.is_dir():  # reading a pipe would wait for a writer
        raise InferenceError(f"--sweep {path} is not a regular file (a pipe?); give the sweep.json a sweep wrote")
    try:
        record = jsonfile.loads(path.read_text(encoding="utf-8"))
        rows = record["rows"]
        tried = {float(row["temperature"]): row["mean"] for row in rows}
    except (OSError, UnicodeDecodeError, ValueError, RecursionError, KeyError, TypeError) as exc:
        raise InferenceError(
            f"--sweep {path}: not a sweep.json of gmdrit eval --temperature ({type(exc).__name__}); give the file "
            f"a sweep wrote"
        ) from None
    if record.get("split") != "val":
        raise InferenceError(f"--sweep {path} ran on the {record.get('split')!r} split; choose on --split val")
    for value in [temperature] if temperature is not None else temperature_by.values():
        if value not in tried:
            raise InferenceError(f"--temperature {value:g} is not a row of --sweep {path} ({sorted(tried)})")
    fingerprint = record.get("model", {}).get("fingerprint") if isinstance(record.get("model"), dict) else None
    if not isinstance(fingerprint, str):
        raise InferenceError(
            f"--sweep {path} does not record which weights it evaluated (written by an earlier gmdrit); run the "
            f"sweep again on the model you export"
        )
    keep = ("min_accuracy", "split", "command", "samples_per_input")
    return {k: record[k] for k in keep if k in record} | {
        "fingerprint": fingerprint,
        "sample_temperature": temperature,
        **({"by_domain": temperature_by} if temperature_by else {}),
        "rule": f"given to gmdrit export from this validation sweep (its own rule: {record.get('rule')})",
        "sweep": str(path),
        "values": [{"temperature": t, "mean": mean} for t, mean in tried.items()],
    }


def _after_earlier_refit(record: str, earlier: str | None) -> str:
    """The ``prior_refit`` record of a refit of an already refitted export: this refit's, with the earlier one
    (a JSON object, kept as it was) under ``after``, so the export says every refit its prior went through."""
    import json

    before = _json_or_none(earlier)
    return record if before is None else json.dumps({**json.loads(record), "after": before})


def _chosen_before_refit(sampling: dict) -> dict:
    """An export's ``sample_temperature_chosen`` once its prior is refitted again: the value stays (the model
    samples somewhere), the record says it was chosen for the earlier prior."""
    return {
        "sample_temperature": sampling.get("sample_temperature"),
        "rule": "chosen for the prior before a later --refit-prior, not for this one: sweep this export on held-out "
        "images and export it with --temperature T --sweep SWEEP.json",
        "before_refit": {k: v for k, v in sampling.items() if k != "before_refit"},
    }


def sweep_command(cfg: Config, model: str | Path) -> str:
    """The command that chooses ``model``'s temperature on images it never trained on: its run's validation
    split, or (a run without one) a folder of held-out images the user keeps apart from the test set."""
    if cfg.data.val_fraction > 0:
        return f"gmdrit eval {model} --split val --temperature 0.8,1,1.2"
    return (
        f"gmdrit eval {model} --data HELD_OUT --temperature 0.8,1,1.2, HELD_OUT being images it never trained on "
        f"and not your test set: its run kept no validation split, data.val_fraction 0"
    )


def refit_given(data: str | None, refit_images: int | None, refit_strength: float | None, refit_by=None) -> str:
    """The first option of ``--refit-prior`` given (``--data``, ``--refit-images``, ``--refit-strength``,
    ``--refit-by``), or ""."""
    given = (("--data", data), ("--refit-images", refit_images), ("--refit-strength", refit_strength))
    for option, value in (*given, ("--refit-by", refit_by)):
        if value is not None:
            return option
    return ""


def export_model(
    path: Path | str,
    out: Path | str,
    int8: bool = False,
    extra_metadata: dict[str, str] | None = None,
    ema: bool = True,
    force: bool = False,
    refit_prior: bool = False,
    data: str | None = None,
    refit_images: int | None = None,
    refit_strength: float | None = None,
    temperature: float | str | None = None,
    sweep: Path | str | None = None,
    refit_by: str | None = None,
    keep_plain: float | None = None,
    colour_gate: float | str | None = None,
    gate_by: str | None = None,
) -> ExportResult:
    """Write ``out/model.safetensors`` (the test-time networks only) and ``out/config.yaml``; nothing else.

    ``ema``: the networks' EMA copy where the run kept one (metadata ``weights: ema``), else the raw
    weights.

    ``int8``: weights quantised per output channel (:mod:`gmdrit_cli.inference.quantize`) and the training-only heads
    (:data:`TRAINING_ONLY`) left out, about a quarter of the fp32 size. ``extra_metadata`` is stored in the
    safetensors header (e.g. the command that trained the model). An ``out`` that holds a model or a config
    already is refused unless ``force`` (never a run's checkpoints: see :mod:`gmdrit_cli.outputs`).

    ``refit_prior``: the attribute prior refitted (``refit_strength`` of the way) by ``refit_by`` (``posterior``:
    the means onto the attributes the training images encode to; ``discriminator``: means and spreads onto the
    draws the run's discriminator rates most real) on the first ``refit_images`` training images of each domain
    (validation split held out) of ``data`` (default: the config's ``data.root``)
    (:meth:`~gmdrit_cli.families.base.ModelFamily.refit_prior`), recorded as metadata ``prior_refit``.
    ``temperature``: the export's ``model.sample_temperature``, or ``DOMAIN=T,...`` text for its
    ``model.sample_temperature_by_domain``; ``sweep``: the validation sweep (``sweep.json``
    of ``gmdrit eval --split val --temperature ...``) it was chosen from, recorded with it. ``keep_plain``: the
    export's ``model.keep_plain`` (:mod:`gmdrit_cli.plain`). ``colour_gate``: the share of the target domains'
    training photos whose colours the gate's region holds (:mod:`gmdrit_cli.colour_gate`), fitted on ``data``'s
    training images (``DOMAIN=Q,...`` text: a share per target domain, the others ungated); 0 leaves an earlier gate
    out; None keeps the source's. ``gate_by``: ``region`` (that) or
    ``chroma`` (the share of the encoded-attribute translations whose target chroma passes the gate)."""
    colour_gate, gate_text = _single_or_by_domain(colour_gate, "--colour-gate")
    if colour_gate is not None:
        colour_gate = finite(colour_gate, "--colour-gate", positive=False, low=0.0, high=1.0, why="a share")
    if gate_by is not None and gate_by not in GATE_KINDS:
        raise InferenceError(f"--gate-by {gate_by!r}: choose one of {', '.join(GATE_KINDS)}")
    if gate_by is not None and not (colour_gate or gate_text):
        raise InferenceError("--gate-by says how --colour-gate fits its gate: give --colour-gate Q (0 < Q <= 1) too")
    if keep_plain is not None:
        keep_plain = finite(keep_plain, "--keep-plain", positive=False, low=0.0, high=1.0, why="a share")
    temperature, temperature_text = _single_or_by_domain(temperature, "--temperature")
    if temperature is not None:
        temperature = finite(temperature, "--temperature", high=MAX_TEMPERATURE, why="1 = the model's prior")
    if sweep is not None and temperature is None and temperature_text is None:
        raise InferenceError("--sweep records where --temperature was chosen: give --temperature too")
    gating = bool(colour_gate or gate_text)
    given = refit_given(None if gating else data, refit_images, refit_strength, refit_by)
    if given and not refit_prior:
        raise InferenceError(f"{given} applies to --refit-prior only; add --refit-prior, or leave {given} out")
    refit_by = refit_by or "posterior"
    if refit_by not in REFIT_RULES:
        raise InferenceError(f"--refit-by {refit_by!r}: choose one of {', '.join(REFIT_RULES)}")
    refit_images = REFIT_IMAGES[refit_by] if refit_images is None else refit_images
    refit_strength = 1.0 if refit_strength is None else refit_strength
    if refit_by != "posterior":
        why = f"with --refit-by {refit_by} each image is translated by 256 draws, all encoded at once"
        refit_images = bounded(refit_images, "--refit-images", 1, MAX_REFIT_CRITIC_IMAGES, why)
    refit_images = bounded(refit_images, "--refit-images", 1, MAX_REFIT_IMAGES, "each image is decoded and encoded")
    refit_strength = finite(refit_strength, "--refit-strength", high=1.0, why="1 = all the way to the encoded mean")
    taken = sorted(set(extra_metadata or {}) & set(OWN_METADATA))
    if taken:
        raise InferenceError(
            f"metadata key {taken[0]!r} is one gmdrit writes and reads back itself ({', '.join(OWN_METADATA)}); "
            f"store that value under another key"
        )
    source = resolve_model(path)
    domains = list(source.cfg.data.domains)
    temperature_by = _by_domain_option(temperature_text, domains, "--temperature", TEMPERATURE_RANGE)
    gate_shares = dict.fromkeys(domains, colour_gate) if colour_gate else {}  # domain name -> share
    if gate_text is not None:
        gate_shares = _by_domain_option(gate_text, domains, "--colour-gate", (0.0, 1.0))
    chosen_from = _chosen_from_sweep(sweep, temperature, temperature_by) if sweep is not None else None
    out = Path(out).expanduser()
    refuse_checkpoint_area(out, "--out")
    if (out / "checkpoints").is_dir():
        raise InferenceError(f"--out {out} is a run folder; export into a folder of its own")
    if (out / ONNX_META_FILE).is_file():
        # one export per folder: beside an ONNX export, translate and eval would go on running the old graphs
        raise InferenceError(
            f"--out {out} holds an ONNX export ({ONNX_META_FILE}), which gmdrit would keep running instead of this "
            f"model; even with --force, export into a folder of its own"
        )
    reads = {source.weights.resolve(), (source.weights.parent / CONFIG_FILE).resolve()}  # links followed
    if source.weights.parent.resolve() == out.resolve() or reads & {
        (out / n).resolve() for n in (MODEL_FILE, CONFIG_FILE)
    }:
        # --force replaces an earlier export, never the model being read: that would drop what the export's
        # metadata records (iteration chosen, training command, int8) for a copy of itself
        raise InferenceError(
            f"--out {out} holds the model being exported ({source.weights}); even with --force gmdrit does not "
            f"export a model onto itself: choose another --out"
        )
    if not force:
        for existing in (out / MODEL_FILE, out / CONFIG_FILE):
            refuse_replacing(existing, "--force")
    networks = family_class(source.cfg.model.family).test_time_networks
    copy = _ema_choice(source, ema)
    prefixes = tuple(f"{copy}{n}." for n in networks)
    try:
        with safe_open(str(source.weights), framework="pt") as f:
            meta = f.metadata() or {}
            tensors = {k[len(copy) :]: f.get_tensor(k) for k in f.keys() if k.startswith(prefixes)}
    except (SafetensorError, OSError) as exc:
        raise CheckpointError(f"cannot read weights {source.weights}: {exc}") from None
    # an int8 export (the pretrained model), or an fp32 export of one, exported again: without the heads it left out
    omitted = tuple(p for p in meta.get("omitted", "").split(",") if p)
    if meta.get("quantized"):
        from .quantize import dequantize_tensors

        tensors = dequantize_tensors(tensors)
    # check the tensors fit the config before writing anything
    probe = _build_empty(source.cfg, torch.device("cpu"))
    expected = {f"{n}.{k}": v.shape for n, net in probe.networks.items() for k, v in net.state_dict().items()}
    expected = {k: v for k, v in expected.items() if k in tensors or not k.startswith(omitted)}
    wrong = sorted(
        k
        for k in expected.keys() | tensors.keys()
        if k not in tensors or k not in expected or tuple(tensors[k].shape) != tuple(expected[k])
    )
    if wrong:
        raise CheckpointError(f"weights {source.weights} do not fit their config (first mismatch: {wrong[0]})")
    metadata = {
        "format": "gmdrit-inference",
        "family": source.cfg.model.family,
        "networks": ",".join(networks),
        "gmdrit": __version__,
        **(extra_metadata or {}),
    }
    if refit_prior:
        fitted, refit_record = _refit_prior(path, source, ema, data, refit_images, refit_strength, refit_by)
        tensors.update(fitted)
        metadata["prior_refit"] = _after_earlier_refit(refit_record, meta.get("prior_refit"))
        if source.sampling is not None and temperature is None:  # chosen for the prior this refit replaced
            source.sampling = _chosen_before_refit(source.sampling)
    elif "prior_refit" in meta:  # an export of a refitted export keeps saying so
        metadata["prior_refit"] = meta["prior_refit"]
    # before the minutes of a gate fit, which leaves the weights as they are
    if chosen_from is not None and chosen_from.pop("fingerprint") != weights_fingerprint(tensors):
        raise InferenceError(
            f"--sweep {sweep} evaluated other weights than this export's ({source.weights}"
            f"{', EMA' if source.ema else ''}{', prior refitted' if refit_prior else ''}): a temperature is chosen "
            f"for one model; run the sweep on this model (export it first, then {sweep_command(source.cfg, 'EXPORT')})"
        )
    if gate_shares:  # fitted on the weights as exported (a refit above changes the prior, never the map from z)
        metadata["colour_gate"] = _fit_colour_gate(path, ema, data, gate_shares, gate_by or "region")
    elif colour_gate is None and gate_text is None and "colour_gate" in meta:  # an export of a gated export keeps it
        metadata["colour_gate"] = meta["colour_gate"]
    if keep_plain is not None:
        source.cfg.model.keep_plain = keep_plain
    if temperature is not None:
        source.cfg.model.sample_temperature = temperature
        source.cfg.model.sample_temperature_by_domain = ""  # one temperature for every domain, as asked
        source.sampling = chosen_from or {"sample_temperature": temperature, "rule": "given to gmdrit export"}
    elif temperature_by:
        source.cfg.model.sample_temperature_by_domain = ",".join(f"{d}={t:g}" for d, t in temperature_by.items())
        given_by = {"sample_temperature": source.cfg.model.sample_temperature, "by_domain": temperature_by}
        source.sampling = (chosen_from or {"rule": "given to gmdrit export"}) | given_by
    tensors = {k: v for k, v in tensors.items() if not (int8 and k.startswith(TRAINING_ONLY))}
    parameters = sum(v.numel() for v in tensors.values())  # counted before int8 adds its scales
    if omitted:
        metadata["omitted"] = ",".join(omitted)
    if int8:
        from .quantize import FORMAT, quantize_tensors

        tensors = quantize_tensors(tensors)
        metadata.update(quantized=FORMAT, omitted=",".join(TRAINING_ONLY))
    if source.iteration is not None:
        metadata["iteration"] = str(source.iteration)
    if source.phase is not None:
        metadata["phase"] = str(source.phase)
    if source.ema:
        metadata.update(weights="ema", ema_beta=f"{source.cfg.train.ema_beta:g}")
    if source.sampling is not None:  # config.yaml carries the value, the metadata how it was chosen
        import json

        keep = (
            "sample_temperature",
            "by_domain",
            "rule",
            "min_accuracy",
            "split",
            "chosen",
            "command",
            "values",
            "sweep",
            "before_refit",
        )
        metadata["sample_temperature_chosen"] = json.dumps(
            {k: source.sampling[k] for k in keep if k in source.sampling}
        )
    weights, config = out / MODEL_FILE, out / CONFIG_FILE
    # held from the last look to the last write: another export started meanwhile (a loop of `&` exports into one
    # --out) is refused, and one that wrote here since the first check is found (was: both wrote, mixing the files)
    with held_folder(out, "--out"):
        if not force:
            for existing in (weights, config):
                refuse_replacing(existing, "--force")
        if (out / ONNX_META_FILE).is_file():
            raise InferenceError(f"--out {out} now holds an ONNX export; export into a folder of its own")
        try:
            atomic_write(
                weights,
                lambda tmp: save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp), metadata=metadata),
            )
            atomic_write(config, lambda tmp: tmp.write_text(dump_config(source.cfg), encoding="utf-8"))
        except (OSError, SafetensorError) as exc:  # safetensors reports a full disk as SafetensorError
            raise InferenceError(
                os_error_line(exc, f"cannot write the export into {out}", "choose another --out")
            ) from None
    return ExportResult(source, out, weights, config, weights.stat().st_size, parameters)
