"""`gmdrit report`: the files of a report of tiny runs, and the page as headless Chromium sees it."""

from __future__ import annotations

import json
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pytest
from chromium_page import Chromium, find_chromium
from PIL import Image

from conftest import make_dataset, tiny_overrides
from gmdrit_cli.config.schema import load_config
from gmdrit_cli.evaluation.evaluate import EvalOptions, evaluate
from gmdrit_cli.reporting.charts import smooth
from gmdrit_cli.reporting.report import build_report
from gmdrit_cli.training.benchmark import BenchmarkResult, RowResult, write_outputs
from gmdrit_cli.training.trainer import train


@pytest.fixture(scope="module")
def tiny_runs(tmp_path_factory):
    """Two 4-iteration quickstart (MDMM) runs that differ in lr_eg, grids at 2 and 4; the first also has an
    eval (2 test inputs per domain, 3 outputs each) and a benchmark.json. Returns (base, run_a, run_b)."""
    base = tmp_path_factory.mktemp("report")
    root = make_dataset(base / "data", per_domain=2)
    extra = ["train.sample_every=2", "train.save_every=2", "train.tensorboard=false"]
    run_a, run_b = base / "runs" / "small", base / "runs" / "faster"
    train(load_config("quickstart", tiny_overrides(root, 4) + extra), run_a)
    train(load_config("quickstart", tiny_overrides(root, 4) + extra + ["optim.lr_eg=0.0003"]), run_b)
    evaluate(EvalOptions(run=run_a, metrics="ndb,jsd", samples_per_input=3, ndb_bins=2, device="cpu"))
    rows = [
        RowResult("gmdrit", "GM-DRIT [5.2]", "loss_integration", 108, 0.538, [1.5, 1.6]),
        RowResult("mdmm", "MDMM [5.5]", "mdmm_baseline", 108, 0.313, [1.0, 1.1]),
    ]
    write_outputs(BenchmarkResult({"device": "cpu", "torch": "x", "threads": 1}, {}, rows), run_a / "benchmark")
    return base, run_a, run_b


class _Images(HTMLParser):
    def __init__(self):
        super().__init__()
        self.sources: list[str] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        if tag == "img":
            self.sources.append(dict(attrs)["src"])

    def handle_data(self, data):
        self.text.append(data)


def parse(index: Path) -> _Images:
    parser = _Images()
    parser.feed(index.read_text(encoding="utf-8"))
    return parser


def test_smoothing_is_the_debiased_moving_average():
    # by hand, weight 0.5: s1 = 0.5 * 1 / (1 - 0.5) = 1; s2 = (0.25 + 1.5) / 0.75 = 7/3;
    # s3 = (0.5 * 1.75 + 0.5 * 0) / 0.875 = 1
    assert smooth([1.0, 3.0, 0.0], 0.5) == pytest.approx([1.0, 7 / 3, 1.0])
    assert smooth([4.0, 2.0], 0.0) == [4.0, 2.0]


@pytest.mark.slow  # two runs, an eval and a benchmark chart drawn
def test_report_of_two_tiny_runs(tiny_runs, tmp_path):
    base, run_a, run_b = tiny_runs
    out = tmp_path / "report"
    result = build_report([run_a, run_b], out, inputs_per_task=2, outputs_per_input=2)
    assert result.index == out / "index.html"
    page = parse(result.index)
    text = " ".join(page.text)

    # every picture is a relative path to a PNG inside the report folder, and the page shows all of them
    assert page.sources and all(not s.startswith(("/", "http", "file:")) for s in page.sources)
    shown = {(out / s).resolve() for s in page.sources}
    assert shown == {p.resolve() for p in result.images}
    for path in shown:
        with Image.open(path) as im:
            assert im.format == "PNG" and min(im.size) > 8

    # one loss chart per group the MDMM quickstart logs, every run overlaid
    charts = sorted(p.name for p in (out / "assets").glob("loss_*.png"))
    assert charts == sorted(
        f"loss_{g}.png"
        for g in ("discriminators", "generator", "reconstruction", "latent", "diversity", "totals", "schedule")
    )

    # the sample grids over time: byte copies of the runs' grids at 2 and 4
    for run in (run_a, run_b):
        for it in (2, 4):
            name = f"iter_{it:07d}.png"
            copies = [p for p in shown if p.name == name and run.name in p.parent.parent.name]
            assert len(copies) == 1 and copies[0].read_bytes() == (run / "samples" / name).read_bytes()

    # eval: the table's cells are eval.json's numbers, next to the real-vs-real lines
    report = json.loads(next(run_a.glob("eval/*/eval.json")).read_text())
    for task in report["tasks"]:
        assert f"{task['source']} → {task['target']}" in text
        assert f"{task['ndb']['ndb']} / {task['ndb']['bins']}" in text and f"{task['ndb']['jsd']:.4f}" in text
    for name, ref in report["reference"].items():
        assert f"real {name}: test vs train" in text and f"{ref['ndb']['jsd']:.4f}" in text

    # a few translations per task: row r = [test input r, its first 2 outputs], pasted at 2-pixel gutters
    composite = next(p for p in shown if p.name == "apple2orange.png")
    outputs = sorted((Path(report["settings"]["out"]) / "apple2orange").glob("*.png"))
    first_input = outputs[0].name.rsplit("_", 1)[0]
    size = 32
    with Image.open(composite) as im:
        grid = np.asarray(im.convert("RGB"))
    assert grid.shape == (2 * (size + 2) + 2, 3 * (size + 2) + 2 + 8, 3)  # 2 inputs; input, gap of 8, 2 outputs
    x = 2 + (size + 2) + 8  # the second column, after the input and the gap
    first_output = min(
        (p for p in outputs if p.name.rsplit("_", 1)[0] == first_input), key=lambda p: int(p.stem.rsplit("_", 1)[1])
    )
    expected = np.asarray(Image.open(first_output).convert("RGB"))
    assert np.array_equal(grid[2 : 2 + size, x : x + size], expected)

    # checkpoints, configs, their differences, the benchmark chart
    assert "iter_0000002" in text and "iter_0000004" in text
    assert "optim.lr_eg" in text and "config.yaml" in text
    assert any(p.name == "benchmark_1.png" for p in shown) and "GM-DRIT [5.2]" in text


@pytest.mark.slow  # two runs, an eval and a benchmark chart drawn
def test_report_command_and_its_errors(cli, tiny_runs, tmp_path):
    base, run_a, _ = tiny_runs
    proc = cli("report", run_a, "--out", tmp_path / "r")
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "r" / "index.html").exists() and "wrote" in proc.stdout
    for bad, message in ((tmp_path / "missing", "is not a folder"), (base / "data", "holds no run")):
        proc = cli("report", bad, "--out", tmp_path / "x")
        lines = [x for x in proc.stderr.splitlines() if x.strip()]
        assert proc.returncode == 1 and len(lines) == 1 and message in lines[0], proc.stderr


CHROMIUM = find_chromium()


@pytest.mark.browser
@pytest.mark.skipif(
    CHROMIUM is None,
    reason="no chromium on PATH (Debian: apt-get install chromium): the page is not opened in a browser",
)
def test_the_page_in_headless_chromium(tiny_runs, tmp_path):
    base, run_a, run_b = tiny_runs
    out = tmp_path / "report"
    result = build_report([run_a, run_b], out)
    broken = tmp_path / "broken.html"  # the checks themselves: a page that fails both must be caught
    broken.write_text(
        '<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>'
        '<img src="nothing-here.png"><script>console.error("deliberate")</script></body></html>'
    )
    with Chromium(CHROMIUM) as browser:
        seen = browser.open(result.index, screenshot=tmp_path / "page.png")
        control = browser.open(broken)
    assert seen["errors"] == []
    assert len(seen["images"]) == len(result.images)
    assert all(img["loaded"] and img["width"] > 0 for img in seen["images"]), seen["images"]
    with Image.open(tmp_path / "page.png") as shot:
        assert shot.size == (1280, 900)
        assert len(shot.convert("L").getcolors(1 << 16) or []) > 10  # not a blank page
    assert control["images"] == [{"src": "nothing-here.png", "loaded": False, "width": 0}]
    assert any("deliberate" in e for e in control["errors"]) and any("nothing-here" in e for e in control["errors"])
