"""`gmdrit benchmark`: seconds per full training iteration for the rows of the report's Table 3, and BicycleGAN.

Each Table 3 row is a preset at 108 or 216 px (the report [R1], Table 3); the BicycleGAN rows (named with ``--rows
bicyclegan``) are the BicycleGAN report's 128 px setting and the official edges2shoes 256 px one, which no report
timed. The families declare their rows (``ModelFamily.benchmark_rows``). A full iteration is exactly what `train` runs
(GM-DRIT / MDMM: discriminator updates and the two-step encoder/generator update; BicycleGAN: the joint E/G update,
then D and D2); batches are fixed in-memory tensors (pairs for BicycleGAN) so that image decoding does not count,
unless ``data_root`` asks for the real loader: then each row also reports the share of its iterations spent waiting
for data (the input pipeline of `train`, :mod:`gmdrit_cli.data.pipeline`, prefetching per ``speed.prefetch``), and
``loader_only`` times the loader alone (no training step), the time one iteration's batches take to arrive.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch

from .. import __version__, atomic
from ..config.schema import Config, load_config
from ..data.factory import training_dataset
from ..data.pipeline import BatchPipeline, Draw, auto_threads
from ..data.unpaired import Batch
from ..errors import ConfigError
from ..families import build_model, load_families
from ..families.base import BenchmarkRow, ModelFamily
from ..limits import MAX_BENCHMARK_ITERS, bounded
from ..outputs import numbered_folder, output_folder, refuse_checkpoint_area
from ..reporting.charts import benchmark_chart
from .engine import Engine
from .speed import resolve_device

#: a row of the table: a family's preset at one resolution (declared by the family, ``ModelFamily.benchmark_rows``)
TableRow = BenchmarkRow
#: every family's rows; the default table (the report's Table 3) by resolution, then in the families' order
ALL_ROWS: list[TableRow] = [row for family in load_families().values() for row in family.benchmark_rows]
REPORT_TABLE: list[TableRow] = sorted((r for r in ALL_ROWS if r.in_report_table), key=lambda r: r.resolution)
ROW_KEYS: list[str] = list(dict.fromkeys([r.key for r in REPORT_TABLE] + [r.key for r in ALL_ROWS]))
#: the resolutions ``--resolution both`` stands for
ALL_RESOLUTIONS = (108, 216, 128, 256)
#: the epoch length of apple2orange at batch 2 (only GM-DRIT's Gumbel temperature reads it here)
APPLE2ORANGE_ITERATIONS_PER_EPOCH = 509


@dataclass
class RowResult:
    key: str
    label: str
    preset: str
    resolution: int
    report_seconds: float | None
    seconds: list[float] = field(default_factory=list)
    peak_memory_bytes: int = 0
    #: with real data: seconds of each timed iteration spent waiting for its batches
    data_seconds: list[float] = field(default_factory=list)

    @property
    def mean(self) -> float:
        return statistics.fmean(self.seconds)

    @property
    def median(self) -> float:
        return statistics.median(self.seconds)

    @property
    def stdev(self) -> float:
        return statistics.stdev(self.seconds) if len(self.seconds) > 1 else 0.0

    @property
    def data_wait_share(self) -> float | None:
        """Time waiting for data / iteration time, over the timed iterations (None: in-memory batches)."""
        return sum(self.data_seconds) / sum(self.seconds) if self.data_seconds else None

    @property
    def ratio(self) -> float | None:
        return None if self.report_seconds is None else self.median / self.report_seconds

    def summary(self) -> dict:
        out = asdict(self)
        out.update(
            mean=self.mean,
            median=self.median,
            stdev=self.stdev,
            min=min(self.seconds),
            max=max(self.seconds),
            ratio_to_report=self.ratio,
            data_wait_share=self.data_wait_share,
        )
        return out


@dataclass
class BenchmarkResult:
    environment: dict
    settings: dict
    rows: list[RowResult]


def _row_overrides(row: TableRow) -> list[str]:
    """Settings of a row: the preset at the row's resolution (nz = crop for GM-DRIT, as the report; BicycleGAN
    resized straight to the crop, as the report and edges2shoes do)."""
    resize = row.resolution if row.resize_is_crop else {108: 128, 216: 256, 256: 256}[row.resolution]
    out = [f"data.crop={row.resolution}", f"data.resize={resize}"]
    if row.nz_is_crop:
        out.append(f"model.nz={row.resolution}")
    return out


def _rss_bytes() -> int:
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def select_rows(keys: list[str] | None, resolutions: list[int]) -> list[TableRow]:
    """The rows to time: ``keys`` (None: the report's Table 3) at ``resolutions``. Rows that were asked for but
    name nothing (``--rows ,``) or that have none of the resolutions are a :class:`ConfigError`: timing the
    whole table instead, or writing an empty one, would answer a question nobody asked."""
    if keys is not None and not keys:
        raise ConfigError(f"--rows names no row; give one or more of {', '.join(ROW_KEYS)} (or leave --rows out)")
    unknown = [k for k in keys or [] if k not in ROW_KEYS]
    if unknown:
        raise ConfigError(f"unknown benchmark row {', '.join(unknown)}; rows: {', '.join(ROW_KEYS)}")
    table = REPORT_TABLE + ([r for r in ALL_ROWS if not r.in_report_table] if keys else [])  # no keys: Table 3
    chosen = [r for r in table if r.resolution in resolutions and (not keys or r.key in keys)]
    if not chosen:
        sizes = sorted({r.resolution for r in table if not keys or r.key in keys})
        raise ConfigError(
            f"--rows {','.join(keys or [])} has no row at --resolution {'/'.join(map(str, resolutions))}; "
            f"its sizes: {', '.join(map(str, sizes))} (or --resolution both)"
        )
    return chosen


def environment(device: torch.device) -> dict:
    env = {
        "device": str(device),
        "torch": torch.__version__,
        "gmdrit": __version__,
        "threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpu_count": os.cpu_count(),
        "date": time.strftime("%Y-%m-%d"),
    }
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def _row_config(row: TableRow, device: torch.device, overrides: list[str] | None, data_root: str | None) -> Config:
    """The config of ``row``: its preset at its resolution on ``device``, then ``--set`` overrides and ``--data``."""
    extra = _row_overrides(row) + [f"train.device={device.type}"] + list(overrides or [])
    if data_root:
        extra.append(f"data.root={data_root}")
    return load_config(row.preset, extra)


def _batch_source(
    model: ModelFamily, device: torch.device, data_root: str | None, total: int
) -> tuple[Callable[[int], list[Batch]], BatchPipeline | None]:
    """Where each timed iteration's batches come from: (batches of iteration i, the loading pipeline or None).

    With ``data_root``: the family's training data through the background pipeline (``total`` iterations
    planned). Else one fixed in-memory batch of random images, ``batch_size`` x 3 x crop x crop in [-1, 1]
    (with its paired outputs for a paired family), the same every step."""
    cfg, per_step, paired = model.cfg, model.batches_per_step(), model.capabilities.paired_data
    if data_root:
        # every training image: the benchmark holds none out for validation (data.val_fraction is not applied)
        loader = training_dataset(cfg, paired=paired, val_fraction=0.0)
        draws = [Draw("sample", (cfg.train.batch_size,))] * per_step
        pipeline = BatchPipeline(
            loader,
            lambda i, draws=draws: draws,
            prefetch=cfg.speed.prefetch,
            threads=cfg.speed.loader_threads or auto_threads(),
            pin=device.type == "cuda",
        )
        return (lambda i: pipeline.batches(i, total)), pipeline
    g = torch.Generator().manual_seed(0)
    n, size = cfg.train.batch_size, cfg.data.crop
    images = torch.rand(n, 3, size, size, generator=g) * 2 - 1
    fixed = (
        Batch(images, torch.zeros(n, dtype=torch.long), torch.rand(n, 3, size, size, generator=g) * 2 - 1)
        if paired
        else Batch(images, torch.arange(n) % cfg.num_domains)
    )
    return (lambda i: [fixed] * per_step), None


def _time_row(
    row: TableRow,
    model: ModelFamily,
    device: torch.device,
    data_root: str | None,
    iters: int,
    warmup: int,
    loader_only: bool,
) -> tuple[RowResult, dict]:
    """Time ``iters`` iterations of ``row``'s ``model`` after ``warmup`` (only their batches' loading with
    ``loader_only``): its :class:`RowResult` and the losses of the last step (empty with ``loader_only``)."""
    engine = Engine(model, iterations_per_epoch=APPLE2ORANGE_ITERATIONS_PER_EPOCH)
    next_batches, pipeline = _batch_source(model, device, data_root, warmup + iters)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    result = RowResult(row.key, row.label, row.preset, row.resolution, row.report_seconds)
    peak = _rss_bytes()
    first = next(s.start for s in engine.spans if s.phase.name == row.phase) if row.phase else 0
    losses = {}
    for i in range(warmup + iters):
        tick = time.perf_counter()
        batches = next_batches(i)
        waited = time.perf_counter() - tick
        if not loader_only:
            losses = model.train_step(batches, first + i, engine)
        _sync(device)
        elapsed = time.perf_counter() - tick
        if i >= warmup:
            result.seconds.append(elapsed)
            if pipeline is not None:
                result.data_seconds.append(waited)
        peak = max(peak, _rss_bytes())
    if pipeline is not None:
        pipeline.close()
    result.peak_memory_bytes = torch.cuda.max_memory_allocated(device) if device.type == "cuda" else peak
    return result, losses


def run_benchmark(
    rows: list[TableRow],
    *,
    iters: int = 50,
    warmup: int = 5,
    device: str = "auto",
    overrides: list[str] | None = None,
    data_root: str | None = None,
    loader_only: bool = False,
    on_row=None,
) -> BenchmarkResult:
    """Time ``iters`` full training iterations (after ``warmup``) of every row; ``loader_only`` (with
    ``data_root``): only the loading of their batches."""
    if loader_only and not data_root:
        raise ConfigError("--loader-only times the data loader: give the dataset with --data ROOT")
    why = "each is a full training iteration of every row; the report's Table 3 times 50"
    bounded(iters, "--iters", 1, MAX_BENCHMARK_ITERS, why)
    bounded(warmup, "--warmup", 0, MAX_BENCHMARK_ITERS, why)
    dev = resolve_device(device)
    results = []
    for row in rows:
        cfg = _row_config(row, dev, overrides, data_root)
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg, dev)
        result, losses = _time_row(row, model, dev, data_root, iters, warmup, loader_only)
        bad = [k for k, v in losses.items() if not math.isfinite(float(v))]
        if bad:
            raise ConfigError(
                f"row {row.key} at {row.resolution} px produced non-finite losses ({', '.join(bad)}) "
                f"with these speed settings; try --amp off"
            )
        results.append(result)
        del model
        if on_row is not None:
            on_row(result)
    settings = {
        "iters": iters,
        "warmup": warmup,
        "overrides": list(overrides or []),
        "data": data_root or "in-memory",
        "loader_only": loader_only,
    }
    return BenchmarkResult(environment(dev), settings, results)


OUTPUT_NAMES = ("benchmark.json", "benchmark.csv", "benchmark.png")


def benchmark_folder(out: str | Path) -> Path:
    """The folder the outputs go to, checked before any timing (made when they are written): ``out``, or
    ``out-2``, ``out-3``, ... when it already holds an earlier benchmark's files (a second run never replaces
    the first's figures)."""
    folder = numbered_folder(Path(out).expanduser(), OUTPUT_NAMES)
    refuse_checkpoint_area(folder, "--out")
    return folder


def write_outputs(result: BenchmarkResult, out_dir: Path) -> list[Path]:
    """benchmark.json, benchmark.csv and benchmark.png (matplotlib bars: ours beside the report's, per row)
    into ``out_dir`` (from :func:`benchmark_folder`)."""
    out_dir = output_folder(out_dir, "--out")
    payload = {
        "environment": result.environment,
        "settings": result.settings,
        "rows": [r.summary() for r in result.rows],
    }
    json_path, csv_path, png_path = out_dir / "benchmark.json", out_dir / "benchmark.csv", out_dir / "benchmark.png"
    atomic.write_text(json_path, json.dumps(payload, indent=1))
    columns = [
        "resolution",
        "label",
        "preset",
        "report_seconds",
        "median",
        "mean",
        "stdev",
        "min",
        "max",
        "ratio_to_report",
        "peak_memory_bytes",
        "data_wait_share",
    ]

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for r in result.rows:
                writer.writerow(r.summary())

    atomic.atomic_write(csv_path, write_csv)
    benchmark_chart(png_path, [r.summary() for r in result.rows], result.environment["device"])
    return [json_path, csv_path, png_path]
