"""``gmdrit translate --checkpoint model.onnx``: translate with an ONNX export (:mod:`gmdrit_cli.inference.onnx_export`)
on onnxruntime, without importing torch.

Same inputs, options, odd-input handling, file names and grid as the torch path (:mod:`gmdrit_cli.inference.translate`,
sharing :mod:`gmdrit_cli.inference.images`). The one difference: random attributes are drawn with numpy's generator,
so ``--seed N`` gives reproducible outputs here too, but not the same draws as the torch path with that seed.
With the same attributes the images agree with torch's within the tolerance the export checked.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from PIL import Image

from .. import jsonfile
from ..colour_gate import gate_from_record, gate_name, gated_draw
from ..config.schema import TEMPERATURE_RANGE, by_domain, temperature_of
from ..errors import InferenceError
from ..limits import MAX_SAMPLES, MAX_TEMPERATURE, MAX_WORK_SIZE, bounded, temperature_option
from ..outputs import output_folder
from ..plain import keep_plain
from .images import (
    InputFailure,
    TranslatedInput,
    _expand,
    _resize,
    _unique_stem,
    check_out,
    check_size,
    output_size,
    read_image,
    reference_problem,
    resolve_domain,
    write_translated,
)

FORMAT = "gmdrit-onnx"  # as onnx_export writes it (not imported from there: that module imports torch)
FORMAT_VERSION = 1
TRANSLATE_FILE = "model.onnx"
PRIOR_FILE = "prior.onnx"
REFERENCE_FILE = "reference.onnx"
META_FILE = "onnx.json"
#: attribute rows decoded per onnxruntime call (memory: a few working-size images at a time)
CHUNK = 8
#: the pretrained model inside the package (``model_files.PRETRAINED``, named here too: that module imports torch)
PRETRAINED_WEIGHTS = Path(__file__).parents[1] / "pretrained" / "apple2orange" / "model.safetensors"
#: its int8 ONNX copy, which ``gmdrit translate`` without a model runs when onnxruntime is installed
PRETRAINED_ONNX = Path(__file__).parents[1] / "pretrained" / "apple2orange-onnx"
#: how the copy is made again after the pretrained model changes (the Makefile target runs this command)
REGENERATE = (
    "make pretrained-onnx (gmdrit export gmdrit_cli/pretrained/apple2orange --format onnx --int8 --force "
    "--out gmdrit_cli/pretrained/apple2orange-onnx)"
)


def packaged_onnx() -> tuple[Path | None, str]:
    """(the ONNX copy of the pretrained model, "") when ``translate`` can run it instead of the torch model:
    onnxruntime is installed, the copy is there and its ``onnx.json`` names the SHA-256 of the pretrained
    ``model.safetensors`` as it is now (a copy of an earlier model is never used); else (None, why not)."""
    import importlib.util

    if importlib.util.find_spec("onnxruntime") is None:
        return None, "onnxruntime is not installed (pip install onnxruntime)"
    meta_path = PRETRAINED_ONNX / META_FILE
    if not meta_path.is_file() or not (PRETRAINED_ONNX / TRANSLATE_FILE).is_file():
        return None, f"this installation has no ONNX copy of the pretrained model ({PRETRAINED_ONNX})"
    if not PRETRAINED_WEIGHTS.is_file():
        return None, f"this installation has no pretrained model ({PRETRAINED_WEIGHTS})"
    try:
        recorded = jsonfile.loads(meta_path.read_text(encoding="utf-8")).get("source_sha256")
    except (OSError, ValueError, RecursionError, AttributeError):
        recorded = None
    import hashlib

    if recorded != hashlib.sha256(PRETRAINED_WEIGHTS.read_bytes()).hexdigest():
        return None, (
            f"the ONNX copy {PRETRAINED_ONNX} was not made from the pretrained model.safetensors there now "
            f"(stale); make it again: {REGENERATE}"
        )
    return PRETRAINED_ONNX, ""


def onnx_folder(path: Path | str | None) -> Path | None:
    """The export folder when ``path`` is an ONNX export (its ``model.onnx``, any ``.onnx`` file in it, or the
    folder holding ``onnx.json``); None for anything else (the torch path handles it)."""
    if path is None:
        return None
    p = Path(path).expanduser()
    if p.suffix.lower() == ".onnx":
        if not p.is_file():
            raise InferenceError(f"{path}: no such file; give the model.onnx written by gmdrit export --format onnx")
        return p.parent
    if p.is_dir() and (p / META_FILE).is_file():
        return p
    return None


class OnnxModel:
    """The graphs and metadata of one ONNX export, on onnxruntime's CPU provider."""

    def __init__(self, folder: Path, threads: int = 0):
        self.folder = folder
        meta_path = folder / META_FILE
        try:
            self.meta = jsonfile.loads(meta_path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InferenceError(
                f"{folder} has no {META_FILE}: export the model again with gmdrit export RUN --format onnx --out FOLDER"
            ) from None
        except (OSError, ValueError, RecursionError) as exc:
            raise InferenceError(f"cannot read {meta_path}: {exc}") from None
        if not isinstance(self.meta, dict) or self.meta.get("format") != FORMAT:
            raise InferenceError(f"{meta_path} is not a gmdrit ONNX export")
        if self.meta.get("format_version") != FORMAT_VERSION:
            raise InferenceError(
                f"{meta_path} is format version {self.meta.get('format_version')}; this gmdrit "
                f"reads version {FORMAT_VERSION}: export the model again"
            )
        problem = _meta_problem(self.meta)
        if problem:
            raise InferenceError(
                f"{meta_path} is damaged ({problem}); export the model again with gmdrit export MODEL "
                f"--format onnx --out FOLDER"
            )
        try:
            import onnxruntime as ort
        except ImportError:
            raise InferenceError("an ONNX model needs onnxruntime: pip install onnxruntime") from None
        self._ort = ort
        self.threads = threads
        self._sessions: dict = {}
        self.cfg = SimpleNamespace(
            data=SimpleNamespace(domains=list(self.meta["domains"]), crop=int(self.meta["crop"])),
            model=SimpleNamespace(
                keep_plain=float(self.meta.get("keep_plain", 0.0)),  # older exports: 0
                sample_temperature=float(self.meta.get("sample_temperature", 1.0)),
                sample_temperature_by_domain=self.meta.get("sample_temperature_by_domain", ""),  # older: none
            ),
        )
        self.device = "onnxruntime (CPU, no torch)"
        self.source = self  # what the CLI's header describes
        self.pretrained = False  # the ONNX copy of the pretrained model (packaged_onnx): described as that
        self.session(TRANSLATE_FILE)  # a damaged graph is found before any input is read
        self._check_graph(meta_path)
        self.colour_gate = self._gate(meta_path)  # after the graph: a gate fits the nz the graph takes

    def _gate(self, meta_path: Path) -> dict:
        """The export's colour gates by target domain (none without a ``colour_gate`` record)."""
        record = self.meta.get("colour_gate")
        if record is None:
            return {}
        try:
            return gate_from_record(record, int(self.meta["nz"]))
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise InferenceError(
                f"{meta_path} is damaged (colour_gate is not a gate gmdrit wrote ({type(exc).__name__})); "
                f"export the model again with gmdrit export MODEL --format onnx --out FOLDER"
            ) from None

    def _check_graph(self, meta_path: Path) -> None:
        """``nz`` and the conditioning rows of ``onnx.json`` against the widths the translation graph takes."""
        widths = {i.name: i.shape[-1] for i in self.session(TRANSLATE_FILE).get_inputs() if i.shape}
        rows = {len(row) for table in self.meta["conditions"].values() for row in table}
        for name, given in (("z", {int(self.meta["nz"])}), ("condition", rows)):
            want = widths.get(name)
            if isinstance(want, int) and given != {want}:
                raise InferenceError(
                    f"{meta_path} does not fit its {TRANSLATE_FILE} ({name} {sorted(given)}, the graph takes "
                    f"{want}); export the model again with gmdrit export MODEL --format onnx --out FOLDER"
                )

    def session(self, name: str):
        if name not in self._sessions:
            options = self._ort.SessionOptions()
            options.log_severity_level = 3
            # no busy-waiting between the few small runs of a translate call (it only burns the other core)
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            if self.threads:
                options.intra_op_num_threads = self.threads
            path = self.folder / name
            if not path.is_file():
                raise InferenceError(
                    f"{path} is missing: the export folder needs {TRANSLATE_FILE}, {PRIOR_FILE}, "
                    f"{REFERENCE_FILE} and {META_FILE}"
                )
            try:
                self._sessions[name] = self._ort.InferenceSession(
                    str(path), options, providers=["CPUExecutionProvider"]
                )
            except Exception as exc:  # onnxruntime raises its own exception types for a damaged file
                text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
                raise InferenceError(f"cannot load {path} ({text}); export the model again") from None
        return self._sessions[name]

    def _run(self, name: str, **feed) -> list[np.ndarray]:
        session = self.session(name)
        names = {i.name for i in session.get_inputs()}
        return session.run(None, {k: v for k, v in feed.items() if k in names})

    # -- what the model is

    @property
    def family(self) -> str:
        return self.meta["family"]

    @property
    def components_per_domain(self) -> int:
        return int(self.meta.get("components_per_domain") or 0)

    def describe(self) -> str:
        it = f", iteration {self.meta['iteration']}" if self.meta.get("iteration") is not None else ""
        gate = self.meta.get("colour_gate") or {}
        it += f", {gate_name(gate)}" if isinstance(gate.get("share"), (int, float)) else ""
        if self.pretrained:
            return (
                f"the embedded pretrained {self.family} model {'/'.join(self.cfg.data.domains)} "
                f"({self.folder / TRANSLATE_FILE}, its int8 ONNX copy{it}; pass --run or --checkpoint for your own)"
            )
        return f"{self.folder / TRANSLATE_FILE} ({self.family}, ONNX export{it})"

    def targets(self) -> list[int]:
        return sorted({int(t) for _, t in self.meta["tasks"]})

    # -- test time, as ModelFamily's methods of the same names

    def sample_attributes(
        self, domain: int, n: int, component: int | None, rng: np.random.Generator, temperature: float = 1.0
    ) -> tuple[np.ndarray, np.ndarray]:
        """``n`` random attributes of ``domain``: a component (uniform, or ``component``) per row, its
        conditioning row, and ``z = mean + temperature * std * noise`` of the prior there."""
        rows = np.asarray(self.meta["conditions"][str(domain)], dtype=np.float32)
        picks = (
            np.full(n, component)
            if component is not None
            else rng.integers(len(rows), size=n)
            if len(rows) > 1
            else np.zeros(n, dtype=np.int64)
        )
        condition = rows[picks]
        noise = rng.standard_normal((n, int(self.meta["nz"])), dtype=np.float32)
        mean, std = self.attribute_prior(condition)
        return (mean + np.float32(temperature) * std * noise).astype(np.float32), condition

    def attribute_prior(self, condition: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mean, std = self._run(PRIOR_FILE, condition=condition)
        return mean, std

    def encode_reference(self, images: np.ndarray, domains: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z, condition = self._run(REFERENCE_FILE, images=images, domains=domains.astype(np.int64))
        return z, condition

    def translate(self, image: np.ndarray, z: np.ndarray, condition: np.ndarray) -> np.ndarray:
        """One input 1 x 3 x S x S in [-1, 1], attributes M x nz and M x D -> M x 3 x S x S."""
        try:
            out = [
                self._run(TRANSLATE_FILE, image=image, z=z[i : i + CHUNK], condition=condition[i : i + CHUNK])[0]
                for i in range(0, z.shape[0], CHUNK)
            ]
        except Exception as exc:  # onnxruntime's own error types: a size the networks cannot take
            sizes = ", ".join(str(s) for s in self.meta.get("checked", {}).get("sizes", [self.cfg.data.crop]))
            raise InferenceError(
                f"this {self.family} export cannot translate at {image.shape[-1]} px "
                f"({str(exc).splitlines()[0][:160]}); sizes it was checked at: {sizes}"
            ) from None
        return keep_plain(image, np.concatenate(out), self.cfg.model.keep_plain)  # the one input broadcasts


def _is_int(value, low: int, high: int | None = None) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low and (high is None or value <= high)


def _meta_problem(meta: dict) -> str | None:
    """What in an ``onnx.json`` is not as :mod:`~gmdrit_cli.inference.onnx_export` writes it, or None (every
    field translate reads is checked here, so that a hand-edited file is one line, not an error deep inside)."""
    domains = meta.get("domains")
    if not isinstance(domains, list) or not domains or not all(isinstance(d, str) and d for d in domains):
        return "domains is not a list of domain names"
    if len(set(domains)) != len(domains):
        return "domains names a domain twice"
    if not isinstance(meta.get("family"), str):
        return "family is not a name"
    if not _is_int(meta.get("crop"), 16, MAX_WORK_SIZE) or meta["crop"] % 4:
        return f"crop {meta.get('crop')!r} is not a multiple of 4 from 16 to {MAX_WORK_SIZE}"
    if not _is_int(meta.get("nz"), 1, 1 << 16):
        return f"nz {meta.get('nz')!r} is not a positive attribute length"
    keep = meta.get("keep_plain", 0.0)
    if not (isinstance(keep, (int, float)) and not isinstance(keep, bool)) or not 0 <= keep <= 1:
        return f"keep_plain {keep!r} is not a number from 0 to 1"
    temperature = meta.get("sample_temperature", 1.0)
    if not (isinstance(temperature, (int, float)) and not isinstance(temperature, bool)) or not (
        0 < temperature <= MAX_TEMPERATURE
    ):
        return f"sample_temperature {temperature!r} is not a number above 0 and at most {MAX_TEMPERATURE:g}"
    try:
        by_domain(meta.get("sample_temperature_by_domain", ""), list(map(str, domains)), TEMPERATURE_RANGE)
    except (TypeError, ValueError) as exc:
        return f"sample_temperature_by_domain: {exc}"
    for key in ("random_by_default", "dynamic_size", "paired_data"):
        if key in meta and not isinstance(meta[key], bool):
            return f"{key} {meta[key]!r} is not true or false"
    cpd = meta.get("components_per_domain")
    if cpd is not None and not _is_int(cpd, 0, 1 << 16):
        return f"components_per_domain {cpd!r} is not a count"
    tasks = meta.get("tasks")
    if (
        not isinstance(tasks, list)
        or not tasks
        or not all(
            isinstance(t, list) and len(t) == 2 and all(_is_int(i, 0, len(domains) - 1) for i in t) for t in tasks
        )
    ):
        return "tasks is not a list of (source, target) domain indices"
    conditions = meta.get("conditions")
    if not isinstance(conditions, dict):
        return "conditions is not a table of each target domain's conditioning rows"
    for _, target in tasks:
        table = conditions.get(str(target))
        if (
            not isinstance(table, list)
            or not table
            or not all(
                isinstance(row, list)
                and row
                and all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in row)
                for row in table
            )
            or len({len(row) for row in table}) != 1
        ):
            return f"conditions has no rows of numbers for domain {target}"
    if cpd and any(len(conditions[str(t)]) != cpd for _, t in tasks):
        return f"conditions does not hold {cpd} row(s) (components_per_domain) per target domain"
    if "iteration" in meta and meta["iteration"] is not None and not _is_int(meta["iteration"], 0):
        return f"iteration {meta['iteration']!r} is not a count"
    checked = meta.get("checked", {})
    if not isinstance(checked, dict) or not isinstance(checked.get("sizes", []), list):
        return "checked is not a record of the sizes the export was checked at"
    return None


def load_onnx(path: Path | str, threads: int = 0) -> OnnxModel:
    folder = onnx_folder(path)
    if folder is None:
        raise InferenceError(f"{path} is not an ONNX export (no {META_FILE} beside {TRANSLATE_FILE})")
    return OnnxModel(folder, threads)


# ------------------------------------------------------------------------------------ images


def to_model_input(im: Image.Image, size: int) -> np.ndarray:
    """RGB image -> 1 x 3 x size x size float32 in [-1, 1], resized as the torch path resizes it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        square = im.resize((size, size), Image.BICUBIC, reducing_gap=3.0)
    arr = np.asarray(square, dtype=np.uint8).astype(np.float32)
    return (arr / np.float32(127.5) - np.float32(1.0)).transpose(2, 0, 1)[None].copy()


def to_image(x: np.ndarray) -> Image.Image:
    """3 x H x W in [-1, 1] -> RGB (rounded half to even and clamped, as the torch path)."""
    arr = np.round((np.clip(x, -1.0, 1.0) + np.float32(1.0)) * np.float32(127.5)).astype(np.uint8)
    return Image.fromarray(arr.transpose(1, 2, 0))


# ------------------------------------------------------------------------------------ translate


@dataclass
class OnnxTranslateResult:
    domain: str
    mode: str
    seed: int
    size: int
    out: Path
    items: list[TranslatedInput] = field(default_factory=list)
    failures: list[InputFailure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def written(self) -> list[Path]:
        return [p for item in self.items for p in (*item.outputs, item.grid)]


def _check_component(model: OnnxModel, component: int | None) -> None:
    if component is None:
        return
    cpd = model.components_per_domain
    if cpd <= 0:
        raise InferenceError(f"--component: this model ({model.family}) has no mixture components; leave it out")
    if not 0 <= component < cpd:
        raise InferenceError(f"--component {component}: this model has {cpd} component(s) per domain (0..{cpd - 1})")


def _check_target(model: OnnxModel, domain: str | int, size: int | None) -> tuple[int, int]:
    """The index of ``domain`` (one the export translates into) and the working size (one the export takes)."""
    names = model.cfg.data.domains
    d = resolve_domain(model.cfg, domain)
    if d not in model.targets():
        raise InferenceError(
            f"--domain: this {model.family} model translates into "
            f"{', '.join(repr(names[t]) for t in model.targets())} only, not '{names[d]}'"
        )
    size = check_size(model.cfg, size)
    if size != model.cfg.data.crop and not model.meta.get("dynamic_size"):
        raise InferenceError(f"--size {size}: this {model.family} export works at {model.cfg.data.crop} px only")
    return d, size


@dataclass
class _Sampling:
    """The checked attribute options of one :func:`translate` call, defaults filled in."""

    samples: int  # outputs per input with random attributes
    samples_given: bool
    component: int | None
    temperature: float | None  # None: the export's default of the target domain
    references: list[Path | str]


def _sampling(
    model: OnnxModel,
    samples: int | None,
    component: int | None,
    temperature: float | None,
    references: list[Path | str] | None,
) -> _Sampling:
    """Check the attribute options against each other and the export (as the torch path does)."""
    references = list(references or [])
    if references and component is not None:
        raise InferenceError(
            "--component applies to random attributes; with --reference the attribute "
            "(and component) comes from the reference image"
        )
    if references and samples is not None:
        raise InferenceError(
            "--samples applies to random attributes; with --reference there is one output per reference image"
        )
    if references and temperature is not None and temperature != 1.0:
        raise InferenceError(
            "--temperature applies to random attributes; with --reference the attribute comes from the reference image"
        )
    temperature_option(temperature)  # None: the model's defaults, checked with its config
    _check_component(model, component)
    given = samples is not None
    samples = 5 if samples is None else samples
    if not references:
        bounded(
            samples,
            "--samples",
            1,
            MAX_SAMPLES,
            "each sample is a file and a column of the grid; run again with another --seed for more",
        )
    return _Sampling(samples, given, component, temperature, references)


def _reference_attributes(
    model: OnnxModel, references: list[Path | str], d: int, size: int, notes: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """z R x nz and condition R x D of the reference images (each read at ``size``); a note in ``notes`` for
    each reference the export reads as another domain."""
    names = model.cfg.data.domains
    images = []
    for p in references:
        path = Path(p).expanduser()
        if not path.is_file():
            raise InferenceError(f"reference {p}: {reference_problem(path)}")
        try:
            images.append(to_model_input(read_image(path), size))
        except InferenceError as exc:
            raise InferenceError(f"reference {p}: {exc}") from None
    z, condition = model.encode_reference(np.concatenate(images), np.full(len(images), d))
    cpd = model.components_per_domain
    if cpd > 0 and condition.shape[1] == cpd * len(names):
        for p, got in zip(references, (condition.argmax(axis=1) // cpd).tolist()):
            if got != d:
                notes.append(
                    f"reference {p} looks like '{names[got]}' to the model, not '{names[d]}'; "
                    "its attribute (and inferred component) is used as it is"
                )
    return z, condition


def _random_attributes(model: OnnxModel, d: int, opts: _Sampling, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """z M x nz and condition M x D drawn from the prior of ``d`` with numpy's generator seeded by ``seed``
    (one row at the prior's mean for an export that does not draw by default, without ``--samples``)."""
    rng = np.random.default_rng(int(seed))
    temperature = temperature_of(model.cfg, d) if opts.temperature is None else opts.temperature
    if not opts.samples_given and not model.meta.get("random_by_default", True):
        _, condition = model.sample_attributes(d, 1, opts.component, rng, temperature)
        z, _ = model.attribute_prior(condition)
        return z, condition
    return gated_draw(
        lambda m: model.sample_attributes(d, m, opts.component, rng, temperature),
        opts.samples,
        model.colour_gate.get(d),
        np.asarray,
        np.concatenate,
    )


def _readable_inputs(inputs: list[str | Path], size: int, square: bool, failures: list[InputFailure], on_progress):
    """Yield ``(path, image, output size, model input 1 x 3 x S x S)`` for every input that decodes; the others are
    appended to ``failures`` so the rest of the call goes on."""
    entries = _expand(inputs)
    for i, path in enumerate(entries):
        if on_progress:
            on_progress(i, len(entries), path.source if isinstance(path, InputFailure) else str(path))
        if isinstance(path, InputFailure):
            failures.append(path)
            continue
        try:
            im = read_image(path)
        except InferenceError as exc:
            failures.append(InputFailure(str(path), str(exc)))
            continue
        yield path, im, output_size(im.width, im.height, size, square), to_model_input(im, size)
    if on_progress:
        on_progress(len(entries), len(entries), "")


@dataclass
class _Attributes:
    """The attributes every input of one :func:`translate` call is decoded with, one output per row."""

    z: np.ndarray  # M x nz
    condition: np.ndarray  # M x D
    tag: str  # file-name part before each output's number: "ref" with references, else ""


def _write_translations(
    model: OnnxModel, readable, domain: int, attrs: _Attributes, out: Path
) -> list[TranslatedInput]:
    """Translate every input ``readable`` yields (:func:`_readable_inputs`) with each row of ``attrs``; write
    ``<stem>_to_<domain>_<tag><k>.png`` and the grid into ``out``."""
    name = model.cfg.data.domains[domain]
    used: set[str] = set()
    items = []
    for path, im, wh, x in readable:
        fakes = [_resize(to_image(t), wh) for t in model.translate(x, attrs.z, attrs.condition)]
        stem = _unique_stem(path, used)
        output_folder(out, "--out")
        items.append(write_translated(path, im, wh, fakes, out=out, stem=stem, name=name, tag=attrs.tag))
    return items


def translate(
    model: OnnxModel,
    inputs: list[str | Path],
    *,
    domain: str | int,
    samples: int | None = None,
    component: int | None = None,
    temperature: float | None = None,
    references: list[Path | str] | None = None,
    seed: int = 0,
    size: int | None = None,
    square: bool = False,
    out: Path | str = "translations",
    on_progress: Callable[[int, int, str], None] | None = None,
) -> OnnxTranslateResult:
    """:func:`gmdrit_cli.inference.translate.translate` with an ONNX export: the same options, checks and files."""
    start = time.perf_counter()
    d, size = _check_target(model, domain, size)
    out = check_out(Path(out).expanduser())
    opts = _sampling(model, samples, component, temperature, references)
    mode = "reference" if opts.references else "latent"
    result = OnnxTranslateResult(model.cfg.data.domains[d], mode, int(seed), size, out)
    if opts.references:
        attrs = _Attributes(*_reference_attributes(model, opts.references, d, size, result.notes), "ref")
    else:
        attrs = _Attributes(*_random_attributes(model, d, opts, seed), "")
    readable = _readable_inputs(inputs, size, square, result.failures, on_progress)
    result.items += _write_translations(model, readable, d, attrs, out)
    result.seconds = time.perf_counter() - start
    return result
