"""``gmdrit export --format onnx``: a model's test-time path as ONNX graphs that run without torch.

What is written into ``--out`` (nothing else):

* ``model.onnx``: the translation, ``image`` 1 x 3 x S x S in [-1, 1], ``z`` M x nz and ``condition``
  M x D -> ``images`` M x 3 x S x S in [-1, 1] (the content encoder once, then the generator for each
  attribute row; the same computation as ``ModelFamily.translate`` of one input);
* ``prior.onnx``: ``condition`` M x D -> ``mean``, ``std`` M x nz, the attribute prior (random attributes
  are ``mean + temperature * std * noise``, as every family's ``sample_attributes`` draws them);
* ``reference.onnx``: ``images`` R x 3 x S x S and ``domains`` R (int64) -> ``z``, ``condition``: the
  attributes of reference images (``ModelFamily.encode_reference``);
* ``onnx.json``: what the torch-free runtime (:mod:`gmdrit_cli.inference.onnx_translate`) needs besides the graphs:
  the family, domains, working size, nz, default temperature, the conditioning row of each (domain,
  component), which sizes the graphs take, and the check below;
* ``config.yaml``: the resolved config, for people.

Every export is checked before it is kept: onnxruntime runs each graph on random inputs (at several
working sizes when the family takes sizes other than its training crop) and its outputs must equal torch's
within :data:`TOLERANCE`; the largest difference is recorded in ``onnx.json``.

``--int8`` (:func:`export_onnx` with ``int8=True``): every weight the int8 safetensors export quantises
(:mod:`gmdrit_cli.inference.quantize`: float, at least 2-D, at least ``MIN_ELEMENTS`` elements; symmetric, one fp32
scale per slice of dimension 0) is stored in the graphs as an int8 initializer feeding a per-axis
``DequantizeLinear`` node (axis 0), about a quarter of the size. The torch model is first given the weights that
round trip gives (what the int8 safetensors export loads as: for a model that is int8 already, the same values),
so the check compares the graphs against exactly the weights they hold; ``onnx.json`` records ``int8``.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from .. import __version__, jsonfile
from ..atomic import atomic_write
from ..config.schema import dump_config
from ..errors import InferenceError
from ..families.base import ModelFamily
from ..outputs import held_folder, os_error_line, refuse_checkpoint_area, refuse_replacing
from ..plain import keep_plain
from .model_files import MODEL_FILE, ONNX_META_FILE, load_for_inference

FORMAT = "gmdrit-onnx"
FORMAT_VERSION = 1
TRANSLATE_FILE = "model.onnx"
PRIOR_FILE = "prior.onnx"
REFERENCE_FILE = "reference.onnx"
META_FILE = ONNX_META_FILE
CONFIG_FILE = "config.yaml"
#: every file an export writes, in the order they are written
EXPORT_FILES = (TRANSLATE_FILE, PRIOR_FILE, REFERENCE_FILE, META_FILE, CONFIG_FILE)
#: largest allowed |onnxruntime - torch| over every output pixel, on images in [-1, 1] (a 255th is 0.0078:
#: within this, the written 8-bit PNGs differ by at most one grey level where a value sits on a rounding edge)
TOLERANCE = 1e-4
#: opset of the graphs (onnxruntime 1.18, the oldest the extra allows, runs opset 20)
OPSET = 18


@dataclass
class OnnxExportResult:
    out: Path
    files: list[Path]
    bytes: int
    family: str
    source: str
    max_difference: float
    sizes_checked: list[int]
    dynamic_size: bool
    int8: dict | None = None


# ------------------------------------------------------------------------------------ graph modules


class TranslateGraph(nn.Module):
    """One input image, M attribute rows -> M translations."""

    def __init__(self, model: ModelFamily):
        super().__init__()
        self.model = model
        self.networks = model.networks  # registered, so the exporter sees the weights as parameters

    def forward(self, image: torch.Tensor, z: torch.Tensor, condition: torch.Tensor) -> torch.Tensor:
        content = self.model.encode_content(image)
        content = content.expand(z.shape[0], -1, -1, -1) if content.dim() == 4 else content.expand(z.shape[0], -1)
        return self.model.generate_for_export(content, z, condition)


class PriorGraph(nn.Module):
    def __init__(self, model: ModelFamily):
        super().__init__()
        self.model = model
        self.networks = model.networks

    def forward(self, condition: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self.model.attribute_prior(condition)
        keep = 0.0 * condition.sum(dim=1, keepdim=True)  # ties a constant prior's row count to the input
        return mean + keep, std + keep


class ReferenceGraph(nn.Module):
    def __init__(self, model: ModelFamily):
        super().__init__()
        self.model = model
        self.networks = model.networks

    def forward(self, images: torch.Tensor, domains: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.encode_reference(images, domains)


# ------------------------------------------------------------------------------------ export


def _plain_conv_transpose_tiled(conv: nn.ConvTranspose2d, x: torch.Tensor, vec: torch.Tensor) -> torch.Tensor:
    """``conv(cat([x, tile(vec)], 1))`` as written: what ``blocks.conv_transpose_tiled`` computes with a tap
    table built in Python for one input size, which a graph that takes any size cannot hold."""
    from ..families.blocks import tile

    return conv(torch.cat([x, tile(vec, x.shape[2], x.shape[3]).to(x.dtype)], dim=1))


def _plain_layer_norm(self, x: torch.Tensor) -> torch.Tensor:
    """``blocks.LayerNorm`` (over C x H x W, per-channel affine) from means: the exporter takes F.layer_norm only
    with a normalised shape fixed at export, which a graph for any size cannot have."""
    dims = tuple(range(1, x.dim()))
    mean = x.mean(dim=dims, keepdim=True)
    var = (x - mean).pow(2).mean(dim=dims, keepdim=True)
    return (x - mean) / torch.sqrt(var + self.eps) * self.weight + self.bias


@contextlib.contextmanager
def _graph_friendly_layers():
    """While exporting: the generator's tiled transposed convolution and layer norm in plain forms that a graph
    for any size can hold (the same values up to rounding; the export's check against torch covers them)."""
    import sys

    from ..families import blocks

    layer_norm = blocks.LayerNorm.forward
    blocks.LayerNorm.forward = _plain_layer_norm
    original = blocks.conv_transpose_tiled
    users = [
        m
        for name, m in list(sys.modules.items())
        if name.startswith("gmdrit_cli.families") and getattr(m, "conv_transpose_tiled", None) is original
    ]
    for module in users:
        module.conv_transpose_tiled = _plain_conv_transpose_tiled
    try:
        yield
    finally:
        for module in users:
            module.conv_transpose_tiled = original
        blocks.LayerNorm.forward = layer_norm


def _export_graph(
    module: nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str], dynamic_axes: dict
) -> None:
    """Write one graph: traced once (torch.onnx's TorchScript-based exporter, several times faster than its
    torch.export one for these networks), the named axes left free."""
    module.eval()  # the exporter puts the module back into the mode it had: eval, as the model is
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the exporter's deprecation and tracer notes are not the user's
        torch.onnx.export(
            module,
            args,
            str(path),
            input_names=inputs,
            output_names=outputs,
            dynamic_axes=dynamic_axes,
            opset_version=OPSET,
            dynamo=False,
            do_constant_folding=True,
        )


def _condition_table(model: ModelFamily) -> dict[str, list[list[float]]]:
    """The conditioning row of each target domain's components (one row without mixture components):
    ``sample_attributes`` draws the component uniformly (or pins it) and conditions on this row."""
    caps = model.capabilities
    targets = sorted({t for _, t in caps.tasks(model.cfg.num_domains)})
    cpd = caps.components_per_domain if caps.has_mixture else 0
    table = {}
    for d in targets:
        rows = []
        for c in range(cpd) if cpd else [None]:
            _, condition = model.sample_attributes(d, 1, c, torch.Generator().manual_seed(0))
            rows.append([float(v) for v in condition[0].tolist()])
        table[str(d)] = rows
    return table


def _takes_size(model: ModelFamily, size: int) -> bool:
    """Whether the torch model translates and encodes references at working size ``size`` (the VAE's and
    BicycleGAN's encoders end in dense layers sized for the crop: they do not)."""
    caps = model.capabilities
    target = caps.tasks(model.cfg.num_domains)[0][1]
    try:
        with torch.no_grad():
            z, c = model.sample_attributes(target, 1, None, torch.Generator().manual_seed(0))
            out = model.translate(torch.zeros(1, 3, size, size), target, (z, c))
            ref_z, _ = model.encode_reference(torch.zeros(1, 3, size, size), torch.full((1,), target))
        return tuple(out.shape[-2:]) == (size, size) and tuple(ref_z.shape) == tuple(z.shape)
    except (RuntimeError, ValueError):
        return False


def check_against_torch(model: ModelFamily, folder: Path, sizes: list[int], seed: int = 0) -> float:
    """Run every graph of ``folder`` with onnxruntime and ``model`` with torch on the same random inputs at
    each working size; the largest absolute difference of any output (InferenceError past TOLERANCE)."""
    import onnxruntime as ort

    meta = jsonfile.loads((folder / META_FILE).read_text(encoding="utf-8"))
    options = ort.SessionOptions()
    options.log_severity_level = 3
    sessions = {
        name: ort.InferenceSession(str(folder / name), options, providers=["CPUExecutionProvider"])
        for name in (TRANSLATE_FILE, PRIOR_FILE, REFERENCE_FILE)
    }
    g = torch.Generator().manual_seed(seed)
    worst = 0.0
    targets = [int(d) for d in meta["conditions"]]
    for size in sizes:
        for target in targets:
            rows = meta["conditions"][str(target)]
            condition = torch.tensor(rows * 2, dtype=torch.float32)[:3]  # 2-3 rows, every component once
            m = condition.shape[0]
            noise = torch.randn(m, meta["nz"], generator=g)
            image = torch.rand(1, 3, size, size, generator=g) * 2 - 1
            refs = torch.rand(2, 3, size, size, generator=g) * 2 - 1
            domains = torch.full((2,), target, dtype=torch.long)
            with torch.no_grad():
                mean, std = model.attribute_prior(condition)
                z = mean + std * noise
                want = model.translate(image, target, (z, condition))
                ref_z, ref_c = model.encode_reference(refs, domains)
            got_mean, got_std = _run(sessions[PRIOR_FILE], condition=condition.numpy())
            (got,) = _run(sessions[TRANSLATE_FILE], image=image.numpy(), z=z.numpy(), condition=condition.numpy())
            got = keep_plain(image.numpy(), got, model.cfg.model.keep_plain)  # as onnx_translate composites
            got_z, got_c = _run(sessions[REFERENCE_FILE], images=refs.numpy(), domains=domains.numpy())
            for a, b in ((got_mean, mean), (got_std, std), (got, want), (got_z, ref_z), (got_c, ref_c)):
                if a.shape != tuple(b.shape):
                    raise InferenceError(f"the ONNX export gives shape {a.shape} where torch gives {tuple(b.shape)}")
                worst = max(worst, float(np.abs(a - b.numpy()).max()) if a.size else 0.0)
    if not worst <= TOLERANCE:
        raise InferenceError(
            f"the ONNX graphs differ from torch by up to {worst:.3g} (more than {TOLERANCE:g}); "
            "this model cannot be exported to ONNX faithfully"
        )
    return worst


# ------------------------------------------------------------------------------------ int8 graphs


def _round_trip_int8(model: ModelFamily) -> dict[bytes, tuple[np.ndarray, np.ndarray]]:
    """Give ``model`` the weights the int8 safetensors export would load as (quantised, then dequantised with
    :mod:`.quantize`); returns {fp32 bytes of each quantised tensor as the model now holds it: (int8 values,
    fp32 scales per slice of dimension 0)}, by which the graphs' initializers are recognised."""
    from .model_files import TRAINING_ONLY
    from .quantize import SCALE_SUFFIX, dequantize_tensors, quantize_tensors

    found: dict[bytes, tuple[np.ndarray, np.ndarray]] = {}
    with torch.no_grad():
        for net_name, net in model.networks.items():
            state = {k: v for k, v in net.state_dict().items() if not f"{net_name}.{k}".startswith(TRAINING_ONLY)}
            quantised = quantize_tensors(state)
            restored = dequantize_tensors(quantised)
            for key, value in restored.items():
                state[key].copy_(value)  # state_dict() tensors share storage with the parameters and buffers
                scale = quantised.get(key + SCALE_SUFFIX)
                if scale is not None:
                    found[value.numpy().tobytes()] = (quantised[key].numpy(), scale.numpy())
    return found


def _int8_graph(path: Path, quantised: dict[bytes, tuple[np.ndarray, np.ndarray]]) -> tuple[int, int]:
    """Rewrite the graph at ``path``: each fp32 initializer equal to a tensor of ``quantised`` becomes its int8
    values and scales followed by a ``DequantizeLinear`` (axis 0) whose output keeps the initializer's name, so
    the nodes that read it are unchanged. Returns (initializers rewritten, large fp32 ones left as they were)."""
    import onnx
    from onnx import helper, numpy_helper

    from .quantize import MIN_ELEMENTS

    graph_model = onnx.load(str(path))
    graph = graph_model.graph
    kept, nodes, done, left = [], [], 0, 0
    for init in graph.initializer:
        if init.data_type != onnx.TensorProto.FLOAT:
            kept.append(init)
            continue
        value = numpy_helper.to_array(init)
        match = quantised.get(np.ascontiguousarray(value, dtype=np.float32).tobytes())
        if match is None or match[0].shape != value.shape:
            left += value.ndim >= 2 and value.size >= MIN_ELEMENTS
            kept.append(init)
            continue
        q, scale = match
        kept.append(numpy_helper.from_array(q, init.name + "_int8"))
        kept.append(numpy_helper.from_array(scale.astype(np.float32), init.name + "_scale"))
        nodes.append(
            helper.make_node(
                "DequantizeLinear",
                [init.name + "_int8", init.name + "_scale"],
                [init.name],
                name=init.name + "_dequantize",
                axis=0,
            )
        )
        done += 1
    del graph.initializer[:]
    graph.initializer.extend(kept)
    made = {n.output[0] for n in nodes}
    inputs = [i for i in graph.input if i.name not in made]  # an initializer listed as an input too
    del graph.input[:]
    graph.input.extend(inputs)
    rest = list(graph.node)
    del graph.node[:]
    graph.node.extend(nodes + rest)  # the constants first: the nodes stay in topological order
    onnx.checker.check_model(graph_model)
    onnx.save(graph_model, str(path))
    return done, left


def _run(session, **feed) -> list[np.ndarray]:
    names = {i.name for i in session.get_inputs()}
    return session.run(None, {k: v for k, v in feed.items() if k in names})


def _check_out(out: Path | str, force: bool) -> Path:
    """The export folder, refused before any work: onnx missing, a checkpoint area or run folder, or (unless
    ``force``) earlier export files there."""
    try:
        import onnx  # noqa: F401
        import onnxruntime  # noqa: F401
    except ImportError:
        raise InferenceError("--format onnx needs onnx and onnxscript: pip install 'gmdrit[onnx]'") from None
    out = Path(out).expanduser()
    refuse_checkpoint_area(out, "--out")
    if (out / "checkpoints").is_dir():
        raise InferenceError(f"--out {out} is a run folder; export into a folder of its own")
    if (out / MODEL_FILE).is_file():
        # one export per folder: the config.yaml both write would be replaced under the safetensors export
        raise InferenceError(
            f"--out {out} holds a safetensors export ({MODEL_FILE}); even with --force, export the ONNX graphs "
            f"into a folder of their own"
        )
    if not force:
        for name in EXPORT_FILES:
            refuse_replacing(out / name, "--force")
    return out


def _metadata(
    model: ModelFamily, conditions: dict, condition_size: int, dynamic: bool, extra_metadata: dict[str, str] | None
) -> dict:
    """``onnx.json`` before the check: what the torch-free runtime needs besides the graphs (the module doc);
    ``conditions``: :func:`_condition_table`."""
    cfg, caps, source = model.cfg, model.capabilities, model.source
    return {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "gmdrit": __version__,
        "family": cfg.model.family,
        "domains": list(cfg.data.domains),
        "crop": cfg.data.crop,
        "nz": cfg.model.nz,
        "condition_size": condition_size,
        "sample_temperature": cfg.model.sample_temperature,
        "sample_temperature_by_domain": cfg.model.sample_temperature_by_domain,
        "keep_plain": cfg.model.keep_plain,
        "random_by_default": caps.random_by_default,
        "paired_data": caps.paired_data,
        "components_per_domain": caps.components_per_domain,
        "tasks": [list(t) for t in caps.tasks(cfg.num_domains)],
        "dynamic_size": dynamic,
        "conditions": conditions,
        "source": source.describe() if source is not None else "",
        # what the graphs were made from: a packaged ONNX copy of the pretrained model is used only while this
        # still names the pretrained model.safetensors beside it (onnx_translate.packaged_onnx)
        "source_sha256": _sha256(source.weights) if source is not None else None,
        "iteration": source.iteration if source is not None else None,
        "ema": bool(source.ema) if source is not None else False,
        "tolerance": TOLERANCE,
        "metadata": dict(extra_metadata or {}),
        **({"colour_gate": model.colour_gate_record} if model.colour_gate_record is not None else {}),
    }


def _sha256(path: Path) -> str:
    import hashlib

    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _export_graphs(model: ModelFamily, work: Path, z0: torch.Tensor, c0: torch.Tensor, dynamic: bool) -> None:
    """The three graphs into ``work``, traced on zero images 1 (translate) or 2 (references) x 3 x crop x crop and
    the attribute rows z0 (M x nz), c0 (M x D); the row counts stay free, the image sizes too when ``dynamic``."""
    crop = model.cfg.data.crop
    target = model.capabilities.tasks(model.cfg.num_domains)[0][1]
    space = {2: "height", 3: "width"} if dynamic else {}
    with torch.no_grad(), _graph_friendly_layers():
        _export_graph(
            TranslateGraph(model),
            (torch.zeros(1, 3, crop, crop), z0, c0),
            work / TRANSLATE_FILE,
            ["image", "z", "condition"],
            ["images"],
            {"image": space, "z": {0: "samples"}, "condition": {0: "samples"}, "images": {0: "samples", **space}},
        )
        _export_graph(
            PriorGraph(model),
            (c0,),
            work / PRIOR_FILE,
            ["condition"],
            ["mean", "std"],
            {"condition": {0: "rows"}, "mean": {0: "rows"}, "std": {0: "rows"}},
        )
        _export_graph(
            ReferenceGraph(model),
            (torch.zeros(2, 3, crop, crop), torch.full((2,), target, dtype=torch.long)),
            work / REFERENCE_FILE,
            ["images", "domains"],
            ["z", "condition"],
            {
                "images": {0: "references", **space},
                "domains": {0: "references"},
                "z": {0: "references"},
                "condition": {0: "references"},
            },
        )


def _copy_out(work: Path, out: Path, force: bool) -> list[Path]:
    """Every export file from ``work`` into ``out`` (each written under a temporary name, then renamed), with
    ``out``'s checks made again while it is held: another export may have written there since the first look."""
    files = []
    with held_folder(out, "--out"):
        _check_out(out, force)
        try:
            for name in EXPORT_FILES:
                data = (work / name).read_bytes()
                atomic_write(out / name, lambda tmp, data=data: Path(tmp).write_bytes(data))
                files.append(out / name)
        except OSError as exc:
            raise InferenceError(
                os_error_line(exc, f"cannot write the export into {out}", "choose another --out")
            ) from None
    return files


def export_onnx(
    path: Path | str | None,
    out: Path | str,
    extra_metadata: dict[str, str] | None = None,
    ema: bool = True,
    force: bool = False,
    int8: bool = False,
) -> OnnxExportResult:
    """Export the model of a run folder, checkpoint or export (``None``: the pretrained model) as ONNX graphs
    into ``out`` (see the module doc); refused over earlier files unless ``force``. ``int8``: int8 weights with
    ``DequantizeLinear`` nodes (the module doc)."""
    out = _check_out(out, force)
    cfg, model = load_for_inference(path, "cpu", ema=ema)
    model.eval_mode()
    quantised = _round_trip_int8(model) if int8 else None
    crop = cfg.data.crop
    target = model.capabilities.tasks(cfg.num_domains)[0][1]
    # other working sizes the torch model takes (the DRIT families: any multiple of 4; the VAE and BicycleGAN,
    # whose encoders end in dense layers: none): the graphs keep them free and the check covers them
    others = [s for s in (2 * crop, crop + 16, max(16, crop // 2 // 4 * 4)) if s != crop and _takes_size(model, s)]
    dynamic = bool(others)
    conditions = _condition_table(model)
    z0, c0 = model.sample_attributes(target, 2, None, torch.Generator().manual_seed(0))
    meta = _metadata(model, conditions, int(c0.shape[1]), dynamic, extra_metadata)
    with tempfile.TemporaryDirectory(prefix="gmdrit-onnx-") as tmp:
        work = Path(tmp)
        _export_graphs(model, work, z0, c0, dynamic)
        model.eval_mode()
        if quantised is not None:
            from .quantize import FORMAT as INT8_FORMAT

            counts = [_int8_graph(work / name, quantised) for name in (TRANSLATE_FILE, PRIOR_FILE, REFERENCE_FILE)]
            meta["int8"] = {
                "format": INT8_FORMAT,
                "node": "DequantizeLinear, axis 0",
                "tensors": sum(c[0] for c in counts),
                "large_fp32_tensors_left": sum(c[1] for c in counts),
                "checked_against": "torch with the int8 round-trip weights (what the int8 safetensors export loads)",
            }
        (work / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        sizes = [crop] + others
        worst = check_against_torch(model, work, sizes)
        meta["checked"] = {"sizes": sizes, "max_abs_difference": worst, "tolerance": TOLERANCE}
        (work / META_FILE).write_text(json.dumps(meta, indent=1), encoding="utf-8")
        (work / CONFIG_FILE).write_text(dump_config(cfg), encoding="utf-8")
        files = _copy_out(work, out, force)
    return OnnxExportResult(
        out,
        files,
        sum(f.stat().st_size for f in files),
        cfg.model.family,
        meta["source"],
        worst,
        sizes,
        dynamic,
        meta.get("int8"),
    )
