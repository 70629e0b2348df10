"""One config tree of dataclasses, loaded from a preset YAML plus ``section.key=value`` overrides.

Every problem found while resolving a config (unknown keys, wrong types, out-of-range values) is
collected and reported at once in a single :class:`ConfigError`.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import re
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from ..errors import ConfigError
from ..families import family_config_modules, family_names
from ..limits import MAX_TEMPERATURE
from .fields import option as _opt

#: the model families: the folders of gmdrit_cli/families/ (found without importing any network code)
FAMILY_NAMES = family_names()
#: section name -> (family, its config module) for the families that own a config section
FAMILY_SECTIONS = {m.SECTION: (name, m) for name, m in family_config_modules().items()}


#: the largest image side of data.resize and data.crop, and why
_MAX_SIDE = 4096
_SIDE_WHY = "memory grows with its square; the presets use at most 600"
_LR_WHY = (
    "Adam moves each weight by about the learning rate per step, so 1 or more only diverges; "
    "the presets use 1e-4 to 2e-4"
)


@dataclass
class DataConfig:
    root: str = _opt("data/apple2orange", "dataset folder (CycleGAN layout trainA/trainB or named train/<domain>)")
    domains: list[str] = _opt(["A", "B"], "domain names, in the order of trainA, trainB, ...")
    resize: int = _opt(
        256, "images are resized to resize x resize (bicubic) before cropping", min=1, max=_MAX_SIDE, why=_SIDE_WHY
    )
    crop: int = _opt(216, "training crop size in pixels", min=8, max=_MAX_SIDE, why=_SIDE_WHY)
    flip: bool = _opt(True, "random horizontal flips during training")
    val_fraction: float = _opt(
        0.0,
        "unpaired data: share of each domain's training images held out as the validation "
        "split (chosen by file name; never trained on; `gmdrit eval --split val`); "
        "at most 0.5 so that training keeps most images",
        min=0,
        max=0.5,
    )
    # paired families (BicycleGAN) only: gmdrit_cli/data/paired.py
    paired_layout: str = _opt(
        "auto",
        "paired families: 'aligned' = pix2pix A|B side-by-side files in train/, val/, "
        "test/; 'folders' = trainA/x.jpg paired with trainB/x.jpg; auto = whichever "
        "the folder holds",
        choices=("auto", "aligned", "folders"),
    )
    direction: str = _opt(
        "AtoB",
        "paired families: AtoB translates the left half (or A folder) into the right "
        "(B); BtoA swaps them. data.domains names [input, output] after the swap",
        choices=("AtoB", "BtoA"),
    )
    input_channels: int = _opt(
        3,
        "paired families: 1 = the input side is read as grayscale (official edges2shoes / edges2handbags, input_nc 1)",
        choices=(1, 3),
    )


@dataclass
class ModelConfig:
    family: str = _opt("mdmm", "model family (see `gmdrit models`)")
    nz: int = _opt(
        8,
        "attribute code length",
        min=1,
        max=4096,
        why="the attribute layers grow with it; the official codes are 8 (128 for the VAE)",
    )
    width: int = _opt(
        64,
        "base channel count of every network (64 = the official networks)",
        min=4,
        max=1024,
        why="the parameters grow with its square: 1024 is already 256 times the official 64",
    )
    dis_norm: str = _opt("none", "normalisation in the image discriminators", choices=("none", "instance"))
    dis_spectral_norm: bool = _opt(False, "spectral norm on the discriminator convolutions")
    use_content_dis: bool = _opt(False, "train the content discriminator (MDMM --isDcontent)")
    content_dis_every: int = _opt(
        3,
        "with the content discriminator: one D+EG step every this many batches "
        "(MDMM d_iter), the other batches update the content discriminator",
        min=1,
    )
    use_adain: bool = _opt(False, "GM-DRIT: AdaIN after the generator's shared block (report 5.3.1)")
    double_convT: bool = _opt(False, "GM-DRIT: a second transposed conv after each upsampling one (report 5.3.2)")
    upsample: str = _opt(
        "transposed",
        "MDMM / GM-DRIT generator: how dec2 and dec3 double the resolution. transposed = "
        "the official 3x3 stride-2 transposed conv (prints a period-2/4 grid pattern); "
        "resize_conv = nearest x2, reflection pad, 3x3 conv (no grid, same parameters)",
        choices=("transposed", "resize_conv"),
    )
    random_attributes: str = _opt(
        "prior",
        "MDMM: where random attributes come from, in training and at test time: "
        "the prior N(0, I), or the aggregate posterior of the target domain "
        "(a diagonal Gaussian fitted to the encoded training attributes by a "
        "running average, stored with the weights)",
        choices=("prior", "aggregate"),
    )
    aggregate_momentum: float = _opt(
        0.01,
        "MDMM with random_attributes=aggregate: weight of each batch in the running mean and second moment",
        min=0,
        max=1,
        min_exclusive=True,
    )
    sample_temperature: float = _opt(
        1.0,
        "test time only: the default --temperature of translate and eval, the "
        "scale of the prior's standard deviation for random attributes (training "
        "ignores it)",
        min=0,
        min_exclusive=True,
        max=MAX_TEMPERATURE,  # the bound of --temperature, which this is the default of
    )
    sample_temperature_by_domain: str = _opt(
        "",
        "test time only: a temperature per target domain that replaces sample_temperature for that domain's "
        "random attributes, as DOMAIN=T,DOMAIN=T (e.g. orange=1.8,apple=1.5; empty = sample_temperature for "
        "every domain); for a model whose directions are best sampled differently",
    )
    keep_plain: float = _opt(
        0.0,
        "test time only: how much of its input's white, grey and black pixels each translation keeps "
        "(0 = the generator's output as is; 1 = a colourless input pixel is kept, fading to untouched "
        "at chroma 0.2); for photos whose plain background should stay plain",
        min=0,
        max=1.0,
    )


@dataclass
class LossConfig:
    lambda_rec: float = _opt(10.0, "weight of the self and cross-cycle L1 reconstruction", min=0)
    lambda_cls: float = _opt(1.0, "weight of the discriminators' domain classification on real images", min=0)
    lambda_cls_fake: float = _opt(
        5.0, "weight of the domain classification of generated images (MDMM lambda_cls_G)", min=0
    )
    lambda_latent: float = _opt(10.0, "weight of the latent regression of random attributes", min=0)
    kl_content: float = _opt(0.01, "weight of the content-code penalty mean(z_c^2)", min=0)
    kl_attribute: float = _opt(0.01, "weight of the attribute KL (summed over batch and dimensions)", min=0)
    mode_seeking: float = _opt(
        0.0,
        "weight of DRIT++'s mode-seeking term 1 / (mean|G(z1) - G(z2)| / mean|z1 - z2| "
        "+ eps) on two random attributes per input (0 = off, MDMM's default)",
        min=0,
    )
    keep_neutral: float = _opt(
        0.0,
        "weight of the change a cross translation (random or encoded attribute) makes to its input's "
        "colourless (white, grey, black) pixels, L1 (0 = off; for domains told apart by an object's colour, "
        "e.g. apple <-> orange, where a background should stay as it is; not horse <-> zebra, whose stripes "
        "are colourless)",
        min=0,
    )
    match_encoded_colour: float = _opt(
        0.0,
        "weight of the L1 between the subject colour (mean lightness, red-green, yellow-blue over the input's "
        "coloured pixels) of each random-attribute translation and of the same input's translation with the "
        "encoded attribute of a real target image (0 = off; against random draws that give the object a colour "
        "no real target's attribute gives it, e.g. olive oranges)",
        min=0,
    )
    dark_patches: float = _opt(
        0.0,
        "weight of how dark each random-attribute translation paints the lit, coloured pixels of its input (0 = "
        "off; against burnt-looking draws, black patches on a fruit the input shows lit)",
        min=0,
    )


@dataclass
class OptimConfig:
    lr_dis: float = _opt(
        1.0e-4, "learning rate of the image discriminators", min=0, min_exclusive=True, max=1, why=_LR_WHY
    )
    lr_eg: float = _opt(
        1.0e-4, "learning rate of the encoders and the generator", min=0, min_exclusive=True, max=1, why=_LR_WHY
    )
    lr_content_dis: float = _opt(
        4.0e-5, "learning rate of the content discriminator", min=0, min_exclusive=True, max=1, why=_LR_WHY
    )
    beta1: float = _opt(0.5, "Adam beta1", min=0, max=1)
    beta2: float = _opt(0.999, "Adam beta2", min=0, max=1)
    weight_decay: float = _opt(1.0e-4, "Adam L2 weight decay", min=0)
    lr_policy: str = _opt(
        "lambda",
        "learning-rate policy, stepped per epoch (linear: BicycleGAN/pix2pix, constant "
        "for n_epochs_decay epochs, then lr * (1 - (e - n_epochs_decay) / (n_epochs - "
        "n_epochs_decay + 1)) in 1-based epoch e; exponential: lr_gamma ** epoch, the "
        "epoch counted inside the training phase)",
        choices=("lambda", "step", "constant", "linear", "exponential"),
    )
    lr_gamma: float = _opt(
        0.95,
        "factor per epoch of the exponential policy (torch's ExponentialLR gamma)",
        min=0,
        max=1,
        min_exclusive=True,
    )
    n_epochs: int = _opt(1200, "epochs of the lambda policy (MDMM n_ep)", min=1)
    n_epochs_decay: int = _opt(
        600, "epoch at which the lambda decay starts, or the step period (MDMM n_ep_decay)", min=1
    )
    content_dis_clip: float = _opt(5.0, "gradient-norm clip of the content discriminator", min=0, min_exclusive=True)


@dataclass
class TrainConfig:
    max_iters: int = _opt(
        6000,
        "training stops after this many iterations",
        min=1,
        max=9_999_999,
        why="checkpoint names hold 7 digits; the report's longest schedule (MDMM, 1,200 epochs) is about 1.2 million",
    )
    batch_size: int = _opt(
        2,
        "images per iteration (even: the batch is split into two halves)",
        min=2,
        max=4096,
        why="memory grows with it; the reports use 2 to 64",
    )
    seed: int = _opt(0, "seed of every random number generator", min=0, max=2**32 - 1)
    device: str = _opt("auto", "device to train on", choices=("auto", "cpu", "cuda"))
    threads: int = _opt(0, "CPU threads for torch (0 = torch's default)", min=0, max=1024)
    log_every: int = _opt(10, "append losses to metrics.jsonl every this many iterations", min=1)
    sample_every: int = _opt(500, "save a sample grid every this many iterations", min=1)
    grid_random: int = _opt(
        1,
        "random-attribute outputs per row of the sample grid (the report's layout: 1)",
        min=1,
        max=100,
        why="each is a column of every sample grid",
    )
    save_every: int = _opt(1000, "save a checkpoint every this many iterations", min=1)
    save_minutes: float = _opt(
        10.0, "also save a checkpoint when this many minutes passed since the last one", min=0, min_exclusive=True
    )
    keep_last: int = _opt(3, "checkpoints kept: the newest this many ...", min=1)
    keep_every: int = _opt(0, "... plus every checkpoint whose iteration is a multiple of this (0 = none)", min=0)
    time_budget: str = _opt(
        "", "stop with a fresh checkpoint before this much wall time, e.g. 3h50m, 90m, 3600s ('' = none)"
    )
    tensorboard: bool = _opt(
        True,
        "write TensorBoard event files into RUN/tensorboard/ (losses, learning rates, "
        "sample grids, config) when the tensorboard package is installed",
    )
    init_from: str = _opt(
        "",
        "start a new run from the weights of this model (a run or checkpoint folder, an exported "
        "model.safetensors, or 'pretrained'): every tensor of the same name and shape is "
        "copied, the rest (e.g. discriminator heads sized by the crop) keep their fresh "
        "initialisation; a resumed run reads its checkpoint instead ('' = none)",
    )
    ema_beta: float = _opt(
        0.0,
        "keep an exponential moving average of the test-time networks' weights, "
        "ema = beta * ema + (1 - beta) * weights every iteration (StarGAN v2: 0.999; "
        "0 = off); translate, interpolate and eval use it unless --no-ema",
        min=0,
        max=1,
        max_exclusive=True,
        why="at 1 the average never leaves the initial weights, which translate, interpolate and eval would use",
    )
    dist_timeout: float = _opt(
        1800.0,
        "several processes (torchrun): seconds a process waits in a collective "
        "before it gives up on the others (a dead or stalled process)",
        min=0,
        min_exclusive=True,
        max=7 * 24 * 3600,
        why="a week; a stalled process must be noticed",
    )
    check_replicas_every: int = _opt(
        0,
        "several processes: every this many iterations compare checksums of "
        "the weights and optimizer states of every process (debugging; 0 = off)",
        min=0,
    )


@dataclass
class SpeedConfig:
    amp: str = _opt(
        "auto",
        "autocast precision: auto = bf16 on GPUs of compute capability 8.0+ and on CPUs with "
        "native bf16, fp16 with loss scaling on 7.x GPUs (T4, V100), else fp32",
        choices=("auto", "bf16", "fp16", "off"),
    )
    channels_last: str = _opt(
        "auto", "channels-last memory format (auto = with reduced precision)", choices=("auto", "on", "off")
    )
    compile: bool = _opt(False, "torch.compile every network (slow first iterations)")
    optimizer: str = _opt("auto", "Adam implementation (auto = fused)", choices=("auto", "fused", "foreach", "loop"))
    keep_freed_memory: str = _opt(
        "auto",
        "keep freed CPU memory for reuse instead of returning it to the "
        "OS each iteration (glibc; auto = on for CPU training)",
        choices=("auto", "on", "off"),
    )
    tf32: str = _opt(
        "auto",
        "fp32 matmuls and convolutions on CUDA use TensorFloat-32 tensor cores (auto = on "
        "from compute capability 8.0, Ampere)",
        choices=("auto", "on", "off"),
    )
    cudnn_benchmark: str = _opt(
        "auto",
        "cuDNN times its convolution algorithms once per input shape and keeps "
        "the fastest (training shapes are fixed; auto = on for CUDA)",
        choices=("auto", "on", "off"),
    )
    prefetch: int = _opt(
        2,
        "iterations of batches decoded, resized, cropped and flipped in the background ahead "
        "of the step, in the order the loop would load them (0 = load inside the loop)",
        min=0,
        max=64,
        why="every prefetched iteration holds its batches in memory",
    )
    loader_threads: int = _opt(
        0,
        "background threads that load the prefetched batches (0 = the CPU cores of this process, at most 4)",
        min=0,
        max=256,
        why="threads beyond the CPU cores only add overhead",
    )
    data_cache: str = _opt(
        "",
        "copy data.root into this local folder once and train from the copy (for data on "
        "a slow mount such as a Drive folder); a later run reuses the copy while its file "
        "count and size match the source ('' = read data.root directly)",
    )


class _ConfigBase:
    @property
    def num_domains(self) -> int:
        return len(self.data.domains)


def _config_class() -> type:
    """The config tree: the common sections, then each family's own section (``mixture`` of GM-DRIT,
    ``bicyclegan``, ``vae``) where its folder defines one."""
    common = [
        ("name", str, _opt("custom", "preset name; the default run folder is runs/<name>")),
        ("description", str, _opt("", "one line shown by `gmdrit presets`")),
        ("model", ModelConfig, field(default_factory=ModelConfig)),
    ]
    owned = [(section, m.Section, field(default_factory=m.Section)) for section, (_, m) in FAMILY_SECTIONS.items()]
    rest = [
        (name, cls, field(default_factory=cls))
        for name, cls in (
            ("data", DataConfig),
            ("loss", LossConfig),
            ("optim", OptimConfig),
            ("train", TrainConfig),
            ("speed", SpeedConfig),
        )
    ]
    return dataclasses.make_dataclass(
        "Config", common + owned + rest, bases=(_ConfigBase,), namespace={"__module__": __name__}
    )


Config = _config_class()


# ----------------------------------------------------------------------------------------- keys


def _is_section(tp: Any) -> bool:
    return isinstance(tp, type) and dataclasses.is_dataclass(tp)


def all_keys(cls: type = Config, prefix: str = "") -> dict[str, tuple[Any, dataclasses.Field]]:
    """Every leaf key of the config tree as ``{"section.key": (type, field)}``."""
    hints = typing.get_type_hints(cls)
    keys: dict[str, tuple[Any, dataclasses.Field]] = {}
    for f in dataclasses.fields(cls):
        tp = hints[f.name]
        if _is_section(tp):
            keys.update(all_keys(tp, f"{prefix}{f.name}."))
        else:
            keys[prefix + f.name] = (tp, f)
    return keys


def _suggest(key: str, valid: list[str]) -> str:
    leaf = key.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(key, valid, n=1, cutoff=0.5)
    if not close:  # a right key in the wrong section
        close = [k for k in valid if k.rsplit(".", 1)[-1] == leaf][:1]
    if not close:
        close = difflib.get_close_matches(leaf, [k.rsplit(".", 1)[-1] for k in valid], n=1, cutoff=0.6)
        close = [k for k in valid if close and k.endswith("." + close[0])][:1]
    return f" (did you mean '{close[0]}'?)" if close else ""


# ----------------------------------------------------------------------------------------- values


def _coerce(key: str, value: Any, tp: Any, f: dataclasses.Field) -> tuple[Any, str | None]:
    """Convert ``value`` to ``tp`` and check its range; return (value, error or None)."""
    origin = typing.get_origin(tp)
    if origin in (list,):
        if isinstance(value, str):
            value = [v.strip() for v in value.split(",") if v.strip()]
        if not isinstance(value, list) or not all(isinstance(v, (str, int)) for v in value):
            return value, f"{key}: expected a list of names, got {value!r}"
        value = [str(v) for v in value]
    elif origin in (typing.Union, types.UnionType):
        raise AssertionError("optional config values are not supported")
    elif tp is bool:
        if isinstance(value, str) and value.lower() in ("true", "false", "yes", "no", "on", "off", "1", "0"):
            value = value.lower() in ("true", "yes", "on", "1")
        if not isinstance(value, bool):
            return value, f"{key}: expected true or false, got {value!r}"
    elif tp is int:
        if isinstance(value, str):
            try:
                value = int(value)
            except ValueError:
                pass
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if isinstance(value, bool) or not isinstance(value, int):
            return value, f"{key}: expected an integer, got {value!r}"
    elif tp is float:
        if isinstance(value, str):  # YAML 1.1 reads '1e-4' as a string
            try:
                value = float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return value, f"{key}: expected a number, got {value!r}"
        try:
            value = float(value)
        except OverflowError:  # an integer of hundreds of digits
            return value, f"{key}: a number of {len(str(value))} digits is not a finite number"
        if not math.isfinite(value):  # nan passes every range check below
            return value, f"{key}: {value} is not a finite number"
    elif tp is str:
        if isinstance(value, bool):  # YAML 1.1 reads on/off/yes/no as booleans
            value = "on" if value else "off"
        if value is None or isinstance(value, (list, dict)):
            return value, f"{key}: expected a string, got {value!r}"
        value = str(value)
    meta = f.metadata
    if meta.get("choices") and value not in meta["choices"]:
        return value, f"{key}: {value!r} is not one of {', '.join(map(str, meta['choices']))}"
    if meta.get("min") is not None and isinstance(value, (int, float)):
        low = meta["min"]
        if value < low or (meta.get("min_exclusive") and value == low):
            return value, f"{key}: {value} must be {'>' if meta.get('min_exclusive') else '>='} {low:g}"
    if meta.get("max") is not None and isinstance(value, (int, float)):
        high, below = meta["max"], meta.get("max_exclusive")
        if value > high or (below and value == high):
            why = f" ({meta['why']})" if meta.get("why") else ""
            bound = f"{high:,}" if isinstance(high, int) else f"{high:g}"
            return value, f"{key}: {value} must be {'<' if below else '<='} {bound}{why}"
    return value, None


def _flatten(tree: Any, prefix: str = "") -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for k, v in tree.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            flat.update(_flatten(v, key + "."))
        else:  # an empty mapping stays a value: `model: {}` is an empty section, `model.width: {}` no number
            flat[key] = v
    return flat


def parse_overrides(overrides: list[str]) -> tuple[dict[str, Any], list[str]]:
    """Parse ``section.key=value`` strings; values are read as YAML scalars or lists."""
    values: dict[str, Any] = {}
    errors: list[str] = []
    for item in overrides:
        key, sep, raw = item.partition("=")
        if not sep or not key.strip():
            errors.append(f"--set {item!r}: expected section.key=value")
            continue
        try:
            values[key.strip()] = read_yaml_text(raw, f"--set {key.strip()}") if raw.strip() else ""
        except yaml.YAMLError:
            values[key.strip()] = raw
        except ConfigError as exc:
            errors.append(str(exc))
    return values, errors


class _ConfigLoader(yaml.SafeLoader):
    """PyYAML's safe loader, except that a key given twice in one mapping is an error (PyYAML keeps the
    last silently, so ``model: {width: 8}`` then ``model: {width: 16}`` trained a model nobody asked for)."""

    def construct_mapping(self, node, deep=False):
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True) if isinstance(key_node, yaml.ScalarNode) else None
            if key is not None and key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"the key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep)


def _depth(text: str) -> int:
    """An upper bound of the nesting of YAML ``text``: the most brackets open at once in flow style, or the
    most indentation levels in block style (counted before parsing, which recurses once per level)."""
    flow = deepest = 0
    for ch in text:
        if ch in "[{":
            flow += 1
            deepest = max(deepest, flow)
        elif ch in "]}":
            flow = max(0, flow - 1)
    indents = {len(line) - len(line.lstrip(" -")) for line in text.splitlines() if line.strip()}
    return max(deepest, len(indents))


def read_yaml_text(text: str, what: str) -> Any:
    """The YAML value of ``text`` (a config file's text, or a ``--set`` value), read by the one reader of every
    config: of a bounded size and nesting (:data:`~gmdrit_cli.limits.MAX_CONFIG_BYTES`, ``MAX_CONFIG_DEPTH``),
    no key twice in a mapping, no Python objects. ``what`` names it in the :class:`ConfigError` of a bound; a
    syntax error stays a ``yaml.YAMLError`` for the caller to place."""
    from ..limits import MAX_CONFIG_BYTES, MAX_CONFIG_DEPTH

    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(
            f"{what} holds {len(text):,} characters, more than a config ever does (at most {MAX_CONFIG_BYTES:,}; "
            f"a resolved config is about 3 KB); is it the right file?"
        )
    if _depth(text) > MAX_CONFIG_DEPTH:
        raise ConfigError(
            f"{what} nests lists or mappings more than {MAX_CONFIG_DEPTH} levels deep; a config has sections "
            f"of keys (section.key: value), so fix it"
        )
    try:
        return yaml.load(text, Loader=_ConfigLoader)  # noqa: S506 (a SafeLoader)
    except (ValueError, OverflowError, TypeError, AttributeError) as exc:
        # PyYAML builds its own types with Python's constructors, which fail outside the YAML syntax: a date
        # such as 2024-13-45 (month must be in 1..12), an integer of more than 4,300 digits (Python's limit),
        # an explicit tag on a value it does not fit (`!!timestamp x`)
        raise ConfigError(
            f"{what}: cannot read one of its values ({exc}); fix it, or quote a value meant as text"
        ) from None


_NUMBER = r"(\d+(?:\.\d+)?)"
_DURATION = re.compile(rf"^(?:{_NUMBER}h)?(?:{_NUMBER}m)?(?:{_NUMBER}s)?$")


def parse_duration(text: str) -> float | None:
    """Seconds in '3h50m', '90m', '45s', '3600' or '1.5h'; None for ''; ValueError if unreadable or not
    above 0. A bare number after a unit is the next unit: '3h50' is 3 h 50 min, '1m30' 1 min 30 s."""
    compact = re.sub(r"\s+", "", text.lower())
    if not compact:
        return None
    if re.fullmatch(_NUMBER, compact):
        compact += "s"  # a plain number is seconds
    elif re.fullmatch(rf".*[hm]{_NUMBER}", compact):
        compact += "m" if compact.rstrip("0123456789.").endswith("h") else "s"
    match = _DURATION.match(compact)
    if not match or not any(match.groups()):
        raise ValueError(f"cannot read duration {text!r}; write it like 3h50m, 90m or 3600s")
    h, m, sec = (float(g) if g else 0.0 for g in match.groups())
    seconds = h * 3600 + m * 60 + sec
    if not seconds > 0:
        raise ValueError(f"duration {text!r} leaves no time to train; give more than 0 s, e.g. 30m")
    return seconds


#: the range of a temperature (above 0, at most the bound of --temperature)
TEMPERATURE_RANGE = (0.0, MAX_TEMPERATURE)


def by_domain(text: str, domains: list[str], value_range: tuple[float, float]) -> dict[str, float]:
    """The values of ``DOMAIN=V,DOMAIN=V`` text (``model.sample_temperature_by_domain``, ``export --colour-gate``
    per domain) by domain name, each above ``value_range[0]`` and at most ``value_range[1]``; ``{}`` for ''.
    Raises ValueError naming what is wrong: a part without '=', an unknown or repeated domain, a value out of
    range."""
    values: dict[str, float] = {}
    low, high = value_range
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        name, sep, raw = (s.strip() for s in part.partition("="))
        if not sep:
            raise ValueError(f"{part!r} is not DOMAIN=VALUE (e.g. {domains[-1]}=1.5)")
        if name not in domains:
            raise ValueError(f"{name!r} is not a domain of this model ({', '.join(domains)}){_suggest(name, domains)}")
        if name in values:
            raise ValueError(f"domain {name!r} is given twice")
        try:
            value = float(raw)
        except ValueError:
            raise ValueError(f"{name}={raw}: give a number") from None
        if not (math.isfinite(value) and low < value <= high):
            raise ValueError(f"{name}={raw}: give a number above {low:g} and at most {high:g}")
        values[name] = value
    return values


def temperature_of(cfg: Config, domain: int) -> float:
    """The default temperature of random attributes of target ``domain`` (index into ``data.domains``):
    its ``model.sample_temperature_by_domain`` entry, else ``model.sample_temperature``."""
    values = by_domain(cfg.model.sample_temperature_by_domain, cfg.data.domains, TEMPERATURE_RANGE)
    return values.get(cfg.data.domains[domain], cfg.model.sample_temperature)


def _plain_name(name) -> bool:
    """Whether ``name`` can name a folder or a file part: text without '/', '\\' or control characters, not '.'
    or '..' (domain names and the run's name become paths)."""
    return isinstance(name, str) and name.strip() not in ("", ".", "..") and not re.search(r"[/\\\x00-\x1f]", name)


def _validate(cfg: Config) -> list[str]:
    """Cross-field checks that single-key rules cannot express."""
    errors = []
    try:
        parse_duration(cfg.train.time_budget)
    except ValueError as exc:
        errors.append(f"train.time_budget: {exc}")
    if cfg.train.batch_size % 2:
        errors.append(f"train.batch_size: {cfg.train.batch_size} must be even (the batch is split into two halves)")
    if cfg.data.crop > cfg.data.resize:
        errors.append(f"data.crop: {cfg.data.crop} must be <= data.resize ({cfg.data.resize})")
    if cfg.data.crop % 4:
        errors.append(f"data.crop: {cfg.data.crop} must be a multiple of 4 (the content code is crop/4)")
    if not cfg.data.root.strip():
        errors.append("data.root: empty; give the dataset folder (for the current folder write .)")
    if len(cfg.data.domains) < 2:
        errors.append("data.domains: at least two domains are needed")
    if len({d.casefold() for d in cfg.data.domains}) != len(cfg.data.domains):
        # names folders (test/NAME, eval's SOURCE2TARGET/): on a case-insensitive disk Apple and apple are one
        errors.append(f"data.domains: names must differ (also in upper/lower case), got {cfg.data.domains}")
    for name in cfg.data.domains:
        if not _plain_name(name):
            errors.append(
                f"data.domains: {name!r} cannot name a domain: it names the data folder (test/NAME) and every "
                f"output file (x_to_NAME_1.png, eval's SOURCE2TARGET/), so it must be a plain name without "
                f"'/', '\\' or control characters, not '.' or '..'"
            )
    if not _plain_name(cfg.name):
        errors.append(
            f"name: {cfg.name!r} cannot name a run: the default run folder is runs/NAME, so it must be a plain "
            f"name without '/', '\\' or control characters, not '.' or '..'"
        )
    try:
        by_domain(cfg.model.sample_temperature_by_domain, cfg.data.domains, TEMPERATURE_RANGE)
    except ValueError as exc:
        errors.append(f"model.sample_temperature_by_domain: {exc}")
    for family, module in FAMILY_SECTIONS.values():
        if cfg.model.family == family and hasattr(module, "validate"):
            errors += module.validate(cfg)
    if cfg.model.family not in FAMILY_NAMES:
        errors.append(
            f"model.family: unknown family {cfg.model.family!r}; known: {', '.join(FAMILY_NAMES)}"
            + _suggest(cfg.model.family, list(FAMILY_NAMES))
        )
    return errors


def _first_key(keys: dict, section: str) -> str:
    return next(k for k in keys if k.startswith(section + ".")).split(".", 1)[1]


def build_config(values: dict[str, Any]) -> Config:
    """Build a validated :class:`Config` from nested or dotted values; raise with every problem at once."""
    if not isinstance(values, dict):
        raise ConfigError(f"a config is a mapping of sections, not {type(values).__name__}")
    keys = all_keys()
    flat = _flatten(values)
    errors: list[str] = []
    resolved: dict[str, Any] = {}
    failed: set[str] = set()
    sections = {k.split(".")[0] for k in keys if "." in k}
    for key, value in flat.items():
        if key in sections and value == {}:
            continue
        if key in sections:
            errors.append(f"{key}: a section, it takes keys (e.g. {key}.{_first_key(keys, key)}: ...), not {value!r}")
            continue
        if key not in keys:
            errors.append(f"unknown key '{key}'{_suggest(key, list(keys))}")
            continue
        tp, f = keys[key]
        value, problem = _coerce(key, value, tp, f)
        if problem:
            errors.append(problem)
            failed.add(key)
        else:
            resolved[key] = value
    cfg = Config()
    for key, value in resolved.items():
        obj = cfg
        *path, leaf = key.split(".")
        for part in path:
            obj = getattr(obj, part)
        setattr(obj, leaf, value)
    # cross-field checks on what is valid so far: report everything at once, except checks that name a key
    # whose value was refused (they would show the default in its place)
    errors += [e for e in _validate(cfg) if not any(re.search(rf"\b{re.escape(k)}\b", e) for k in failed)]
    if errors:
        raise ConfigError("; ".join(errors))
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_config(cfg: Config) -> str:
    """The resolved config as YAML; :func:`load_config_file` reads it back to an equal Config."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, width=1000)


# ----------------------------------------------------------------------------------------- presets


def _preset_dir() -> Path:
    return Path(str(resources.files("gmdrit_cli.config.presets")))


def list_presets() -> dict[str, str]:
    """``{name: description}`` of every preset shipped with the package, sorted by name."""
    out = {}
    for path in sorted(_preset_dir().glob("*.yaml")):
        data = _read_yaml(path)
        out[path.stem] = str(data.get("description", ""))
    return out


def read_config_text(path: Path) -> str:
    """The text of config file ``path``, refused (:class:`ConfigError`) when it is far larger than any config
    (:data:`~gmdrit_cli.limits.MAX_CONFIG_BYTES`) before it is read, or not UTF-8 text."""
    from ..limits import MAX_CONFIG_BYTES

    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_CONFIG_BYTES + 1)
        if len(raw) > MAX_CONFIG_BYTES:
            raise ConfigError(
                f"config file {path} is larger than a config ever is (over {MAX_CONFIG_BYTES:,} bytes; a resolved "
                f"config is about 3 KB); is it the right file?"
            )
        return raw.decode("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"cannot read config file {path}: {exc}") from None


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = read_yaml_text(read_config_text(path), f"config file {path}")
    except yaml.YAMLError as exc:
        where = getattr(exc, "problem_mark", None)
        line = f" at line {where.line + 1}" if where is not None else ""
        problem = getattr(exc, "problem", None)
        why = f" ({problem})" if problem and "twice" in problem else ""
        raise ConfigError(f"config file {path} is not valid YAML{line}{why}; fix the file") from None
    if data is None or data == {}:  # an empty file is a mistake, not a request for every default
        raise ConfigError(
            f"config file {path} is empty; write its settings (see gmdrit_cli/config/presets/quickstart.yaml), "
            f"or give a preset name"
        )
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of sections, not {type(data).__name__}")
    return data


def resolve_preset_path(preset: str) -> Path:
    """A preset name from ``gmdrit_cli/config/presets/`` or a path to a YAML file."""
    path = Path(preset)
    if path.suffix in (".yaml", ".yml") or path.exists():
        if path.is_dir():
            raise ConfigError(f"preset {path} is a folder; give a preset name (see `gmdrit presets`) or a YAML file")
        if not path.is_file():
            what = "is not a regular file (a device or pipe)" if path.exists() else "does not exist"
            raise ConfigError(f"preset file {path} {what}; give a preset name (see `gmdrit presets`) or a YAML path")
        return path
    candidate = _preset_dir() / f"{preset}.yaml"
    if candidate.is_file():
        return candidate
    names = list(list_presets())
    close = difflib.get_close_matches(preset, names, n=1, cutoff=0.5)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    raise ConfigError(f"unknown preset '{preset}'{hint}; available: {', '.join(names)}")


def load_config(preset: str, overrides: list[str] | None = None) -> Config:
    """Resolve a preset plus ``--set`` overrides into a validated Config."""
    path = resolve_preset_path(preset)
    values = _flatten(_read_yaml(path))
    values.setdefault("name", path.stem)
    extra, errors = parse_overrides(overrides or [])
    values.update(extra)
    if errors:
        raise ConfigError("; ".join(errors))
    return build_config(values)


def load_config_file(path: Path) -> Config:
    """Read a resolved ``config.yaml`` (as written into a run folder)."""
    return build_config(_read_yaml(Path(path)))
