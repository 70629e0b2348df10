"""The report's charts, drawn with matplotlib into PNG files: loss curves and the benchmark bars.

Figures are built with ``matplotlib.figure.Figure`` directly (no pyplot): no global state, no display,
any backend. matplotlib is imported inside the functions, so importing this module is cheap.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from .. import atomic

#: run colours (matplotlib's default cycle, written out so every chart gives a run the same colour)
RUN_COLOURS = (
    "#1f77b4",
    "#ff7f0e",
    "#2ca02c",
    "#d62728",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#7f7f7f",
    "#bcbd22",
    "#17becf",
)
DPI = 96


def run_colour(index: int) -> str:
    return RUN_COLOURS[index % len(RUN_COLOURS)]


def smooth(values: Sequence[float], weight: float) -> list[float]:
    """Exponential moving average ``s_t = weight * s_(t-1) + (1 - weight) * x_t`` started at 0 and divided
    by ``1 - weight^t`` (so the first points are not pulled towards 0); weight 0 returns the values."""
    out, acc = [], 0.0
    for t, x in enumerate(values, start=1):
        acc = weight * acc + (1.0 - weight) * x
        out.append(acc / (1.0 - weight**t) if weight > 0 else x)
    return out


def _save(fig, path: Path) -> Path:
    return atomic.atomic_write(path, lambda tmp: fig.savefig(tmp, format="png", dpi=DPI))


def loss_group_chart(
    path: Path,
    title: str,
    keys: list[str],
    runs: list[tuple[str, dict[str, tuple[list[int], list[float]]]]],
    smoothing: float,
) -> Path:
    """One PNG for one loss group: a panel per key in ``keys``, every run overlaid in its colour, the raw
    values thin and faint and the smoothed values (``smooth(values, smoothing)``) solid.

    ``runs``: ``[(run label, {key: (iterations, values)})]``; a run without a key is left out of its panel.
    """
    from matplotlib.figure import Figure

    cols = 4 if len(keys) in (4, 7, 8) else min(3, len(keys))  # no row with a single panel where avoidable
    rows = math.ceil(len(keys) / cols)
    fig = Figure(figsize=(3.9 * cols, 2.7 * rows + 0.5), layout="constrained")
    fig.suptitle(title, fontsize=11)
    axes = fig.subplots(rows, cols, squeeze=False)
    for i, key in enumerate(keys):
        ax = axes[i // cols][i % cols]
        for r, (label, data) in enumerate(runs):
            if key not in data:
                continue
            xs, ys = data[key]
            colour = run_colour(r)
            if smoothing > 0 and len(ys) > 2:
                ax.plot(xs, ys, color=colour, linewidth=0.7, alpha=0.3)
                ax.plot(xs, smooth(ys, smoothing), color=colour, linewidth=1.5, label=label)
            else:
                ax.plot(xs, ys, color=colour, linewidth=1.3, marker="." if len(ys) < 30 else None, label=label)
        ax.set_title(key, fontsize=9)
        ax.tick_params(labelsize=7)
        ax.set_xlabel("iteration", fontsize=7)
        ax.grid(alpha=0.3)
    for j in range(len(keys), rows * cols):
        axes[j // cols][j % cols].set_visible(False)
    if len(runs) > 1:
        axes[0][0].legend(fontsize=7)
    return _save(fig, path)


def benchmark_chart(path: Path, rows: list[dict], device: str) -> Path:
    """Horizontal bars per benchmark row: the report's Tesla T4 seconds per iteration (grey) beside ours
    (blue), like the report's Figure 17. ``rows``: dicts with ``resolution``, ``label``, ``report_seconds``
    and ``median`` (as in ``benchmark.json``)."""
    from matplotlib.figure import Figure

    n = max(1, len(rows))
    fig = Figure(figsize=(9, 1.3 + 0.5 * n), layout="constrained")
    ax = fig.subplots()
    positions = list(range(n))
    names = [f"{r['resolution']} px  {r['label']}" for r in rows]
    height = 0.38
    timed = [r.get("report_seconds") for r in rows]  # None: a row the report did not time (e.g. BicycleGAN)
    report = ax.barh(
        [p - height / 2 for p in positions[: len(rows)]],
        [t or 0.0 for t in timed],
        height,
        color="#969696",
        label="report (Tesla T4)",
    )
    ours = ax.barh(
        [p + height / 2 for p in positions[: len(rows)]],
        [r["median"] for r in rows],
        height,
        color="#285ac8",
        label=f"gmdrit ({device}), median",
    )
    ax.bar_label(
        report, labels=[f"{t:.3f}" if t is not None else "not in the report" for t in timed], fontsize=7, padding=2
    )
    ax.bar_label(ours, fmt="%.3f", fontsize=7, padding=2)
    ax.set_yticks(positions[: len(rows)], names, fontsize=8)
    ax.invert_yaxis()  # first row on top, as in the table
    ax.set_xlabel("seconds per iteration")
    ax.margins(x=0.12)
    fig.legend(handles=[report, ours], fontsize=8, loc="outside lower center", ncols=2)
    ax.set_title("seconds per training iteration", fontsize=10)
    return _save(fig, path)
