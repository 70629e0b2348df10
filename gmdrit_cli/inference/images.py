"""Image files in and out without torch: finding inputs, decoding them, sizing and writing outputs.

Shared by the torch translate path (:mod:`gmdrit_cli.inference.translate`) and the torch-free ONNX one
(:mod:`gmdrit_cli.inference.onnx_translate`), so both treat odd inputs alike. Problems with one input are
:class:`InputFailure` (the other inputs go on); problems that stop a call raise :class:`InferenceError`.
"""

from __future__ import annotations

import difflib
import functools
import glob
import math
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from ..atomic import atomic_write
from ..errors import InferenceError
from ..limits import MAX_WORK_SIZE, bounded, whole_number
from ..outputs import os_error_line, refuse_checkpoint_area

if TYPE_CHECKING:
    from ..config.schema import Config

#: a translated output keeps the input's aspect ratio, with its long side at most this many working sizes
MAX_ASPECT_FACTOR = 8
GUTTER = 2


def open_rgb(path: Path) -> Image.Image:
    """Decode an image fully, apply its EXIF orientation and convert it to 8-bit RGB."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # PIL warns on odd EXIF or huge images; decoding decides
        with Image.open(path) as im:
            im = ImageOps.exif_transpose(im)
            if im.mode == "I;16" or im.mode.startswith("I;16") or im.mode == "I":
                # 16-bit grey: scale to 8 bit instead of clipping (PIL's convert clips at 255)
                arr = np.asarray(im, dtype=np.float32)
                peak = 65535.0 if arr.max() > 255 else 255.0
                im = Image.fromarray(np.clip(arr / peak * 255.0 + 0.5, 0, 255).astype(np.uint8))
            if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
                im = im.convert("RGBA")
                background = Image.new("RGBA", im.size, (255, 255, 255, 255))
                im = Image.alpha_composite(background, im)
            return im.convert("RGB")


@dataclass
class InputFailure:
    """One input that could not be used, with a one-line reason."""

    source: str
    message: str


@dataclass
class TranslatedInput:
    """One translated input (the torch and the ONNX path alike): its outputs and their grid."""

    source: Path
    outputs: list[Path]
    grid: Path
    size: tuple[int, int]  # (width, height) of each output


@functools.cache
def image_extensions() -> frozenset[str]:
    """The file name suffixes Pillow can read (lower case, with the dot). Asked only when a folder is listed:
    it imports every Pillow plugin (about 0.1 s of a 0.6-s ONNX translate), where opening one JPEG or PNG
    imports only the common ones."""
    return frozenset(ext.lower() for ext in Image.registered_extensions())


def has_image_suffix(path: Path) -> bool:
    return path.suffix.lower() in image_extensions()


def _has_magic(text: str) -> bool:
    return any(c in text for c in "*?[")


def _folder_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and has_image_suffix(p))


def expand_inputs(items: list[str | Path]) -> tuple[list[Path], list[InputFailure]]:
    """Files, folders (their image files, sorted, not recursive, without gmdrit's own outputs) and globs -> image
    paths, in order and without duplicates, plus one :class:`InputFailure` for each item that names nothing usable."""
    entries = _expand(items)
    return ([e for e in entries if isinstance(e, Path)], [e for e in entries if isinstance(e, InputFailure)])


def _expand(items: list[str | Path]) -> list[Path | InputFailure]:
    """:func:`expand_inputs` as one list in the order of the arguments."""
    entries: list[Path | InputFailure] = []
    failures = entries
    seen: set[Path] = set()

    def add(p: Path) -> None:
        key = p.resolve()
        if key not in seen:
            seen.add(key)
            entries.append(p)

    for item in items:
        text = str(item)
        p = Path(text).expanduser()
        if p.is_dir():
            every = _folder_images(p)
            # a folder's own translations (translate DIR --out DIR, run again) are outputs, not new inputs
            found = [f for f in every if not _is_our_output(f)]
            if not found:
                why = "folder holds only gmdrit's own outputs" if every else "folder has no image files"
                failures.append(InputFailure(text, why))
            for f in found:
                add(f)
        elif p.is_file():
            add(p)
        elif p.exists():
            failures.append(InputFailure(text, "not a regular file"))
        elif _has_magic(text):
            matches = sorted(Path(m) for m in glob.glob(os.path.expanduser(text), recursive=True))
            files = [m for m in matches if m.is_file()]
            for d in (m for m in matches if m.is_dir()):
                files += _folder_images(d)
            if not files:
                failures.append(InputFailure(text, "no file matches this pattern"))
            for f in files:
                add(f)
        else:
            failures.append(InputFailure(text, "no such file or folder"))
    return entries


def reference_problem(path: Path) -> str:
    """Why ``path``, not a regular file, cannot be a reference image."""
    if path.is_dir():
        return "is a folder, give an image file"
    return "not a regular file (a device or pipe), give an image file" if path.exists() else "no such file"


def read_image(path: Path) -> Image.Image:
    """Decode an input image to RGB (EXIF orientation, alpha on white, 16-bit scaled), or raise
    :class:`InferenceError` with a one-line reason."""
    try:
        if path.stat().st_size == 0:
            raise InferenceError("empty file")
        return open_rgb(path)
    except InferenceError:
        raise
    except UnidentifiedImageError:
        raise InferenceError("not an image (Pillow does not recognise its format)") from None
    except Image.DecompressionBombError as exc:
        raise InferenceError(f"image too large to decode safely: {exc}") from None
    except PermissionError:
        raise InferenceError("permission denied") from None
    except (OSError, SyntaxError, ValueError, EOFError) as exc:
        text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise InferenceError(f"damaged or truncated image ({text})") from None
    except MemoryError:
        raise InferenceError("not enough memory to decode this image") from None
    except Exception as exc:  # any other decoder failure: still one line for this input
        raise InferenceError(f"cannot decode image ({type(exc).__name__}: {exc})") from None


# ------------------------------------------------------------------------------------------ helpers


def resolve_domain(cfg: Config, name: str | int) -> int:
    """A domain name of the model (case-insensitive) or its index -> index; unknown names list the valid ones."""
    names = cfg.data.domains
    text = str(name).strip()
    if text in names:
        return names.index(text)
    lower = [n.lower() for n in names]
    if text.lower() in lower:
        return lower.index(text.lower())
    index = whole_number(text)
    if index is not None and index < len(names):
        return index
    close = difflib.get_close_matches(text.lower(), lower, n=1, cutoff=0.5)
    hint = f" (did you mean '{names[lower.index(close[0])]}'?)" if close else ""
    raise InferenceError(f"unknown domain '{text}'{hint}; this model's domains are: {', '.join(names)}")


def check_size(cfg: Config, size: int | None) -> int:
    size = cfg.data.crop if size is None else int(size)
    if size < 16 or size % 4:
        raise InferenceError(
            f"--size {size}: the working size must be a multiple of 4 and at least 16 "
            f"(the model was trained at {cfg.data.crop})"
        )
    return bounded(
        size,
        "--size",
        16,
        max(MAX_WORK_SIZE, cfg.data.crop),
        f"memory grows with its square; the model was trained at {cfg.data.crop}",
    )


def check_out(out: Path) -> Path:
    """Refuse an output folder gmdrit must not write (a file, a run's checkpoints) before any work; it is
    created when the first output is ready."""
    refuse_checkpoint_area(out, "--out")
    if out.exists() and not out.is_dir():
        raise InferenceError(f"--out {out} is a file, not a folder; choose another --out")
    return out


def output_size(width: int, height: int, size: int, square: bool) -> tuple[int, int]:
    """Size of a translated output: ``size`` x ``size`` with ``square``; otherwise the input's aspect ratio
    with the same number of pixels as the working square, the long side at most ``MAX_ASPECT_FACTOR * size``."""
    if square:
        return size, size
    ratio = width / height
    w, h = size * math.sqrt(ratio), size / math.sqrt(ratio)
    longest = MAX_ASPECT_FACTOR * size
    if max(w, h) > longest:
        scale = longest / max(w, h)
        w, h = w * scale, h * scale
    return max(1, round(w)), max(1, round(h))


def _resize(im: Image.Image, wh: tuple[int, int]) -> Image.Image:
    return im if im.size == wh else im.resize(wh, Image.BICUBIC, reducing_gap=3.0)


def compose(images: list[Image.Image], pad: int = GUTTER) -> Image.Image:
    """Equal-sized images side by side with white gutters (top to bottom when they are more than twice as
    wide as tall)."""
    w, h = images[0].size
    vertical = w > 2 * h
    n = len(images)
    size = (w + 2 * pad, n * (h + pad) + pad) if vertical else (n * (w + pad) + pad, h + 2 * pad)
    canvas = Image.new("RGB", size, (255, 255, 255))
    for i, im in enumerate(images):
        canvas.paste(im, (pad, pad + i * (h + pad)) if vertical else (pad + i * (w + pad), pad))
    return canvas


#: every translate / interpolate output carries it (PNG text "Software", GIF comment): the files of that name
#: it may replace
OUTPUT_MARK = "gmdrit"


def _is_our_output(path: Path) -> bool:
    if path.is_symlink() or not path.is_file():
        return False
    try:
        with Image.open(path) as im:
            return im.info.get("Software") == OUTPUT_MARK or im.info.get("comment") == OUTPUT_MARK.encode()
    except (OSError, ValueError, Image.DecompressionBombError):
        return False


def _written(path: Path, write) -> None:
    """``atomic_write(path, write)``, an OS error (no permission, a full disk) as one line; a file of that name
    that is not an earlier output (the user's own, or one they edited) is refused, never replaced."""
    if (path.exists() or path.is_symlink()) and not _is_our_output(path):
        raise InferenceError(
            f"{path} already exists and is not an output of gmdrit translate or interpolate; gmdrit does not "
            f"replace it: move it away, or choose another --out"
        )
    try:
        atomic_write(path, write)
    except OSError as exc:
        raise InferenceError(os_error_line(exc, f"cannot write {path}", "choose another --out")) from None


#: zlib compression level of the PNGs translate and interpolate write
PNG_LEVEL = 1


def _save_png(im: Image.Image, path: Path) -> None:
    from PIL.PngImagePlugin import PngInfo

    info = PngInfo()
    info.add_text("Software", OUTPUT_MARK)
    # zlib level 1: about a fifth of the encoding time of Pillow's default 6 (some 50 ms of a 5-sample
    # translate at 128 px) for files about a fifth larger
    _written(path, lambda tmp: im.save(tmp, format="PNG", pnginfo=info, compress_level=PNG_LEVEL))


def _save_gif(frames: list[Image.Image], path: Path, fps: float, loop: int) -> None:
    duration = max(20, 10 * round(100.0 / fps))  # GIF stores centiseconds
    _written(
        path,
        lambda tmp: frames[0].save(
            tmp,
            format="GIF",
            save_all=True,
            append_images=frames[1:],
            duration=duration,
            loop=loop,
            optimize=False,
            comment=OUTPUT_MARK,
        ),
    )


def _unique_stem(path: Path, used: set[str]) -> str:
    stem = path.stem or "image"
    candidate, i = stem, 2
    while candidate in used:
        candidate = f"{stem}-{i}"
        i += 1
    used.add(candidate)
    return candidate


def write_translated(
    path: Path,
    im: Image.Image,
    wh: tuple[int, int],
    fakes: list[Image.Image],
    *,
    out: Path,
    stem: str,
    name: str,
    tag: str,
) -> TranslatedInput:
    """Write the outputs of one input, ``<stem>_to_<name>_<tag><k>.png``, and its grid (the input at ``wh``, then
    the outputs) into ``out``; shared by the torch and the ONNX translate paths."""
    outputs = []
    for k, fake in enumerate(fakes, 1):
        target = out / f"{stem}_to_{name}_{tag}{k}.png"
        _save_png(fake, target)
        outputs.append(target)
    grid = out / f"{stem}_to_{name}_grid.png"
    _save_png(compose([_resize(im, wh), *fakes]), grid)
    return TranslatedInput(path, outputs, grid, wh)
