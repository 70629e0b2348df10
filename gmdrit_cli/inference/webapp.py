"""``gmdrit app``: a web page to try a trained model without writing code (Gradio, the optional extra ``app``).

Core code (no typer, no rich): :class:`AppModel` wraps a torch model (any family, through the contract)
or an ONNX export (:mod:`gmdrit_cli.inference.onnx_translate`); :func:`run_request` checks one request's upload and
options and translates with the same functions as ``gmdrit translate`` / ``gmdrit interpolate``, writing into
a fresh folder per request; :func:`build_page` lays out the Gradio page around it. A bad upload (not an
image, too large, an animation, an empty file) or a bad option becomes a message in the page, never an
exception that stops the server.
"""

from __future__ import annotations

import secrets
import shutil
import tempfile
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

from ..config.schema import temperature_of
from ..errors import GmdritError, InferenceError

#: samples per request in the page (each is decoded on the server for every visitor; the CLI allows 100)
MAX_APP_SAMPLES = 16
#: interpolation frames per request in the page (each frame is a decoded image)
MAX_APP_STEPS = 32
#: largest upload in pixels: decoding and resizing a bigger one takes seconds and hundreds of MB on a shared
#: server (the CLI goes up to Pillow's decompression-bomb limit of about 179 MP)
MAX_UPLOAD_PIXELS = 40_000_000
#: largest upload in bytes (the page is for photos, not archives)
MAX_UPLOAD_BYTES = 50_000_000
#: the reference images a request may use
MAX_REFERENCES = 8

MODE_RANDOM = "random attributes"
MODE_REFERENCE = "reference image(s)"
MODE_COMPONENT = "mixture component (GM-DRIT)"

SAMPLES = Path(__file__).parents[1] / "sample_data" / "apple2orange"


def example_images() -> list[Path]:
    """The embedded test images (apples, then oranges), the page's examples."""
    return sorted((SAMPLES / "testA").glob("*.jpg")) + sorted((SAMPLES / "testB").glob("*.jpg"))


def check_upload(path: str | Path | None, what: str = "the image") -> list[str]:
    """Refuse an upload the page cannot use with :class:`InferenceError` (one line); otherwise notes about
    what will be done with it (first frame of an animation, grey converted to colour)."""
    if path is None or str(path) == "":
        raise InferenceError(f"upload {what} first (or pick an example)")
    p = Path(path)
    name = p.name
    try:
        size = p.stat().st_size
    except OSError:
        raise InferenceError(f"{what} ({name}) could not be read; upload it again") from None
    if size == 0:
        raise InferenceError(f"{what} ({name}) is an empty file")
    if size > MAX_UPLOAD_BYTES:
        raise InferenceError(
            f"{what} ({name}) is {size / 1e6:.0f} MB; upload at most {MAX_UPLOAD_BYTES // 1_000_000} MB"
        )
    notes = []
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(p) as im:
                w, h = im.size
                if w * h > MAX_UPLOAD_PIXELS:
                    raise InferenceError(
                        f"{what} ({name}) is {w}x{h} pixels ({w * h / 1e6:.0f} MP); the page takes at "
                        f"most {MAX_UPLOAD_PIXELS / 1e6:.0f} MP (decoding takes seconds and memory on "
                        "the server): scale it down first"
                    )
                if getattr(im, "n_frames", 1) > 1:
                    notes.append(f"{name} is animated ({im.n_frames} frames): its first frame is used")
                if im.mode in ("L", "LA", "1", "I", "I;16", "F") or im.mode.startswith("I;16"):
                    notes.append(f"{name} is greyscale: it is translated as a grey colour image")
                im.load()
    except InferenceError:
        raise
    except UnidentifiedImageError:
        raise InferenceError(f"{what} ({name}) is not an image (Pillow does not recognise its format)") from None
    except Image.DecompressionBombError:
        raise InferenceError(f"{what} ({name}) is too large to decode safely") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        raise InferenceError(
            f"{what} ({name}) is damaged or truncated ({str(exc).splitlines()[0] if str(exc) else type(exc).__name__})"
        ) from None
    return notes


def first_frame(path: Path, folder: Path) -> Path:
    """A still PNG of an animation's first frame (the translate path decodes the first frame anyway; the
    file is kept so the downloads show what was used)."""
    with Image.open(path) as im:
        im.seek(0)
        still = im.convert("RGBA") if im.mode in ("P", "RGBA", "LA") else im.convert("RGB")
        target = folder / f"{path.stem}.png"
        still.save(target, format="PNG")
    return target


# ------------------------------------------------------------------------------------------ the model


@dataclass
class AppModel:
    """The model the page serves: torch (``model`` a ModelFamily) or ONNX (``model`` an OnnxModel)."""

    model: object
    onnx: bool
    family: str
    domains: list[str]
    targets: list[str]
    components_per_domain: int
    sample_temperatures: dict[str, float]  # the model's default temperature by target domain name
    crop: int
    description: str
    paired: bool = False
    notes: list[str] = field(default_factory=list)

    @property
    def modes(self) -> list[str]:
        return [MODE_RANDOM, MODE_REFERENCE] + ([MODE_COMPONENT] if self.components_per_domain > 0 else [])

    @property
    def interpolates(self) -> bool:
        return not self.onnx


def load_app_model(path: Path | str | None = None, onnx: bool = False, threads: int = 0) -> AppModel:
    """The model of a run / checkpoint / export (``None``: the pretrained one); ``onnx``: ``path`` (or, when it
    is a torch model, nothing else: export it first) is an ONNX export run on onnxruntime."""
    from .onnx_translate import onnx_folder

    if onnx or onnx_folder(path) is not None:
        if path is None:
            raise InferenceError(
                "--onnx needs --checkpoint FOLDER of `gmdrit export --format onnx` (the "
                "pretrained model: gmdrit export gmdrit_cli/pretrained/apple2orange --format onnx --out DIR)"
            )
        from .onnx_translate import load_onnx

        m = load_onnx(path, threads)
        meta = m.meta
        names = list(meta["domains"])
        return AppModel(
            m,
            True,
            m.family,
            names,
            [names[t] for t in m.targets()],
            m.components_per_domain,
            {names[t]: temperature_of(m.cfg, t) for t in m.targets()},
            int(meta["crop"]),
            m.describe(),
            paired=bool(meta.get("paired_data", False)),  # exports before this key: no edge-map option
        )
    from .model_files import load_for_inference

    if threads:
        import torch

        torch.set_num_threads(threads)
    cfg, m = load_for_inference(path, "cpu")
    caps = m.capabilities
    names = list(cfg.data.domains)
    targets = sorted({t for _, t in caps.tasks(cfg.num_domains)})
    return AppModel(
        m,
        False,
        cfg.model.family,
        names,
        [names[t] for t in targets],
        caps.components_per_domain if caps.has_mixture else 0,
        {names[t]: temperature_of(cfg, t) for t in targets},
        cfg.data.crop,
        m.source.describe() if m.source is not None else cfg.model.family,
        paired=caps.paired_data,
    )


# ------------------------------------------------------------------------------------------ a request


@dataclass
class Request:
    image: str | None
    domain: str
    mode: str = MODE_RANDOM
    samples: int = 5
    temperature: float | None = None
    component: int = 0
    seed: int = 0
    randomize: bool = True
    references: list[str] = field(default_factory=list)
    interpolate: bool = False
    steps: int = 8
    edges_from_photo: bool = False


@dataclass
class Response:
    images: list[tuple[str, str]] = field(default_factory=list)  # (file, caption) for the gallery
    files: list[str] = field(default_factory=list)  # everything written, for download
    gif: str | None = None
    seed: int = 0
    message: str = ""
    ok: bool = True


def _edges(path: Path, folder: Path, crop: int) -> Path:
    from ..data.edges import default_sigma, edges_image
    from .images import read_image

    photo = read_image(path)
    target = folder / f"{path.stem}_edges.png"
    edges_image(photo, default_sigma(max(photo.size))).save(target, format="PNG")
    return target


def run_request(app_model: AppModel, request: Request, work_root: Path) -> Response:
    """Check and run one request; any problem is the response's message (``ok`` False), never an exception."""
    folder = Path(tempfile.mkdtemp(prefix="request-", dir=work_root))
    try:
        return _run(app_model, request, folder)
    except GmdritError as exc:
        shutil.rmtree(folder, ignore_errors=True)
        return Response(seed=_seed_shown(request.seed), message=f"error: {exc}", ok=False)
    except MemoryError:
        shutil.rmtree(folder, ignore_errors=True)
        return Response(
            seed=request.seed,
            message="error: not enough memory for this request; use fewer samples or a smaller image",
            ok=False,
        )


def _seed_shown(seed) -> int:
    """The seed an error response shows back in the page's seed box: the request's when it is one."""
    return seed if isinstance(seed, int) and not isinstance(seed, bool) else 0


@dataclass
class _Checked:
    """One request after its checks: what the translation runs with."""

    image: Path  # the input as the model reads it (first frame of an animation, or the edge map made from it)
    samples: int
    temperature: float
    seed: int
    references: list[Path]
    component: int | None  # mixture component mode only
    notes: list[str]  # for the page, in the order they arose


def _whole(value, name: str) -> int:
    """A number field of the page as an int: a field left empty (None), text, NaN or a fraction is a message,
    not an exception (Gradio sends whatever its API is given, and an emptied number box as None)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    try:
        number = float(value)
        whole = int(number)
    except (TypeError, ValueError, OverflowError):
        raise InferenceError(f"{name}: give a whole number (got {value!r})") from None
    if number != whole:
        raise InferenceError(f"{name}: give a whole number (got {value!r})")
    return whole


def _real(value, name: str) -> float:
    """A number field of the page as a float (its range is checked by the caller)."""
    try:
        return float(value)
    except (TypeError, ValueError, OverflowError):
        raise InferenceError(f"{name}: give a number (got {value!r})") from None


def _check_options(app_model: AppModel, request: Request) -> tuple[list[str], int, float, int]:
    """The upload's notes, the number of samples, the temperature and the seed (drawn when ``randomize``)."""
    from ..limits import bounded, finite
    from ..limits import seed as check_seed

    notes = check_upload(request.image)
    if request.domain not in app_model.targets:
        raise InferenceError(f"choose a target domain: {', '.join(app_model.targets)}")
    if request.mode not in app_model.modes:
        raise InferenceError(f"mode {request.mode!r} is not available for this {app_model.family} model")
    samples = bounded(
        _whole(request.samples, "samples"),
        "samples",
        1,
        MAX_APP_SAMPLES,
        "each sample is decoded on the server for every visitor; the CLI allows more",
    )
    temperature = (
        app_model.sample_temperatures[request.domain]
        if request.temperature is None
        else _real(request.temperature, "temperature")
    )
    finite(
        temperature,
        "temperature",
        high=10.0,
        why="1 = the model's prior; far past it the attributes leave what the model was trained on",
    )
    seed = secrets.randbelow(2**31) if request.randomize else check_seed(_whole(request.seed, "seed"), "seed")
    return notes, samples, temperature, seed


def _input_image(app_model: AppModel, request: Request, folder: Path, notes: list[str]) -> Path:
    """The upload as the model reads it: its first frame when animated; the edge map made from it on request."""
    image = Path(request.image)
    if any("animated" in n for n in notes):
        image = first_frame(image, folder)
    if request.edges_from_photo:
        if not app_model.paired:
            raise InferenceError("'make an edge map' is for BicycleGAN models (edges -> photos)")
        image = _edges(image, folder, app_model.crop)
        notes.append("the edge map made from the photo is the input (first image of the downloads)")
    return image


def _references(request: Request, notes: list[str]) -> list[Path]:
    """The reference images of reference mode, each upload checked (none in the other modes)."""
    if request.mode != MODE_REFERENCE:
        return []
    refs = [r for r in request.references or [] if r]
    if not refs:
        raise InferenceError("reference mode: upload one or more reference images of the target domain")
    if len(refs) > MAX_REFERENCES:
        raise InferenceError(f"{len(refs)} reference images: give at most {MAX_REFERENCES} (one output each)")
    for r in refs:
        notes += check_upload(r, "a reference image")
    return [Path(r) for r in refs]


def _component(app_model: AppModel, request: Request) -> int | None:
    """The mixture component of component mode (None in the other modes)."""
    from ..limits import bounded

    if request.mode != MODE_COMPONENT:
        return None
    return bounded(
        _whole(request.component, "component"),
        "component",
        0,
        app_model.components_per_domain - 1,
        f"this model has {app_model.components_per_domain} components per domain",
    )


def _check(app_model: AppModel, request: Request, folder: Path) -> _Checked:
    """Check every part of ``request`` (an :class:`InferenceError` names the first problem)."""
    notes, samples, temperature, seed = _check_options(app_model, request)
    image = _input_image(app_model, request, folder, notes)
    references = _references(request, notes)
    return _Checked(image, samples, temperature, seed, references, _component(app_model, request), notes)


def _translate(app_model: AppModel, request: Request, c: _Checked, out: Path):
    """``gmdrit translate`` of the request's image into ``out`` (torch or ONNX); its result."""
    kwargs = dict(domain=request.domain, component=c.component, seed=c.seed, out=out)
    if c.references:
        kwargs.update(references=c.references)
    else:
        kwargs.update(samples=c.samples, temperature=c.temperature)
    if app_model.onnx:
        from .onnx_translate import translate
    else:
        from .translate import translate
    result = translate(app_model.model, [c.image], **kwargs)
    if result.failures:
        raise InferenceError(result.failures[0].message)
    return result


def _add_interpolation(app_model: AppModel, request: Request, c: _Checked, folder: Path, response: Response) -> None:
    """The interpolation GIF between two draws (or the chosen component and the next) into ``response``."""
    if not app_model.interpolates:
        c.notes.append("interpolation needs the torch model (not an ONNX export); it was skipped")
        return
    from ..limits import bounded
    from .translate import interpolate

    steps = bounded(_whole(request.steps, "steps"), "steps", 2, MAX_APP_STEPS, "each frame is a decoded image")
    component, cpd = c.component, app_model.components_per_domain
    between = "components" if component is not None and cpd > 1 else "random"
    comps = [component, (component + 1) % cpd] if between == "components" else None
    inter = interpolate(
        app_model.model,
        [c.image],
        domains=[request.domain],
        steps=steps,
        between=between,
        components=comps,
        seed=c.seed,
        out=folder / "interpolations",
    )
    if inter.items:
        response.gif = str(inter.items[0].gif)
        response.files += [str(inter.items[0].strip), response.gif]


def _message(request: Request, c: _Checked) -> str:
    """The page's status text: what was done, then the notes."""
    what = (
        f"{len(c.references)} reference image(s)"
        if c.references
        else f"{c.samples} random attribute(s)"
        + (f" of component {c.component}" if c.component is not None else "")
        + f" at temperature {c.temperature:g}"
    )
    return "\n".join(
        [f"translated into '{request.domain}' with {what}; seed {c.seed}"] + [f"note: {n}" for n in c.notes]
    )


def _run(app_model: AppModel, request: Request, folder: Path) -> Response:
    c = _check(app_model, request, folder)
    result = _translate(app_model, request, c, folder / "translations")
    c.notes += result.notes
    item = result.items[0]
    response = Response(seed=c.seed)
    response.images = [(str(p), f"{request.domain} {k}") for k, p in enumerate(item.outputs, 1)]
    response.files = [str(p) for p in ([c.image] if request.edges_from_photo else []) + item.outputs + [item.grid]]
    if request.interpolate:
        _add_interpolation(app_model, request, c, folder, response)
    response.message = _message(request, c)
    return response


# ------------------------------------------------------------------------------------------ the page


#: the translate handler's inputs, in the order of :class:`Request`'s fields
_REQUEST_CONTROLS = (
    "image",
    "domain",
    "mode",
    "samples",
    "temperature",
    "component",
    "seed",
    "randomize",
    "references",
    "interpolate",
    "steps",
    "edges",
)


def _input_controls(gr, app_model: AppModel) -> dict:
    """The upload, its preview and the sample images (Gradio components by name)."""
    # a file input, not gr.Image: Gradio would decode an image upload itself and answer a bad file
    # with its own error; here every upload reaches check_upload and its message
    image = gr.File(
        label="input image" + (" (an edge map, or a photo with 'make an edge map')" if app_model.paired else ""),
        file_count="single",
        type="filepath",
        elem_id="input-image",
        height=120,
    )
    preview = gr.Image(label="input", type="filepath", interactive=False, elem_id="preview", height=200)
    examples = [str(p) for p in example_images()]
    gr.Examples(examples=examples, inputs=image, label="sample images (the embedded test apples and oranges)")
    return {"image": image, "preview": preview}


def _attribute_controls(gr, app_model: AppModel) -> dict:
    """Target domain, mode, samples, temperature, component and references (Gradio components by name)."""
    targets = app_model.targets
    default_domain = targets[-1] if "orange" not in targets else "orange"
    c = {"domain": gr.Dropdown(targets, value=default_domain, label="target domain", elem_id="domain")}
    c["mode"] = gr.Radio(app_model.modes, value=MODE_RANDOM, label="mode", elem_id="mode")
    c["samples"] = gr.Slider(1, MAX_APP_SAMPLES, value=5, step=1, label="number of samples", elem_id="samples")
    c["temperature"] = gr.Slider(
        0.0,
        2.0,
        value=app_model.sample_temperatures[default_domain],
        step=0.01,
        label="temperature (default: the model's for the target domain)",
        elem_id="temperature",
    )
    c["component"] = gr.Number(
        0,
        precision=0,
        minimum=0,
        maximum=max(0, app_model.components_per_domain - 1),
        label="component (mixture component mode)",
        visible=app_model.components_per_domain > 0,
        elem_id="component",
    )
    c["references"] = gr.File(file_count="multiple", label="reference image(s) (reference mode)", elem_id="references")
    return c


def _run_controls(gr, app_model: AppModel) -> dict:
    """Seed, interpolation, edge map and the Translate button (Gradio components by name)."""
    c = {}
    with gr.Row():
        c["seed"] = gr.Number(0, precision=0, minimum=0, label="seed", elem_id="seed")
        c["randomize"] = gr.Checkbox(True, label="randomize seed", elem_id="randomize")
    with gr.Row():
        c["interpolate"] = gr.Checkbox(
            False,
            label="interpolation GIF between two draws (or components)",
            visible=app_model.interpolates,
            elem_id="interpolate",
        )
        c["steps"] = gr.Slider(
            2, MAX_APP_STEPS, value=8, step=1, label="frames", visible=app_model.interpolates, elem_id="steps"
        )
    c["edges"] = gr.Checkbox(
        False, label="make an edge map from the photo first", visible=app_model.paired, elem_id="edges"
    )
    c["button"] = gr.Button("Translate", variant="primary", elem_id="translate")
    return c


def _output_controls(gr, app_model: AppModel) -> dict:
    """Status line, output gallery, interpolation GIF and downloads (Gradio components by name)."""
    return {
        "status": gr.Markdown("Upload an image (or pick a sample), then press Translate.", elem_id="status"),
        "gallery": gr.Gallery(
            label="outputs", columns=5, height="auto", elem_id="outputs", format="png", interactive=False
        ),
        "gif": gr.Image(
            label="interpolation",
            type="filepath",
            visible=app_model.interpolates,
            elem_id="interpolation",
            interactive=False,
        ),
        "downloads": gr.File(label="downloads", file_count="multiple", elem_id="downloads", interactive=False),
    }


def _translate_handler(app_model: AppModel, work_root: Path):
    """The Translate button's function: the controls' values (:data:`_REQUEST_CONTROLS`) -> gallery, GIF,
    downloads, seed and status."""

    def on_translate(
        image_v,
        domain_v,
        mode_v,
        samples_v,
        temperature_v,
        component_v,
        seed_v,
        randomize_v,
        references_v,
        interpolate_v,
        steps_v,
        edges_v,
    ):
        refs = [getattr(r, "name", r) for r in (references_v or [])]
        request = Request(
            image_v,
            domain_v,
            mode_v,
            samples_v,  # numbers as sent: run_request checks each (an emptied box is None, the API sends anything)
            temperature_v,
            component_v,
            seed_v,
            bool(randomize_v),
            refs,
            bool(interpolate_v),
            steps_v,
            bool(edges_v),
        )
        r = run_request(app_model, request, work_root)
        text = r.message.replace("\n", "  \n")
        return r.images or None, r.gif, r.files or None, r.seed, text  # None clears the gallery

    return on_translate


def _upload_handler(work_root: Path):
    """The upload's change function: the file -> the preview (its first frame when animated) and the status."""

    def on_upload(image_v):
        if image_v is None:
            return None, "Upload an image (or pick a sample), then press Translate."
        try:
            notes = check_upload(image_v)
        except GmdritError as exc:
            return None, f"error: {exc}"
        shown = image_v
        if any("animated" in n for n in notes):
            shown = str(first_frame(Path(image_v), Path(tempfile.mkdtemp(prefix="upload-", dir=work_root))))
        return shown, "  \n".join(["ready: press Translate"] + [f"note: {n}" for n in notes])

    return on_upload


def build_page(app_model: AppModel, work_root: Path):
    """The Gradio Blocks page of ``app_model``; requests write under ``work_root``."""
    import gradio as gr

    with gr.Blocks(title="gmdrit") as page:
        gr.Markdown(f"## gmdrit: diverse image-to-image translation\nModel: {app_model.description}")
        with gr.Row():
            with gr.Column(scale=1):
                c = _input_controls(gr, app_model)
                c.update(_attribute_controls(gr, app_model))
                c.update(_run_controls(gr, app_model))
            with gr.Column(scale=2):
                c.update(_output_controls(gr, app_model))
        c["image"].change(_upload_handler(work_root), [c["image"]], [c["preview"], c["status"]])
        # the temperature slider starts at the model's default of the chosen target domain
        c["domain"].change(lambda name: app_model.sample_temperatures.get(name), [c["domain"]], [c["temperature"]])
        c["button"].click(
            _translate_handler(app_model, work_root),
            [c[name] for name in _REQUEST_CONTROLS],
            [c["gallery"], c["gif"], c["downloads"], c["seed"], c["status"]],
            concurrency_limit=1,
        )
    return page


def check_address(host: str, port: int) -> None:
    """Refuse, with the option to change, an address the page cannot be served on: a ``--host`` that does not
    resolve or is not this machine's, a ``--port`` in use (the server library blamed the port for a bad
    host, after a log line of its own)."""
    import errno
    import socket

    if ":" in host:  # the server library writes http://HOST:PORT/ unbracketed and fails on its own URL
        raise InferenceError(
            f"--host {host}: an IPv6 address, which the page's server (Gradio) cannot serve on; give an IPv4 address, "
            f"127.0.0.1 (this machine only) or 0.0.0.0 (every network interface), or a name such as localhost"
        )
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0]
    except (socket.gaierror, UnicodeError) as exc:
        why = getattr(exc, "strerror", None) or str(exc)
        raise InferenceError(
            f"--host {host}: not an address nor a name that resolves ({why}); give an address of this machine, "
            f"e.g. 127.0.0.1 (this machine only) or 0.0.0.0 (every network interface)"
        ) from None
    with socket.socket(family, kind, proto) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(address)
        except OSError as exc:
            if exc.errno == errno.EADDRINUSE:
                raise InferenceError(f"port {port} of {host} is in use; choose another --port") from None
            raise InferenceError(
                f"cannot serve on {host}:{port} ({exc.strerror or exc}); give an address of this machine with "
                f"--host, e.g. 127.0.0.1, or another --port"
            ) from None


class _OneLineTracebacks:
    """Python's ``traceback`` module for Gradio's request handling, except that ``print_exc`` logs one line: Gradio
    prints the whole traceback of every request it refuses (text in a number field, missing inputs, a path nobody
    uploaded), so any client could fill the terminal of ``gmdrit app`` with them; the client gets its error
    event either way."""

    def __getattr__(self, name: str):
        import traceback

        return getattr(traceback, name)

    @staticmethod
    def print_exc(*args, **kwargs) -> None:
        import logging
        import sys

        error = sys.exc_info()[1]
        first = str(error).strip().splitlines()[0][:200] if error is not None and str(error).strip() else ""
        logging.getLogger("gmdrit.app").warning(f"a request was refused: {type(error).__name__}: {first}")


def _quiet_gradio_tracebacks() -> None:
    """Give Gradio's request-handling modules :class:`_OneLineTracebacks` in place of ``traceback``."""
    import importlib
    import logging

    for name in ("gradio.queueing", "gradio.routes", "gradio.utils", "gradio.route_utils"):
        module = importlib.import_module(name)
        if hasattr(module, "traceback"):
            module.traceback = _OneLineTracebacks()
    logging.getLogger("httpx").setLevel(logging.WARNING)  # Gradio's own requests to itself, one line each


def serve(app_model: AppModel, host: str = "127.0.0.1", port: int = 7860, block: bool = True):
    """Start the page on ``host:port``; with ``block`` False return (page, url) and leave it serving. Blocking,
    the folder of the page's uploads and outputs is removed when the server stops."""
    import os

    os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")  # no usage reports from a local tool
    check_address(host, port)
    _quiet_gradio_tracebacks()
    work_root = Path(tempfile.mkdtemp(prefix="gmdrit-app-"))
    page = build_page(app_model, work_root)
    page.queue(default_concurrency_limit=1)
    try:
        page.launch(
            server_name=host,
            server_port=port,
            prevent_thread_lock=not block,
            share=False,
            inbrowser=False,
            show_error=True,
            allowed_paths=[str(work_root), str(SAMPLES)],
            quiet=True,
        )
    except OSError as exc:
        raise InferenceError(f"cannot serve on {host}:{port} ({exc}); choose another --port") from None
    finally:
        if block:  # stopped (Ctrl+C, SIGTERM) or failed to start: nothing of the page's is left in the temp folder
            shutil.rmtree(work_root, ignore_errors=True)
    return page, f"http://{host}:{port}/"
