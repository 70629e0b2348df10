"""`gmdrit report`: one static HTML page about one or more run folders.

:func:`build_report` reads each run folder (``metrics.jsonl``, ``samples/``, ``config.yaml``,
``checkpoints/``, ``eval/*/eval.json`` with the saved translations, ``benchmark.json``), draws the charts
with matplotlib (``charts.py``), copies or composes every picture into ``OUT/assets/`` and writes
``OUT/index.html`` (``html.py``). The page needs no server and no network: open it from disk.
"""

from __future__ import annotations

import math
import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml
from PIL import Image

from .. import atomic, jsonfile
from ..errors import DataError, GmdritError, ReportError
from ..limits import whole_number
from ..outputs import latest_name, os_error_line, output_folder
from .charts import benchmark_chart, loss_group_chart
from .run_metrics import damaged_metric_lines, group_titles, loss_group, read_metrics, series

_ITER = re.compile(r"iter_(\d+)$")


@dataclass
class Checkpoint:
    name: str
    iteration: int
    size_bytes: int
    saved: str  # local time the checkpoint's state.json was written, "YYYY-MM-DD HH:MM"
    latest: bool


@dataclass
class EvalResult:
    """One ``eval.json`` with the pictures made for it: a composite of a few translations per task."""

    path: Path
    report: dict
    translations: dict[str, Path] = field(default_factory=dict)  # "source → target" -> composite PNG


@dataclass
class RunFolder:
    """What the report shows of one run folder; ``label`` names it on the page and in the legends."""

    path: Path
    label: str
    metrics: list[dict]
    config_text: str | None
    samples: list[Path]
    checkpoints: list[Checkpoint]
    eval_files: list[Path]
    benchmark_files: list[Path]
    figures: list[Path]  # other PNGs under eval/ (e.g. `gmdrit mixture`'s plots)
    has_tensorboard: bool
    problems: list[str] = field(default_factory=list)  # damaged files, one line each (left out of the page)

    @property
    def config(self) -> dict:
        """``config.yaml`` as a mapping; {} when it is missing or damaged (``problems`` says which)."""
        from ..config.schema import read_yaml_text

        try:
            data = read_yaml_text(self.config_text, "config.yaml") if self.config_text else {}
        except (yaml.YAMLError, GmdritError):
            return {}
        return data if isinstance(data, dict) else {}


@dataclass
class ReportResult:
    index: Path
    runs: list[RunFolder]
    images: list[Path]  # every picture the page shows, under OUT/assets
    notes: list[str] = field(default_factory=list)


def _iteration(path: Path) -> int:
    m = _ITER.search(path.stem if path.suffix else path.name)
    return int(m.group(1)) if m else -1


def _checkpoints(folder: Path) -> list[Checkpoint]:
    if not folder.is_dir():
        return []
    latest = latest_name(folder)  # a damaged pointer marks no checkpoint as the latest
    out = []
    for sub in sorted((p for p in folder.iterdir() if p.is_dir() and _ITER.fullmatch(p.name)), key=_iteration):
        state = sub / "state.json"
        saved = time.strftime("%Y-%m-%d %H:%M", time.localtime(state.stat().st_mtime)) if state.exists() else "-"
        size = sum(f.stat().st_size for f in sub.iterdir() if f.is_file())
        out.append(Checkpoint(sub.name, _iteration(sub), size, saved, sub.name == latest))
    return out


def _sample_grids(folder: Path, problems: list[str]) -> list[Path]:
    """The run's sample grids (``samples/iter_N.png``) by iteration. Something else of such a name (a folder,
    a pipe, a broken link) is left out with a note: one odd entry does not stop the whole report."""
    grids = []
    for path in folder.glob("iter_*.png"):
        if path.is_file():
            grids.append(path)
        else:
            problems.append(f"{path} is not a file: left out of the sample grids")
    return sorted(grids, key=_iteration)


def _run_of(path: Path) -> Path:
    """The run folder a user means by ``path``: the run of one of its checkpoints, of ``checkpoints/latest``, of
    ``checkpoints/`` or of its ``eval/`` folder; any other path as given."""
    from ..inference.model_files import run_folder_of

    if path.name in ("eval", "checkpoints") and path.is_dir() and (path.parent / "checkpoints").is_dir():
        return path.parent
    return run_folder_of(path) or path


def read_run(path: str | Path, label: str | None = None) -> RunFolder:
    """The parts of a run folder the report shows; a folder with none of them is a ReportError."""
    path = _run_of(Path(path))
    if not path.is_dir():
        raise ReportError(f"{path} is not a folder; give run folders (runs/NAME)")
    config = path / "config.yaml"
    eval_files = sorted({*path.glob("eval/*/eval.json"), *path.glob("eval*/eval.json")})
    benchmarks = [p for p in (path / "benchmark.json", path / "benchmark" / "benchmark.json") if p.is_file()]
    figures = sorted(p for p in path.glob("eval/*/*.png"))
    problems: list[str] = []
    config_text = _config_text(config, problems) if config.is_file() else None
    run = RunFolder(
        path=path,
        label=label or path.resolve().name,
        metrics=read_metrics(path / "metrics.jsonl"),
        config_text=config_text,
        samples=_sample_grids(path / "samples", problems),
        checkpoints=_checkpoints(path / "checkpoints"),
        eval_files=eval_files,
        benchmark_files=benchmarks,
        figures=figures,
        has_tensorboard=(path / "tensorboard").is_dir(),
        problems=problems,
    )
    if config_text and not run.config:
        problems.append(f"{config}: not a YAML mapping (damaged?), shown as text only")
    if (path / "metrics.jsonl").exists() and not (path / "metrics.jsonl").is_file():
        problems.append(f"{path / 'metrics.jsonl'} is not a file: no loss curves")
    damaged = damaged_metric_lines(path / "metrics.jsonl")
    if damaged:
        problems.append(f"{path / 'metrics.jsonl'}: {damaged} damaged line(s) left out of the loss curves")
    if not (run.metrics or run.config_text or run.samples or run.checkpoints or eval_files or benchmarks):
        raise ReportError(
            f"{path} holds no run: no metrics.jsonl, config.yaml, samples/, checkpoints/, "
            f"eval/*/eval.json or benchmark.json"
        )
    return run


def _config_text(path: Path, problems: list[str]) -> str | None:
    """The run's config.yaml as text; None, and ``problems`` says so, when it is far larger than a config."""
    from ..limits import MAX_CONFIG_BYTES

    if path.stat().st_size > MAX_CONFIG_BYTES:
        problems.append(f"{path}: over {MAX_CONFIG_BYTES:,} bytes, not a config (damaged?), left out")
        return None
    return _text(path, problems)


def _text(path: Path, problems: list[str]) -> str:
    """A run file's text; bytes that are not UTF-8 are replaced, and ``problems`` says so."""
    raw = path.read_bytes()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        problems.append(f"{path}: not UTF-8 text (damaged?)")
        return raw.decode("utf-8", "replace")


def _json_file(path: Path, notes: list[str], check) -> dict | None:
    """A run folder's JSON file when it parses and ``check(data)`` finds nothing wrong; else a note and None."""
    try:
        data = jsonfile.loads(path.read_bytes().decode("utf-8"))
    except (ValueError, RecursionError):  # JSONDecodeError, UnicodeDecodeError, nesting past the recursion limit
        notes.append(f"{path}: not valid JSON (damaged?), left out")
        return None
    problem = check(data)
    if problem:
        notes.append(f"{path}: {problem} (damaged?), left out")
        return None
    return data


#: what the page cannot show when a field of a run's JSON file has another shape than gmdrit writes
_SHAPE_ERRORS = (KeyError, TypeError, ValueError, AttributeError, IndexError, OverflowError)


def _plain_name(value) -> bool:
    """A domain name as eval writes it: a string usable as one path component (no folder, no '..')."""
    return isinstance(value, str) and value not in ("", ".", "..") and not re.search(r"[/\\\0]", value)


def eval_report_problem(data) -> str | None:
    """What keeps ``data`` from being an ``eval.json`` the page can show, or None: the parts' types, plain domain
    names (they name the translation folders), then the page's own rendering of it (a field of another shape)."""
    if not isinstance(data, dict):
        return "not a JSON object"
    parts = {"tasks": list, "settings": dict, "model": dict}
    wrong = [k for k, kind in parts.items() if not isinstance(data.get(k), kind)]
    wrong += [k for k in ("data",) if not isinstance(data.get(k, {}), dict)]
    if wrong:
        return f"no valid {', '.join(wrong)}"
    if not all(
        isinstance(t, dict) and _plain_name(t.get("source")) and _plain_name(t.get("target")) for t in data["tasks"]
    ):
        return "a task row without plain source and target domain names"
    if not all(isinstance(data.get(k, {}) or {}, dict) for k in ("mean", "reference", "reference_mean", "cluster")):
        return "a summary that is not an object"
    from .html import _eval_section

    try:
        _eval_section(EvalResult(Path("eval.json"), data), Path("."))
    except _SHAPE_ERRORS as exc:
        return f"a field of another shape than eval writes ({type(exc).__name__}: {exc})"
    return None


def _seconds(value) -> bool:
    """A time in seconds as benchmark writes it: a finite number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def benchmark_problem(data) -> str | None:
    if not isinstance(data, dict) or not isinstance(data.get("rows", []), list):
        return "not a benchmark report"
    if not isinstance(data.get("environment", {}), dict):
        return "an environment that is not an object"
    for r in data.get("rows", []):
        if not isinstance(r, dict):
            return "a row that is not an object"
        if not isinstance(r.get("resolution"), (int, str)) or not isinstance(r.get("label"), str):
            return "a row without resolution and label"
        if not _seconds(r.get("median")) or not (r.get("report_seconds") is None or _seconds(r["report_seconds"])):
            return "a row whose median or report_seconds is not a number of seconds"
        if not _seconds(r.get("peak_memory_bytes", 0)):
            return "a row whose peak_memory_bytes is not a number"
    return None


#: the file that marks ``OUT/assets`` as a gmdrit report's, so that a report stopped before its index.html is not
#: taken for the user's folder
ASSETS_MARK = ".gmdrit-report"


def report_folder(out: Path) -> Path:
    """``out`` ready for the page: created, inside no run's checkpoints, and holding no index.html that
    another program wrote (only an earlier gmdrit report is replaced), nor, without a page, an ``assets/`` that
    no report made (the pictures' names, e.g. assets/loss_totals.png, would replace the user's files)."""
    out = output_folder(out, "--out")
    index = out / "index.html"
    if index.is_file():
        with open(index, "rb") as f:
            head = f.read(4096)
        if b"<title>gmdrit report" not in head:
            raise ReportError(
                f"{index} exists and is not a gmdrit report; gmdrit does not replace it: choose another --out"
            )
    elif index.exists():
        raise ReportError(f"{index} exists and is not a file; choose another --out")
    else:  # no page: an assets/ of the user's (or of a report stopped before its page) is not replaced blindly
        assets = out / "assets"
        if assets.is_dir() and not (assets / ASSETS_MARK).is_file() and any(assets.iterdir()):
            raise ReportError(
                f"{assets} holds files that no gmdrit report wrote, and the report writes its pictures there; "
                f"choose another --out"
            )
    return out


def spread(items: list, k: int) -> list:
    """At most ``k`` items, evenly spaced, always the first and the last."""
    if len(items) <= k:
        return list(items)
    if k == 1:
        return [items[-1]]
    return [items[round(i * (len(items) - 1) / (k - 1))] for i in range(k)]


def _copy(src: Path, dst: Path) -> Path:
    dst.parent.mkdir(parents=True, exist_ok=True)
    return atomic.atomic_write(dst, lambda tmp: shutil.copyfile(src, tmp))


# -- translations of an eval ------------------------------------------------------------------------


def _input_folder(run: RunFolder, report: dict, source: str) -> Path | None:
    """The test folder of domain ``source`` of the eval's dataset, if it can be found from here: the
    recorded root as it is, or relative to the folders around the run (it is relative to where eval ran)."""
    from ..data.unpaired import domain_folders

    root = str(report.get("data", {}).get("root", ""))
    domains = report.get("model", {}).get("domains", [])
    if not root or source not in domains:
        return None
    candidates = (
        [root]
        if root.startswith("sample:") or Path(root).is_absolute()
        else [root, *(str(base / root) for base in (run.path.resolve().parent.parent, run.path.resolve().parent))]
    )
    for candidate in candidates:
        try:
            return domain_folders(candidate, domains, "test")[domains.index(source)]
        except DataError:
            continue
    return None


def _test_input(folder: Path | None, stem: str, size: int, resize: int) -> Image.Image | None:
    """The test image ``stem`` preprocessed as eval does: resize square (bicubic), centre crop ``size``."""
    if folder is None:
        return None
    from ..data.unpaired import open_rgb

    for candidate in sorted(folder.glob(f"{stem}.*")):
        try:
            im = open_rgb(candidate).resize((resize, resize), Image.BICUBIC)
        except (OSError, ValueError):
            return None
        left = (resize - size) // 2
        return im.crop((left, left, left + size, left + size))
    return None


def _picture(path: Path) -> Image.Image | None:
    """An eval output as RGB, or None when it is not a readable image (damaged, emptied, not a PNG)."""
    try:
        with Image.open(path) as im:
            return im.convert("RGB")
    except (OSError, ValueError, Image.DecompressionBombError):
        return None


def translations_composite(
    run: RunFolder, report: dict, task_folder: Path, source: str, dst: Path, inputs: int, per_input: int
) -> Path | None:
    """One PNG: a row per input (the first ``inputs`` in name order), the test input first when its file is
    found, then its first ``per_input`` outputs (``<input>_<k>.png``); None when the folder has no outputs."""
    grouped: dict[str, list[tuple[int, Path]]] = {}
    for png in task_folder.glob("*.png"):
        stem, _, k = png.stem.rpartition("_")
        if stem and whole_number(k) is not None:
            grouped.setdefault(stem, []).append((int(k), png))
    chosen = sorted(grouped)[:inputs]
    pictures = {stem: [im for _, p in sorted(grouped[stem])[:per_input] if (im := _picture(p))] for stem in chosen}
    chosen = [stem for stem in chosen if pictures[stem]]  # a damaged output is left out, not the whole page
    if not chosen:
        return None
    w, h = pictures[chosen[0]][0].size
    folder = _input_folder(run, report, source)
    resize = int(report.get("model", {}).get("resize", w))
    rows = [(_test_input(folder, stem, w, max(resize, w)), pictures[stem]) for stem in chosen]
    with_inputs = all(src is not None for src, _ in rows)
    cols = (1 if with_inputs else 0) + max(len(outs) for _, outs in rows)
    pad, gap = 2, 8 if with_inputs else 0
    canvas = Image.new("RGB", (cols * (w + pad) + pad + gap, len(rows) * (h + pad) + pad), (255, 255, 255))
    for r, (src, outs) in enumerate(rows):
        tiles = ([src] if with_inputs else []) + outs
        for c, tile in enumerate(tiles):
            x = pad + c * (w + pad) + (gap if with_inputs and c > 0 else 0)
            canvas.paste(tile.resize((w, h)) if tile.size != (w, h) else tile, (x, pad + r * (h + pad)))
    dst.parent.mkdir(parents=True, exist_ok=True)
    return atomic.atomic_write(dst, lambda tmp: canvas.save(tmp, format="PNG"))


# -- the page ---------------------------------------------------------------------------------------


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).strip("-") or "run"


def _labels(paths: list[Path]) -> list[str]:
    """Folder names, with the parent folder added where two runs share a name."""
    names = [p.resolve().name for p in paths]
    return [f"{p.resolve().parent.name}/{n}" if names.count(n) > 1 else n for p, n in zip(paths, names)]


def _loss_charts(
    runs: list[RunFolder], assets: Path, smoothing: float, update: Callable[[str, int, int], None]
) -> list[tuple[str, Path]]:
    """One chart per loss group (every run overlaid), in the groups' order: (group, PNG under ``assets``)."""
    run_series = [(run.label, series(run.metrics)) for run in runs]
    keys_by_group: dict[str, list[str]] = {}
    for _, data in run_series:
        for key in data:
            group = keys_by_group.setdefault(loss_group(key), [])
            if key not in group:
                group.append(key)
    charts = []
    groups = [g for g in group_titles() if g in keys_by_group]
    for i, group in enumerate(groups):
        update("loss charts", i, len(groups))
        path = loss_group_chart(
            assets / f"loss_{group}.png",
            group_titles()[group],
            keys_by_group[group],
            run_series,
            0.0 if group == "schedule" else smoothing,
        )
        charts.append((group, path))
    return charts


def _eval_translations(
    run: RunFolder,
    folder: Path,
    inputs_per_task: int,
    outputs_per_input: int,
    notes: list[str],
    update: Callable[[str, int, int], None],
) -> list[EvalResult]:
    """Every readable ``eval.json`` of ``run`` with a composite of a few translations per task (under ``folder``);
    a damaged file is a note."""
    evals = []
    for e, eval_file in enumerate(run.eval_files):
        update(f"eval translations of {run.label}", e, len(run.eval_files))
        report = _json_file(eval_file, notes, eval_report_problem)
        if report is None:
            continue
        result = EvalResult(eval_file, report)
        for task in report.get("tasks", []):
            name = f"{task['source']}2{task['target']}"
            dst = folder / "eval" / f"{e + 1}-{_slug(eval_file.parent.name)}" / f"{name}.png"
            try:
                made = translations_composite(
                    run, report, eval_file.parent / name, task["source"], dst, inputs_per_task, outputs_per_input
                )
            except _SHAPE_ERRORS as exc:  # e.g. a model.resize that is not a number
                notes.append(f"{eval_file}: no translations shown for {name} ({type(exc).__name__}: {exc}; damaged?)")
                continue
            if made is not None:
                result.translations[f"{task['source']} → {task['target']}"] = made
        evals.append(result)
    return evals


def _benchmark_charts(run: RunFolder, folder: Path, notes: list[str]) -> list[tuple[Path, dict, Path]]:
    """(file, its content, its chart under ``folder``) of every readable ``benchmark.json`` of ``run``."""
    benches = []
    for b, bench_file in enumerate(run.benchmark_files):
        payload = _json_file(bench_file, notes, benchmark_problem)
        if payload is None:
            continue
        chart = benchmark_chart(
            folder / f"benchmark_{b + 1}.png",
            payload.get("rows", []),
            payload.get("environment", {}).get("device", "?"),
        )
        benches.append((bench_file, payload, chart))
    return benches


def _assets_folder(out: Path) -> Path:
    """``out/assets``, made now and marked as a report's (:data:`ASSETS_MARK`: a report stopped before its
    page is continued by the next one); a folder that cannot be made stops the report with its reason."""
    assets = out / "assets"
    try:
        assets.mkdir(exist_ok=True)
        atomic.write_text(assets / ASSETS_MARK, "written by gmdrit report\n")
    except OSError as exc:
        raise ReportError(os_error_line(exc, f"cannot create {assets}", "choose another --out")) from None
    return assets


def build_report(
    paths: list[str | Path],
    out: str | Path,
    *,
    smoothing: float = 0.9,
    max_grids: int = 8,
    inputs_per_task: int = 4,
    outputs_per_input: int = 5,
    progress: Callable[[str, int, int], None] | None = None,
) -> ReportResult:
    """Write ``out/index.html`` and ``out/assets/`` for the run folders ``paths``; returns what was written."""

    if not paths:
        raise ReportError("give at least one run folder")
    if not 0 <= smoothing < 1:
        raise ReportError(f"--smoothing must be in [0, 1), not {smoothing}")
    update = progress or (lambda stage, done, total: None)
    unique: dict[Path, str | Path] = {}
    for p in map(_run_of, map(Path, paths)):  # the same run given twice (`runs/a runs/a/`) is reported once
        unique.setdefault(p.expanduser().resolve(), p)
    paths = list(unique.values())
    runs = [read_run(p, label) for p, label in zip(map(Path, paths), _labels([Path(p) for p in paths]))]
    out = report_folder(Path(out))
    assets = _assets_folder(out)
    try:
        return _write_report(runs, out, assets, smoothing, max_grids, inputs_per_task, outputs_per_input, update)
    except OSError as exc:  # a full disk or a folder made read-only meanwhile: the one line names the report
        raise ReportError(os_error_line(exc, f"cannot make the report in {out}", "choose another --out")) from None


def _write_report(
    runs: list[RunFolder],
    out: Path,
    assets: Path,
    smoothing: float,
    max_grids: int,
    inputs_per_task: int,
    outputs_per_input: int,
    update: Callable[[str, int, int], None],
) -> ReportResult:
    """The charts, pictures and ``index.html`` of :func:`build_report` for ``runs``, into ``out``."""
    from .html import render_page

    notes: list[str] = [problem for run in runs for problem in run.problems]
    charts = _loss_charts(runs, assets, smoothing, update)
    images: list[Path] = [path for _, path in charts]
    notes += [f"{run.path}: no metrics.jsonl, so no loss curves" for run in runs if not run.metrics]

    # per run: sample grids, eval translations, benchmark charts, figures
    run_assets: dict[str, dict] = {}
    for r, run in enumerate(runs):
        folder = assets / f"{r + 1}-{_slug(run.label)}"
        grids = [(_iteration(p), _copy(p, folder / "samples" / p.name)) for p in spread(run.samples, max_grids)]
        evals = _eval_translations(run, folder, inputs_per_task, outputs_per_input, notes, update)
        benches = _benchmark_charts(run, folder, notes)
        figures = [_copy(p, folder / "figures" / f"{p.parent.name}-{p.name}") for p in run.figures]
        run_assets[run.label] = {"grids": grids, "evals": evals, "benchmarks": benches, "figures": figures}
        images += [p for _, p in grids] + [p for e in evals for p in e.translations.values()]
        images += [c for *_, c in benches] + figures

    index = out / "index.html"
    atomic.write_text(index, render_page(runs, charts, run_assets, out, smoothing))
    return ReportResult(index, runs, images, notes)
