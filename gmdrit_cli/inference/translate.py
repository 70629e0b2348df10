"""Using a trained model: translate images, interpolate attributes.

Core code only (no typer, no rich): every function returns a plain result object and the CLI
(``cli/infer.py``) renders it. Problems that stop a whole call raise :class:`InferenceError` (one line);
problems with one input image are collected as :class:`InputFailure` and the other inputs go on. Finding,
loading and exporting models is :mod:`gmdrit_cli.inference.model_files`. Every file is written under a temporary name
and renamed into place, and the output folder is only created once there is something to write, so a
failing call leaves nothing behind.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image

from ..config.schema import temperature_of
from ..data.unpaired import to_image, to_tensor
from ..errors import InferenceError
from ..families.base import ModelFamily
from ..limits import MAX_SAMPLES, MAX_STEPS, bounded, finite, temperature_option

# the torch-free half (inputs, decoding, sizes, writing) lives in image_io; these names stay importable here
from .images import (
    InputFailure,
    TranslatedInput,
    _expand,
    _resize,
    _save_gif,
    _save_png,
    _unique_stem,
    check_out,
    check_size,
    compose,
    output_size,
    read_image,
    reference_problem,
    resolve_domain,
    write_translated,  # noqa: F401
)
from .model_files import ModelSource, make_output_folder, untrained_note

BETWEEN = ("random", "references", "components", "domains")


ProgressCallback = Callable[[int, int, str], None]  # (done, total, current input)


# ------------------------------------------------------------------------------------------ inputs


def check_target(model: ModelFamily, domain: int, option: str = "--domain") -> None:
    """Refuse a domain the model cannot translate into (BicycleGAN: only its output domain)."""
    targets = sorted({t for _, t in model.capabilities.tasks(model.cfg.num_domains)})
    if domain not in targets:
        names = model.cfg.data.domains
        raise InferenceError(
            f"{option}: this {model.cfg.model.family} model translates into "
            f"{', '.join(repr(names[t]) for t in targets)} only, not '{names[domain]}'"
        )


def to_model_input(im: Image.Image, size: int, device: torch.device) -> torch.Tensor:
    """RGB image -> 1 x 3 x size x size in [-1, 1] (bicubic, aspect ratio not kept: as in training)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        square = im.resize((size, size), Image.BICUBIC, reducing_gap=3.0)
    return to_tensor(square).unsqueeze(0).to(device)


def _readable_inputs(inputs, model: ModelFamily, size: int, square: bool, failures: list, on_progress=None):
    """Yield ``(path, image, output size, model input 1x3xSxS)`` for every input that decodes; the others are
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
        yield path, im, output_size(im.width, im.height, size, square), to_model_input(im, size, model.device)
    if on_progress:
        on_progress(len(entries), len(entries), "")


def _generator(model: ModelFamily, seed: int) -> torch.Generator:
    return torch.Generator(device=model.device).manual_seed(int(seed))


def _is_mixture(model: ModelFamily) -> bool:
    """True for a model with mixture components (GM-DRIT conditioned on its inferred y)."""
    return model.capabilities.has_mixture


def _components_per_domain(model: ModelFamily) -> int:
    return model.capabilities.components_per_domain if _is_mixture(model) else 1


def _check_component(model: ModelFamily, component: int | None, option: str = "--component") -> None:
    if component is None:
        return
    if not _is_mixture(model):
        raise InferenceError(
            f"{option}: this {model.cfg.model.family} model has no mixture components to draw "
            f"from (none, or a generator conditioned on the domain code); leave it out"
        )
    cpd = _components_per_domain(model)
    if not 0 <= component < cpd:
        raise InferenceError(f"{option} {component}: this model has {cpd} component(s) per domain (0..{cpd - 1})")


def _generate(
    model: ModelFamily, x: torch.Tensor, target: int, z: torch.Tensor, y: torch.Tensor, chunk: int = 8
) -> list[torch.Tensor]:
    """One image per row of (z, y), all translations of the one input ``x`` (1 x 3 x S x S) into ``target``."""
    out = []
    for i in range(0, z.shape[0], chunk):
        out.extend(model.translate(x, target, (z[i : i + chunk], y[i : i + chunk])))
    return out


def _load_references(
    model: ModelFamily, paths: list[Path | str], domains: list[int], size: int
) -> tuple[torch.Tensor, torch.Tensor, list[str]]:
    """(z, y) of each reference image (attribute encoder mean); notes for references the model reads as
    another domain. A reference that cannot be read stops the call."""
    images = []
    for p in paths:
        path = Path(p).expanduser()
        if not path.is_file():
            raise InferenceError(f"reference {p}: {reference_problem(path)}")
        try:
            images.append(to_model_input(read_image(path), size, model.device))
        except InferenceError as exc:
            raise InferenceError(f"reference {p}: {exc}") from None
    x = torch.cat(images)
    d = torch.tensor(domains, dtype=torch.long, device=model.device)
    z, y = model.encode_reference(x, d)
    notes = []
    if _is_mixture(model):
        names = model.cfg.data.domains
        inferred = (y.argmax(dim=1) // _components_per_domain(model)).tolist()
        for p, want, got in zip(paths, domains, inferred):
            if want != got:
                notes.append(
                    f"reference {p} looks like '{names[got]}' to the model, not '{names[want]}'; "
                    f"its attribute (and inferred component) is used as it is"
                )
    return z, y, notes


# ------------------------------------------------------------------------------------------ translate


@dataclass
class TranslateResult:
    model: ModelSource
    domain: str
    mode: str  # "latent" or "reference"
    seed: int
    size: int  # working resolution
    out: Path
    items: list[TranslatedInput] = field(default_factory=list)
    failures: list[InputFailure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def written(self) -> list[Path]:
        return [p for item in self.items for p in (*item.outputs, item.grid)]


@dataclass
class SamplingOptions:
    """The test-time options that choose the attributes of a translation (``gmdrit translate``'s ``--samples``,
    ``--component``, ``--temperature``, ``--reference`` and ``--seed``), checked by :func:`sampling_options`."""

    samples: int  # outputs per input with random attributes (5 when not given)
    samples_given: bool  # False: a family that does not draw by default gives one output at the prior's mean
    component: int | None  # a GM-DRIT component of the target domain to draw from (None: any)
    temperature: float | None  # scale of the prior's standard deviation (None: the model's default per domain)
    references: list[Path | str]  # reference images (their attributes; no random draws)
    seed: int


def sampling_options(
    model: ModelFamily,
    *,
    samples: int | None = None,
    component: int | None = None,
    temperature: float | None = None,
    references: list[Path | str] | None = None,
    seed: int = 0,
) -> SamplingOptions:
    """Check the attribute options of :func:`translate` against each other and the model (an option that
    applies to random attributes only is refused with references), filling in the defaults."""
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
    return SamplingOptions(samples, given, component, temperature, references, int(seed))


@dataclass
class _Attributes:
    """The attributes every input of one :func:`translate` call is decoded with, one output per row."""

    z: torch.Tensor  # M x nz
    y: torch.Tensor  # M x (C or K)
    tag: str  # file-name part before each output's number: "ref" with references, else ""
    notes: list[str] = field(default_factory=list)  # references the model reads as another domain


def _attributes(model: ModelFamily, domain: int, opts: SamplingOptions, size: int) -> _Attributes:
    """The attributes of the outputs into ``domain``: the references' (encoded at ``size``), the prior's mean
    (a family that does not draw by default, without ``--samples``), or ``samples`` draws from the prior."""
    if opts.references:
        z, y, notes = _load_references(model, opts.references, [domain] * len(opts.references), size)
        return _Attributes(z, y, "ref", notes)
    temperature = temperature_of(model.cfg, domain) if opts.temperature is None else opts.temperature
    if not opts.samples_given and not model.capabilities.random_by_default:
        # e.g. the VAE: one output per input, at the prior's mean (its z = mu translation); --samples draws
        _, y = model.sample_attributes(domain, 1, opts.component, _generator(model, opts.seed), temperature)
        z, _ = model.attribute_prior(y)
        return _Attributes(z, y, "")
    z, y = model.draw_attributes(domain, opts.samples, opts.component, _generator(model, opts.seed), temperature)
    return _Attributes(z, y, "")


def _write_translations(
    model: ModelFamily, readable, domain: int, attrs: _Attributes, out: Path
) -> list[TranslatedInput]:
    """Translate every input ``readable`` yields (:func:`_readable_inputs`: path, image, output size, model input
    1 x 3 x S x S) with each row of ``attrs``; write ``<stem>_to_<domain>_<tag><k>.png`` and the grid."""
    name = model.cfg.data.domains[domain]
    used: set[str] = set()
    items = []
    for path, im, wh, x in readable:
        fakes = [_resize(to_image(t), wh) for t in _generate(model, x, domain, attrs.z, attrs.y)]
        stem = _unique_stem(path, used)
        make_output_folder(out)
        items.append(write_translated(path, im, wh, fakes, out=out, stem=stem, name=name, tag=attrs.tag))
    return items


def translate(
    model: ModelFamily,
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
    on_progress: ProgressCallback | None = None,
) -> TranslateResult:
    """Translate every input image into ``domain``.

    Latent-guided (no ``references``): ``samples`` outputs per input (a model whose ``capabilities`` say
    ``random_by_default=False`` gives one output at the prior's mean unless ``samples`` is given), attributes
    drawn from the model's prior
    for ``domain`` (``component`` pins a GM-DRIT component; ``temperature`` scales the prior's standard
    deviation, None: the model's ``model.sample_temperature``) with a generator seeded by ``seed``; the same
    draws serve every input of the call, so an input's outputs depend only on the seed, not on the other
    inputs. Reference-guided: one output per reference image (of ``domain``), its encoded attribute.

    Writes ``<stem>_to_<domain>_<k>.png`` (``_ref<k>`` with references) and ``<stem>_to_<domain>_grid.png``
    (input then outputs) into ``out``.
    """
    start = time.perf_counter()
    cfg = model.cfg
    d = resolve_domain(cfg, domain)
    check_target(model, d)
    size = check_size(cfg, size)
    out = check_out(Path(out).expanduser())
    opts = sampling_options(
        model, samples=samples, component=component, temperature=temperature, references=references, seed=seed
    )
    result = TranslateResult(
        model.source, cfg.data.domains[d], "reference" if opts.references else "latent", opts.seed, size, out
    )
    result.notes += [n for n in [untrained_note(model, [d])] if n]
    attrs = _attributes(model, d, opts, size)
    if opts.references:
        result.notes = attrs.notes
    readable = _readable_inputs(inputs, model, size, square, result.failures, on_progress)
    result.items += _write_translations(model, readable, d, attrs, out)
    result.seconds = time.perf_counter() - start
    return result


# ------------------------------------------------------------------------------------------ interpolate


def slerp(a: torch.Tensor, b: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation between rows of ``a`` and ``b`` (N x D); linear where they are (anti)parallel."""
    na, nb = a.norm(dim=1, keepdim=True), b.norm(dim=1, keepdim=True)
    cos = ((a * b).sum(dim=1, keepdim=True) / (na * nb).clamp_min(1e-12)).clamp(-1.0, 1.0)
    omega = torch.acos(cos)
    so = torch.sin(omega)
    linear = (1 - t) * a + t * b
    safe = so.abs() > 1e-6
    so = torch.where(safe, so, torch.ones_like(so))
    spherical = (torch.sin((1 - t) * omega) / so) * a + (torch.sin(t * omega) / so) * b
    return torch.where(safe, spherical, linear)


@dataclass
class Endpoints:
    """The attribute path of an interpolation: ``frames`` (z, y) pairs, and what its ends are."""

    z: torch.Tensor  # steps x nz
    y: torch.Tensor  # steps x (C or K)
    start: str
    end: str
    tag: str  # file-name part: <stem>_<tag>.png / .gif


def _noise_of(model: ModelFamily, z: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    mean, std = model.attribute_prior(y)
    return (z - mean) / std


def _prior_path(
    model: ModelFamily, eps: list[torch.Tensor], y0: torch.Tensor, y1: torch.Tensor, steps: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """z_t = mean(y_t) + std(y_t) * eps_t with y_t linear and eps_t spherical (or fixed) between the ends."""
    zs, ys = [], []
    for t in torch.linspace(0, 1, steps).tolist():
        y = (1 - t) * y0 + t * y1
        e = slerp(eps[0], eps[1], t) if len(eps) == 2 else eps[0]
        mean, std = model.attribute_prior(y)
        zs.append(mean + std * e)
        ys.append(y)
    return torch.cat(zs), torch.cat(ys)


def _check_between(
    model: ModelFamily, between: str, domains: list[int], components: list[int], references: list[Path | str]
) -> None:
    """Refuse ``--between`` values and option combinations that do not go together."""
    if between not in BETWEEN:
        raise InferenceError(f"--between {between}: choose one of {', '.join(BETWEEN)}")
    if between != "references" and references:
        raise InferenceError("--reference is used with --between references only")
    if between != "domains" and len(domains) > 1 and between != "references":
        raise InferenceError(
            f"--between {between} walks inside one domain; give one --domain "
            f"(two only with --between domains or references)"
        )
    if between == "components" and not _is_mixture(model):
        raise InferenceError(
            "--between components: this model has no mixture components; use --between random or domains"
        )
    for c in components:
        _check_component(model, c)
    if between != "components" and len(components) > 1:
        raise InferenceError("two --component values only with --between components")
    if between == "references" and components:
        raise InferenceError(
            "--component does not apply to --between references: the references give the attributes (and components)"
        )


def _random_path(model: ModelFamily, target: int, component: int | None, gen: torch.Generator, steps: int) -> Endpoints:
    """Two draws from the prior of ``target`` (of ``component`` when given), their noise interpolated spherically."""
    names = model.cfg.data.domains
    z0, y0 = model.draw_attributes(target, 1, component, gen)
    z1, y1 = model.draw_attributes(target, 1, component, gen)
    z, y = _prior_path(model, [_noise_of(model, z0, y0), _noise_of(model, z1, y1)], y0, y1, steps)
    pinned = f"_component{component}" if component is not None else ""
    return Endpoints(z, y, "random attribute 1", "random attribute 2", f"to_{names[target]}_random{pinned}")


def _references_path(
    model: ModelFamily, references: list[Path | str], domains: list[int], size: int, steps: int
) -> tuple[Endpoints, list[str]]:
    """The attributes of two reference images (of ``domains[0]`` and ``domains[-1]``, encoded at ``size``),
    linear between them; notes for references the model reads as another domain."""
    if len(references) != 2:
        raise InferenceError(
            f"--between references needs two reference images (--reference A --reference B), got {len(references)}"
        )
    zr, yr, notes = _load_references(model, references, [domains[0], domains[-1]], size)
    ts = torch.linspace(0, 1, steps, device=zr.device)[:, None]  # steps x 1
    z = (1 - ts) * zr[0:1] + ts * zr[1:2]
    y = (1 - ts) * yr[0:1] + ts * yr[1:2]
    tag = f"references_{Path(str(references[0])).stem}_{Path(str(references[1])).stem}"
    return Endpoints(z, y, str(references[0]), str(references[1]), tag), notes


def _components_path(
    model: ModelFamily, target: int, components: list[int], gen: torch.Generator, steps: int
) -> Endpoints:
    """From one component of ``target`` to another (default 0 and 1): y linear, one fixed noise draw."""
    names = model.cfg.data.domains
    cpd = _components_per_domain(model)
    pair = components or [0, 1]
    if len(pair) != 2:
        raise InferenceError("--between components needs two --component values (or none for 0 and 1)")
    if cpd < 2:
        raise InferenceError(
            "--between components: this model has 1 component per domain "
            "(mixture.components_per_domain); use --between domains or random"
        )
    if pair[0] == pair[1]:
        raise InferenceError(f"--between components: the two components are the same ({pair[0]})")
    z0, y0 = model.draw_attributes(target, 1, pair[0], gen)
    _, y1 = model.draw_attributes(target, 1, pair[1], gen)
    z, y = _prior_path(model, [_noise_of(model, z0, y0)], y0, y1, steps)
    start, end = (f"{names[target]} component {c}" for c in pair)
    return Endpoints(z, y, start, end, f"to_{names[target]}_components_{pair[0]}_{pair[1]}")


def _domains_path(
    model: ModelFamily, domains: list[int], component: int | None, gen: torch.Generator, steps: int
) -> Endpoints:
    """From ``domains[0]`` to ``domains[1]`` (one domain of a two-domain model: from the other one), the
    conditioning linear, one fixed noise draw."""
    cfg = model.cfg
    names = cfg.data.domains
    if len(domains) == 1:
        if cfg.num_domains != 2:
            raise InferenceError("--between domains: give the start and end domains (--domain A --domain B)")
        domains = [1 - domains[0], domains[0]]
    if len(domains) != 2:
        raise InferenceError(f"--between domains takes two --domain values, got {len(domains)}")
    if domains[0] == domains[1]:
        raise InferenceError(f"--between domains: start and end are the same domain ('{names[domains[0]]}')")
    z0, y0 = model.draw_attributes(domains[0], 1, component, gen)
    _, y1 = model.draw_attributes(domains[1], 1, component, gen)
    z, y = _prior_path(model, [_noise_of(model, z0, y0)], y0, y1, steps)
    return Endpoints(z, y, names[domains[0]], names[domains[1]], f"{names[domains[0]]}_to_{names[domains[1]]}")


def interpolation_path(
    model: ModelFamily,
    *,
    between: str,
    domains: list[int],
    steps: int,
    components: list[int] | None = None,
    references: list[Path | str] | None = None,
    seed: int = 0,
    size: int | None = None,
) -> tuple[Endpoints, list[str]]:
    """The (z, y) of every step, for ``between``:

    * ``random``: two draws from the prior of ``domains[-1]`` (MDMM: N(0, I); GM-DRIT: p(z|y) of a component,
      ``components[0]`` pins it), their noise interpolated spherically (``z = mean(y) + std(y) * slerp``);
    * ``references``: the attributes of two reference images (of ``domains[0]`` and ``domains[-1]``), linear;
    * ``components``: GM-DRIT, components ``components`` (default 0 and 1) of ``domains[-1]``, y linear,
      z from the component prior at y with one fixed noise draw;
    * ``domains``: ``domains[0]`` to ``domains[1]`` (MDMM: the domain code, a fixed z; GM-DRIT: the
      component prior, as for components).
    """
    components = list(components or [])
    references = list(references or [])
    gen = _generator(model, seed)
    _check_between(model, between, domains, components, references)
    size = check_size(model.cfg, size)
    first = components[0] if components else None
    if between == "random":
        return _random_path(model, domains[-1], first, gen, steps), []
    if between == "references":
        return _references_path(model, references, domains, size, steps)
    if between == "components":
        return _components_path(model, domains[-1], components, gen, steps), []
    return _domains_path(model, domains, first, gen, steps), []


@dataclass
class InterpolatedInput:
    source: Path
    strip: Path
    gif: Path
    size: tuple[int, int]


@dataclass
class InterpolateResult:
    model: ModelSource
    between: str
    start: str
    end: str
    steps: int
    seed: int
    size: int
    out: Path
    items: list[InterpolatedInput] = field(default_factory=list)
    failures: list[InputFailure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def written(self) -> list[Path]:
        return [p for item in self.items for p in (item.strip, item.gif)]


def _interpolated_domains(model: ModelFamily, domains: list[str | int], between: str) -> list[int]:
    """The indices of the ``--domain`` values (one, or two with ``--between domains`` / ``references``), each
    domain the walk draws or encodes attributes in checked to be one the model translates into."""
    cfg = model.cfg
    if not domains:
        raise InferenceError("give the target domain with --domain")
    if len(domains) > 2:
        raise InferenceError(f"--domain given {len(domains)} times; give one (or two with --between domains)")
    idx = [resolve_domain(cfg, d) for d in domains]
    walked = idx if between == "references" else idx[-1:]  # the domains attributes are drawn or encoded in
    if between == "domains":
        walked = [1 - idx[0], idx[0]] if len(idx) == 1 and cfg.num_domains == 2 else idx
    for d in walked:
        check_target(model, d, "--domain" if walked == idx[-1:] else f"--between {between}")
    return idx


def _check_frames(steps: int, fps: float, loop: int) -> None:
    """Refuse a frame count, frame rate or GIF loop count out of range."""
    if steps < 2:
        raise InferenceError(f"--steps {steps}: give at least 2")
    bounded(steps, "--steps", 2, MAX_STEPS, "every step is a frame of the strip and the GIF")
    finite(fps, "--fps", low=0.2, high=50, why="a GIF stores each frame's time in hundredths of a second")
    if loop < 0:
        raise InferenceError(f"--loop {loop}: 0 loops forever, N plays N more times")
    bounded(loop, "--loop", 0, 65535, "a GIF stores the loop count in 16 bits; 0 loops forever")


def _write_interpolations(
    model: ModelFamily, readable, target: int, path: Endpoints, out: Path, fps: float, loop: int
) -> list[InterpolatedInput]:
    """Decode every step of ``path`` for each input ``readable`` yields (:func:`_readable_inputs`: path, image,
    output size, model input 1 x 3 x S x S) into ``target``; write ``<stem>_<tag>.png`` and ``.gif``."""
    used: set[str] = set()
    items = []
    for p, im, wh, x in readable:
        frames = [_resize(to_image(t), wh) for t in _generate(model, x, target, path.z, path.y)]
        stem = _unique_stem(p, used)
        make_output_folder(out)
        strip = out / f"{stem}_{path.tag}.png"
        gif = out / f"{stem}_{path.tag}.gif"
        _save_png(compose([_resize(im, wh), *frames]), strip)
        _save_gif(frames, gif, fps, loop)
        items.append(InterpolatedInput(p, strip, gif, wh))
    return items


def interpolate(
    model: ModelFamily,
    inputs: list[str | Path],
    *,
    domains: list[str | int],
    steps: int = 8,
    between: str = "random",
    components: list[int] | None = None,
    references: list[Path | str] | None = None,
    seed: int = 0,
    size: int | None = None,
    square: bool = False,
    out: Path | str = "interpolations",
    fps: float = 8.0,
    loop: int = 0,
    on_progress: ProgressCallback | None = None,
) -> InterpolateResult:
    """Walk the attribute between two endpoints (see :func:`interpolation_path`) and decode each step for every
    input: ``<stem>_<tag>.png`` (input then the steps) and ``<stem>_<tag>.gif`` (the steps, ``fps``
    frames per second, ``loop`` as Pillow's GIF loop count: 0 = forever)."""
    start = time.perf_counter()
    cfg = model.cfg
    idx = _interpolated_domains(model, domains, between)
    _check_frames(steps, fps, loop)
    size = check_size(cfg, size)
    out = check_out(Path(out).expanduser())
    path, notes = interpolation_path(
        model,
        between=between,
        domains=idx,
        steps=steps,
        components=components,
        references=references,
        seed=seed,
        size=size,
    )
    result = InterpolateResult(
        model.source,
        between,
        path.start,
        path.end,
        steps,
        int(seed),
        size,
        out,
        notes=notes + [n for n in [untrained_note(model, [idx[-1]])] if n],
    )
    readable = _readable_inputs(inputs, model, size, square, result.failures, on_progress)
    result.items += _write_interpolations(model, readable, idx[-1], path, out, fps, loop)
    result.seconds = time.perf_counter() - start
    return result
