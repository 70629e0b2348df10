"""Limits of the size-like options, and the one check of a number an option or config key takes.

Every count or size a user gives (``--size``, ``--samples``, ``--steps``, ``--sigma``, ...) has a range,
and the reason for its bound is part of the message: a value past it would run for hours or exhaust the
memory instead of failing at once. Floats must be finite (``nan`` and ``inf`` parse as floats).
"""

from __future__ import annotations

import math

from .errors import LimitError

#: translate / interpolate: working resolution (memory grows with its square: about 1 GB per image at 1024 px
#: for a 64-wide model, several images at once)
MAX_WORK_SIZE = 1024
#: translate: random-attribute outputs per input (each is a file and a column of the grid)
MAX_SAMPLES = 100
#: interpolate: frames of a strip and its GIF
MAX_STEPS = 256
#: eval: outputs per test image and task (BicycleGAN's protocol uses 20)
MAX_SAMPLES_PER_INPUT = 100
#: data edges: side of each half in pixels (pix2pix uses 256; memory grows with its square)
MAX_EDGE_SIZE = 2048
#: threads for torch
MAX_THREADS = 1024
#: benchmark: timed (and untimed warm-up) iterations per row, each a full training iteration (the report's
#: Table 3 times 50)
MAX_BENCHMARK_ITERS = 10_000
#: eval: generated images per forward pass (memory grows with it)
MAX_EVAL_BATCH = 4096
#: translate / eval: scale of the prior's standard deviation (far outside the trained region past this)
MAX_TEMPERATURE = 100.0
#: export --refit-prior: training images per domain encoded (each is decoded and encoded; a mean over a few
#: hundred moves little with more)
MAX_REFIT_IMAGES = 100_000
#: export --refit-prior --refit-by discriminator: training images per domain, each translated by 256 prior draws
#: with all of them encoded at once (16 take 2 to 6 minutes at 128 px on 2 cores; 256 would take hours and gigabytes)
MAX_REFIT_CRITIC_IMAGES = 256
#: a YAML config (a preset, a run's config.yaml): the largest preset is about 2 KB and a resolved config about
#: 3 KB, so a file past this is not a config, and reading it would take minutes and gigabytes
MAX_CONFIG_BYTES = 1 << 20
#: data download: bytes of one archive (the largest, edges2handbags.tar.gz, is about 8.6 GB); a transfer past this
#: is not a dataset (a stream, a device file, a wrong URL) and would fill the disk
MAX_DOWNLOAD_BYTES = 16 << 30
#: nesting of the lists and mappings of a YAML config or --set value (a config has two levels; the YAML
#: reader recurses once per level and Python's stack ends near 1000)
MAX_CONFIG_DEPTH = 32


def finite(
    value: float,
    option: str,
    *,
    positive: bool = True,
    low: float | None = None,
    high: float | None = None,
    why: str = "",
) -> float:
    """``value`` as a float when it is finite (and above 0 with ``positive``, within [low, high] when
    given); else :class:`LimitError` with one line naming ``option`` and ``why`` the bound is there."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise LimitError(f"{option} {value!r}: give a number") from None
    reason = f" ({why})" if why else ""
    if not math.isfinite(number):
        raise LimitError(f"{option} {value}: give a finite number{' above 0' if positive else ''}")
    if positive and not number > 0:
        raise LimitError(f"{option} {value}: give a number above 0")
    if low is not None and number < low:
        raise LimitError(f"{option} {value}: give at least {low:g}{reason}")
    if high is not None and number > high:
        raise LimitError(f"{option} {value}: give at most {high:g}{reason}")
    return number


def temperature_option(value: float | None) -> float | None:
    """A ``--temperature`` a user gave (None: not given, the model's default applies) checked: above 0, at most
    :data:`MAX_TEMPERATURE`."""
    if value is None:
        return None
    why = "1 = the model's prior; far past it the attributes leave what the model was trained on"
    return finite(value, "--temperature", high=MAX_TEMPERATURE, why=why)


def whole_number(text: str | None, digits: int = 18) -> int | None:
    """``text`` as a whole number >= 0 when it is 1 to ``digits`` ASCII digits (a 64-bit integer at the default),
    else None: ``str.isdigit`` also accepts '²' and 5,000-digit strings, which ``int()`` refuses with a ValueError."""
    if not isinstance(text, str) or not 0 < len(text) <= digits or not (text.isascii() and text.isdigit()):
        return None
    return int(text)


MAX_SEED = 2**32 - 1


def seed(value: int, option: str = "--seed") -> int:
    """A seed every random generator takes (numpy's and torch's): 0 to 2**32 - 1."""
    return bounded(value, option, 0, MAX_SEED, "seeds are 32-bit numbers")


def bounded(value: int, option: str, low: int, high: int, why: str) -> int:
    """``value`` when ``low <= value <= high``; else :class:`LimitError` naming the bound and ``why``."""
    if value < low:
        raise LimitError(f"{option} {value}: give at least {low}")
    if value > high:
        raise LimitError(f"{option} {value}: give at most {high} ({why})")
    return int(value)
