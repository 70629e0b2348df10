"""`gmdrit benchmark`: seconds per full training iteration for the rows of the report's Table 3.

Each row is a preset at 108 or 216 px (reference 5.3). A full iteration is exactly what `train` runs
(discriminator updates and the two-step encoder/generator update); batches are fixed in-memory tensors
so that image decoding does not count, unless ``data_root`` asks for the real loader.
"""

from __future__ import annotations

import csv
import json
import math
import os
import platform
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from . import __version__, atomic
from .config import load_config
from .data import Batch, UnpairedImageFolders
from .engine import Engine
from .errors import ConfigError
from .models import build_model
from .speed import resolve_device


@dataclass(frozen=True)
class TableRow:
    """One row of the report's Table 3 (R1 L908-922): mean seconds per iteration on a Tesla T4."""

    key: str
    label: str
    preset: str
    resolution: int
    report_seconds: float | None  # None: the source reports no time per iteration
    phase: str = ""  # a phased family: the training phase timed (its first iterations)


_ROWS = [("gmdrit", "GM-DRIT [5.2]", "loss_integration", 0.538, 2.261),
         ("double_gen_enc", "GM-DRIT double enc gen [5.3.3]", "double_gen_enc", 0.544, 2.307),
         ("half_discr", "GM-DRIT half discr [5.3.3]", "half_discr", 0.551, 2.326),
         ("adain", "GM-DRIT AdaIN [5.3.1]", "adain", 0.647, 2.339),
         ("double_conv", "GM-DRIT double conv [5.3.2]", "double_conv", 0.771, 3.716),
         ("mdmm", "MDMM [5.5]", "mdmm_baseline", 0.313, 0.615)]
REPORT_TABLE = [TableRow(key, label, preset, res, t108 if res == 108 else t216)
                for res in (108, 216) for key, label, preset, t108, t216 in _ROWS]
#: the single-encoder VAE at the report's 256 px and batch 64, one row per phase (the VAE report gives only
#: the wall time of a whole run, about 80 min on one Colab GPU, so there is no figure to compare with)
REPORT_TABLE += [TableRow("vae_phase1", "VAE phase 1: E + shared D, batch 64", "vae_apple2orange", 256, None, "shared"),
                 TableRow("vae_phase2", "VAE phase 2: one D, E frozen, batch 64", "vae_apple2orange", 256, None,
                          "decoder_x")]
ROW_KEYS = [key for key, *_ in _ROWS] + ["vae_phase1", "vae_phase2"]
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
    def ratio(self) -> float | None:
        return self.median / self.report_seconds if self.report_seconds else None

    def summary(self) -> dict:
        out = asdict(self)
        out.update(mean=self.mean, median=self.median, stdev=self.stdev, min=min(self.seconds),
                   max=max(self.seconds), ratio_to_report=self.ratio)
        return out


@dataclass
class BenchmarkResult:
    environment: dict
    settings: dict
    rows: list[RowResult]


def _row_overrides(row: TableRow) -> list[str]:
    """Settings of a Table 3 row: the preset at the row's resolution (nz = crop for GM-DRIT, as the report)."""
    resize = {108: 128, 216: 256, 256: 256}[row.resolution]
    out = [f"data.crop={row.resolution}", f"data.resize={resize}"]
    if row.key != "mdmm" and not row.phase:
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
    unknown = [k for k in keys or [] if k not in ROW_KEYS]
    if unknown:
        raise ConfigError(f"unknown benchmark row {', '.join(unknown)}; rows: {', '.join(ROW_KEYS)}")
    return [r for r in REPORT_TABLE if r.resolution in resolutions and (not keys or r.key in keys)]


def environment(device: torch.device) -> dict:
    env = {"device": str(device), "torch": torch.__version__, "gmdrit": __version__, "threads": torch.get_num_threads(),
           "python": platform.python_version(), "machine": platform.machine(), "cpu_count": os.cpu_count(),
           "date": time.strftime("%Y-%m-%d")}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
    return env


def run_benchmark(rows: list[TableRow], *, iters: int = 50, warmup: int = 5, device: str = "auto",
                  overrides: list[str] | None = None, data_root: str | None = None,
                  on_row=None) -> BenchmarkResult:
    """Time ``iters`` full training iterations (after ``warmup``) of every row."""
    dev = resolve_device(device)
    results = []
    for row in rows:
        extra = _row_overrides(row) + [f"train.device={dev.type}"] + list(overrides or [])
        if data_root:
            extra.append(f"data.root={data_root}")
        cfg = load_config(row.preset, extra)
        torch.manual_seed(cfg.train.seed)
        model = build_model(cfg, dev)
        engine = Engine(model, iterations_per_epoch=APPLE2ORANGE_ITERATIONS_PER_EPOCH)
        per_step = model.batches_per_step()
        if data_root:
            d = cfg.data
            loader = UnpairedImageFolders(d.root, d.domains, "train", resize=d.resize, crop=d.crop, flip=d.flip)
            next_batches = lambda: [loader.sample(cfg.train.batch_size) for _ in range(per_step)]  # noqa: E731
        else:
            g = torch.Generator().manual_seed(0)
            n, size = cfg.train.batch_size, cfg.data.crop
            fixed = Batch(torch.rand(n, 3, size, size, generator=g) * 2 - 1, torch.arange(n) % cfg.num_domains)
            next_batches = lambda: [fixed] * per_step  # noqa: E731
        if dev.type == "cuda":
            torch.cuda.reset_peak_memory_stats(dev)
        result = RowResult(row.key, row.label, row.preset, row.resolution, row.report_seconds)
        peak = _rss_bytes()
        first = next(s.start for s in engine.spans if s.phase.name == row.phase) if row.phase else 0
        for i in range(warmup + iters):
            tick = time.perf_counter()
            losses = model.train_step(next_batches(), first + i, engine)
            _sync(dev)
            elapsed = time.perf_counter() - tick
            if i >= warmup:
                result.seconds.append(elapsed)
            peak = max(peak, _rss_bytes())
        bad = [k for k, v in losses.items() if not math.isfinite(float(v))]
        if bad:
            raise ConfigError(f"row {row.key} at {row.resolution} px produced non-finite losses ({', '.join(bad)}) "
                              f"with these speed settings; try --amp off")
        result.peak_memory_bytes = torch.cuda.max_memory_allocated(dev) if dev.type == "cuda" else peak
        results.append(result)
        del model, engine
        if on_row is not None:
            on_row(result)
    settings = {"iters": iters, "warmup": warmup, "overrides": list(overrides or []), "data": data_root or "in-memory"}
    return BenchmarkResult(environment(dev), settings, results)


def write_outputs(result: BenchmarkResult, out_dir: Path) -> list[Path]:
    """benchmark.json, benchmark.csv and benchmark.png (ours beside the report's, per row)."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    payload = {"environment": result.environment, "settings": result.settings,
               "rows": [r.summary() for r in result.rows]}
    json_path, csv_path, png_path = out_dir / "benchmark.json", out_dir / "benchmark.csv", out_dir / "benchmark.png"
    atomic.write_text(json_path, json.dumps(payload, indent=1))
    columns = ["resolution", "label", "preset", "report_seconds", "median", "mean", "stdev", "min", "max",
               "ratio_to_report", "peak_memory_bytes"]

    def write_csv(tmp: Path) -> None:
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            writer = csv.DictWriter(f, fieldnames=columns, extrasaction="ignore")
            writer.writeheader()
            for r in result.rows:
                writer.writerow(r.summary())

    atomic.atomic_write(csv_path, write_csv)
    _bar_chart(result, png_path)
    return [json_path, csv_path, png_path]


def _bar_chart(result: BenchmarkResult, path: Path) -> None:
    """Horizontal bars per row, the report's T4 figure (grey) beside ours (blue), like the report's Figure 17."""
    rows = result.rows
    label_w, bar_w, row_h, top = 330, 520, 34, 40
    width, height = label_w + bar_w + 90, top + row_h * max(1, len(rows)) + 30
    im = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(im)
    draw.text((10, 10), f"seconds per iteration: report (T4, grey) vs gmdrit ({result.environment['device']}, blue)",
              fill="black")
    longest = max([max(r.report_seconds or 0.0, r.median) for r in rows] + [1e-9])
    for i, r in enumerate(rows):
        y = top + i * row_h
        draw.text((10, y + 8), f"{r.resolution} px  {r.label}", fill="black")
        for j, (value, colour) in enumerate(((r.report_seconds, (150, 150, 150)), (r.median, (40, 90, 200)))):
            if value is None:
                continue
            length = int(bar_w * value / longest)
            y0 = y + 3 + j * 14
            draw.rectangle([label_w, y0, label_w + max(1, length), y0 + 11], fill=colour)
            draw.text((label_w + length + 5, y0), f"{value:.3f}", fill="black")
    atomic.atomic_write(path, lambda tmp: im.save(tmp, format="PNG"))
