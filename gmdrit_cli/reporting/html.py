"""The HTML of `gmdrit report`: one self-contained page (inline CSS, no script, no network), pictures
referenced by relative paths under ``assets/``. Everything from the run folders is escaped."""

from __future__ import annotations

import time
from html import escape
from pathlib import Path

from .charts import run_colour

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 0 auto; max-width: 1200px; padding: 0 18px 40px; color: #222; }
h1 { margin: 18px 0 4px; } h2 { border-bottom: 2px solid #ddd; padding-bottom: 3px; margin-top: 34px; }
h3 { margin: 22px 0 6px; } h4 { margin: 14px 0 4px; }
nav a { margin-right: 14px; } .muted { color: #666; } .swatch { display: inline-block; width: 12px; height: 12px;
  border-radius: 2px; margin-right: 6px; vertical-align: -1px; }
img { max-width: 100%; height: auto; image-rendering: auto; } figure { margin: 8px 0 14px; }
figcaption { font-size: 12px; color: #555; } .grids { display: flex; flex-wrap: wrap; gap: 10px 18px; }
table { border-collapse: collapse; margin: 6px 0 10px; font-size: 13px; }
th, td { border-bottom: 1px solid #e3e3e3; padding: 3px 10px; text-align: right; white-space: nowrap; }
th:first-child, td:first-child { text-align: left; } th { background: #f4f4f4; }
table.left td, table.left th { text-align: left; white-space: normal; }
tr.mean td { font-weight: 600; } tr.real td { color: #666; background: #fafafa; } tr.real.mean td { font-weight: 600; }
pre { background: #f6f6f6; padding: 10px; overflow-x: auto; font-size: 12px; } code { font-size: 12px; }
"""


def _src(path: Path, out: Path) -> str:
    return escape(path.relative_to(out).as_posix(), quote=True)


def _img(path: Path, out: Path, alt: str, caption: str | None = None) -> str:
    tag = f'<img src="{_src(path, out)}" alt="{escape(alt, quote=True)}" loading="eager">'
    return f"<figure>{tag}<figcaption>{escape(caption)}</figcaption></figure>" if caption else f"<figure>{tag}</figure>"


def _table(header: list[str], rows: list[tuple[str, list[str]]], left: bool = False) -> str:
    """``rows``: (css class, cells); ``left``: every column left-aligned (text, not numbers)."""
    head = "".join(f"<th>{escape(h)}</th>" for h in header)
    body = "".join(
        f'<tr class="{cls}">' + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>" for cls, cells in rows
    )
    opening = '<table class="left">' if left else "<table>"
    return f"{opening}<thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _flat(d: dict, prefix: str = "") -> dict:
    out = {}
    for k, v in (d or {}).items():
        if isinstance(v, dict):
            out.update(_flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


# -- sections -------------------------------------------------------------------------------------


def _eval_section(result, out: Path) -> str:
    """An eval.json as the table `gmdrit eval` prints (tasks, mean, real-vs-real lines) and its translations."""
    from ..evaluation.metrics import METRICS, real_line_label

    r = result.report
    settings, model = r.get("settings", {}), r.get("model", {})
    names = [m for m in settings.get("metrics", []) if m in METRICS]
    columns = sorted(
        (c for c in (METRICS[m].evaluator_class.table_columns.get(m) for m in names) if c is not None),
        key=lambda c: c.order,
    )
    temperature = settings.get("temperature", 1.0)
    parts = [
        f"<h4>{escape(result.path.parent.name)}</h4>",
        f'<p class="muted">{escape(str(model.get("family", "?")))} {escape(str(model.get("config", "")))}, '
        f"iteration {escape(str(model.get('iteration', '?')))}, {escape(str(settings.get('mode', '?')))} mode"
        f"{escape(f', temperature {temperature:g}' if temperature != 1.0 else '')}, "
        f"{escape(str(settings.get('samples_per_input', '?')))} outputs per input; "
        f"<code>{escape(str(result.path))}</code></p>",
    ]
    rows = [
        ("", [f"{t['source']} → {t['target']}", str(t.get("outputs", ""))] + [c.cell(t, False) for c in columns])
        for t in r.get("tasks", [])
    ]
    if r.get("mean"):
        rows.append(("mean", ["mean", ""] + [c.mean(r["mean"], False) for c in columns]))
    for name, ref in (r.get("reference") or {}).items():
        rows.append(
            (
                "real",
                [real_line_label(name, settings), str(ref.get("n_test", ""))] + [c.cell(ref, True) for c in columns],
            )
        )
    if r.get("reference_mean"):
        rows.append(("real mean", ["real: mean", ""] + [c.mean(r["reference_mean"], True) for c in columns]))
    if columns:
        parts.append(_table(["task", "outputs"] + [c.header for c in columns], rows))
        parts.append(
            '<p class="muted">Grey lines: real test images of the target against its training images, '
            "the value a perfect translation would reach.</p>"
        )
    cluster = r.get("cluster")
    if cluster and "accuracy" in cluster:
        parts.append(
            f"<p>cluster: accuracy {cluster['accuracy']:.3f} (Hungarian), NMI {cluster['nmi']:.3f}, "
            f"domain accuracy {cluster['domain_accuracy']:.3f}</p>"
        )
    parts += [f'<p class="muted">note: {escape(str(n))}</p>' for n in r.get("notes", [])]
    if result.translations:
        parts.append('<div class="grids">')
        parts += [
            _img(
                path,
                out,
                f"translations {task}",
                f"{task}: a row per test input (the input first, where the dataset is found), then its outputs",
            )
            for task, path in result.translations.items()
        ]
        parts.append("</div>")
    return "\n".join(parts)


def _benchmark_section(bench_file: Path, payload: dict, chart: Path, out: Path) -> str:
    env = payload.get("environment", {})
    rows = [
        (
            "",
            [
                str(r["resolution"]),
                r["label"],
                "-" if not r.get("report_seconds") else f"{r['report_seconds']:.3f}",
                f"{r['median']:.3f}",
                "-" if not r.get("report_seconds") else f"{r['median'] / r['report_seconds']:.2f}x",
                f"{r.get('peak_memory_bytes', 0) / 2**30:.2f} GiB",
            ],
        )
        for r in payload.get("rows", [])
    ]
    return (
        f'<h3>Benchmark</h3><p class="muted">{escape(str(env.get("device", "?")))}, torch '
        f"{escape(str(env.get('torch', '?')))}, {escape(str(env.get('threads', '?')))} threads, "
        f"{escape(str(env.get('date', '')))}; <code>{escape(str(bench_file))}</code></p>"
        + _img(chart, out, "benchmark chart")
        + _table(["px", "model", "report T4 s/it", "ours median s/it", "ours/report", "peak memory"], rows)
    )


def _run_section(index: int, run, assets: dict, out: Path) -> str:
    cfg = run.config
    iters = [m["iter"] for m in run.metrics]
    facts = [
        ("folder", str(run.path)),
        ("family", str(cfg.get("model", {}).get("family", "-"))),
        ("preset", str(cfg.get("name", "-"))),
        ("description", str(cfg.get("description", "") or "-")),
        ("logged iterations", f"{min(iters)} to {max(iters)} ({len(iters)} lines)" if iters else "none"),
    ]
    if run.has_tensorboard:
        facts.append(("TensorBoard", f"tensorboard --logdir {run.path / 'tensorboard'}"))
    parts = [
        f'<h2 id="run-{index}"><span class="swatch" style="background:{run_colour(index)}"></span>'
        f"{escape(run.label)}</h2>",
        _table(["", ""], [("", [k, v]) for k, v in facts], left=True),
    ]
    if assets["grids"]:
        parts.append(
            '<h3>Sample grids over time</h3><p class="muted">A row per domain: the input, its translation '
            "with its own (encoded) attribute, with random attributes, its self-reconstruction and its "
            'cross-cycle reconstruction.</p><div class="grids">'
        )
        parts += [_img(p, out, f"samples at iteration {it}", f"iteration {it}") for it, p in assets["grids"]]
        parts.append("</div>")
    if assets["evals"]:
        parts.append("<h3>Evaluation</h3>")
        parts += [_eval_section(e, out) for e in assets["evals"]]
    if assets["figures"]:
        parts.append("<h3>Other figures under eval/</h3>")
        parts += [_img(p, out, p.name, p.name) for p in assets["figures"]]
    for bench_file, payload, chart in assets["benchmarks"]:
        parts.append(_benchmark_section(bench_file, payload, chart, out))
    if run.checkpoints:
        parts.append("<h3>Checkpoints</h3>")
        parts.append(
            _table(
                ["checkpoint", "iteration", "size", "saved", "latest"],
                [
                    (
                        "",
                        [
                            c.name,
                            str(c.iteration),
                            f"{c.size_bytes / 2**20:.1f} MB",
                            c.saved,
                            "yes" if c.latest else "",
                        ],
                    )
                    for c in run.checkpoints
                ],
            )
        )
    if run.config_text:
        parts.append(
            f"<h3>Config</h3><details><summary>config.yaml</summary><pre>{escape(run.config_text)}</pre></details>"
        )
    return "\n".join(parts)


def _config_differences(runs) -> str:
    flats = [_flat(r.config) for r in runs if r.config_text]
    if len(flats) < 2:
        return ""
    keys = sorted(k for k in set().union(*flats) if len({repr(f.get(k)) for f in flats}) > 1)
    if not keys:
        return "<h2>Config differences</h2><p>The runs' configs are identical.</p>"
    labels = [r.label for r in runs if r.config_text]
    rows = [("", [k] + [str(f.get(k, "-")) for f in flats]) for k in keys]
    return '<h2 id="configs">Config differences</h2>' + _table(["key"] + labels, rows, left=True)


def render_page(runs, charts: list[tuple[str, Path]], run_assets: dict, out: Path, smoothing: float) -> str:
    """The whole page; ``charts``: (loss group, PNG); ``run_assets``: per run label, its copied pictures."""
    out = Path(out)
    legend = "".join(
        f'<li><span class="swatch" style="background:{run_colour(i)}"></span>'
        f'<a href="#run-{i}">{escape(r.label)}</a> <span class="muted">{escape(str(r.path))}</span></li>'
        for i, r in enumerate(runs)
    )
    nav = ['<a href="#losses">loss curves</a>'] + [
        f'<a href="#run-{i}">{escape(r.label)}</a>' for i, r in enumerate(runs)
    ]
    if sum(1 for r in runs if r.config_text) > 1:
        nav.insert(1, '<a href="#configs">config differences</a>')
    losses = ['<h2 id="losses">Loss curves</h2>']
    if charts:
        losses.append(
            f'<p class="muted">One chart per group of loss terms, every run in its colour. Faint lines: '
            f"every logged value; solid lines: the exponential moving average with weight {smoothing:g} "
            f"(TensorBoard's smoothing). x: training iteration.</p>"
        )
        losses += [_img(path, out, f"loss curves: {group}") for group, path in charts]
    else:
        losses.append("<p>No run has a metrics.jsonl.</p>")
    body = "\n".join(
        [
            f'<h1>gmdrit report</h1><p class="muted">{time.strftime("%Y-%m-%d %H:%M")}, '
            f"{len(runs)} run{'s' if len(runs) != 1 else ''}</p><ul>{legend}</ul>",
            f"<nav>{' '.join(nav)}</nav>",
            *losses,
            _config_differences(runs),
            *(_run_section(i, r, run_assets[r.label], out) for i, r in enumerate(runs)),
        ]
    )
    title = "gmdrit report: " + ", ".join(r.label for r in runs)
    return (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
        f'<meta name="generator" content="gmdrit report">'
        f'<meta name="viewport" content="width=device-width, initial-scale=1"><link rel="icon" '
        f'href="data:,"><style>{_CSS}</style></head>'
        f"<body>\n{body}\n</body></html>\n"
    )
