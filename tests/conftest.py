"""Shared fixtures: a tiny on-disk dataset and overrides that make any preset tiny and fast."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

SHARED = Path(__file__).resolve().parents[2] / "shared"
APPLE2ORANGE = SHARED / "datasets" / "apple2orange"


def make_dataset(root: Path, per_domain: int = 4, size: int = 40, splits=("train", "test")) -> Path:
    """CycleGAN layout with random images; domain B is brighter than domain A."""
    rng = np.random.default_rng(0)
    for split in splits:
        for d, letter in enumerate("AB"):
            folder = root / f"{split}{letter}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(per_domain):
                arr = rng.integers(0, 128, (size, size, 3)) + 100 * d
                Image.fromarray(arr.astype(np.uint8)).save(folder / f"{i}.png")
    return root


def make_paired_dataset(
    root: Path, per_split: int = 4, size: int = 40, layout: str = "aligned", splits=("train", "val", "test")
) -> Path:
    """A paired dataset of random images: B is the photographic negative of A (B = 255 - A), so that any
    geometric transform applied identically to both keeps A + B = 255. ``aligned``: A|B side by side in
    ``<split>/i.png``; ``folders``: ``<split>A/i.png`` and ``<split>B/i.png``."""
    rng = np.random.default_rng(1)
    for split in splits:
        for i in range(per_split):
            a = rng.integers(0, 256, (size, size, 3)).astype(np.uint8)
            b = 255 - a
            if layout == "aligned":
                (root / split).mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.concatenate([a, b], axis=1)).save(root / split / f"{i}.png")
            else:
                for letter, arr in (("A", a), ("B", b)):
                    (root / f"{split}{letter}").mkdir(parents=True, exist_ok=True)
                    Image.fromarray(arr).save(root / f"{split}{letter}" / f"{i}.png")
    return root


@pytest.fixture
def tiny_data(tmp_path: Path) -> Path:
    return make_dataset(tmp_path / "data")


#: a 2-iteration BicycleGAN (bicyclegan_quickstart at 32 px, width 8) on make_paired_dataset's edges -> photos pairs
TINY_BICYCLEGAN = [
    "data.resize=32",
    "data.crop=32",
    "model.width=8",
    "bicyclegan.d_layers=2",
    "train.max_iters=2",
    "train.device=cpu",
    "train.threads=1",
    "train.sample_every=1000",
    "train.save_every=1000",
    "data.domains=[edges,photos]",
]


def tiny_overrides(root: Path, iters: int = 2) -> list[str]:
    """Overrides that shrink any preset to a model that trains in a fraction of a second per step."""
    return [
        f"data.root={root}",
        "data.resize=36",
        "data.crop=32",
        "model.width=8",
        "model.nz=8",
        f"train.max_iters={iters}",
        "train.device=cpu",
        "train.threads=1",
        "train.log_every=1",
        "train.sample_every=1000",
        "train.save_every=1000",
    ]


@pytest.fixture(scope="session")
def tiny_gmdrit_run(tmp_path_factory):
    """A 2-iteration GM-DRIT run (crop 32, width 8, nz 8) on 4 + 4 random images per split: (base, data root);
    the run folder is ``base / "run"``. Shared by the eval tests; they only read it."""
    from gmdrit_cli.config.schema import load_config
    from gmdrit_cli.training.trainer import train

    base = tmp_path_factory.mktemp("eval")
    root = make_dataset(base / "data")
    train(load_config("reduced_res", tiny_overrides(root, 2)), base / "run")
    return base, root


def assert_one_line_error(proc: subprocess.CompletedProcess, *fragments: str) -> None:
    """A user error through the CLI: exit 1, no traceback, one stderr line starting 'error: ' holding every fragment."""
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr + proc.stdout
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    for fragment in fragments:
        assert fragment in lines[0]


def run_gmdrit(*args, cwd=None, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    """`gmdrit ARGS` in a new process (one torch thread): for what needs a real process (signals, start-up, exit
    codes set by the interpreter, torchrun, environment variables read at import); else use the ``cli`` fixture."""
    full_env = {**os.environ, "OMP_NUM_THREADS": "1", **(env or {})}
    return subprocess.run(
        [sys.executable, "-m", "gmdrit_cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=full_env,
        timeout=timeout,
    )


def set_args(values: list[str]) -> list[str]:
    """``--set`` flags for a list of ``section.key=value`` overrides."""
    return [a for v in values for a in ("--set", v)]


@pytest.fixture
def cli(capsys, monkeypatch):
    """``cli(*args)``: `gmdrit ARGS` in this process (no torch import to pay), as a CompletedProcess (exit code,
    stdout, stderr); ``cwd=`` runs it from another folder."""
    from gmdrit_cli.cli.main import _run_app

    def run(*args, cwd=None) -> subprocess.CompletedProcess:
        handlers = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGHUP)}
        monkeypatch.setattr(sys, "argv", ["gmdrit", *map(str, args)])
        if cwd is not None:
            monkeypatch.chdir(cwd)
        capsys.readouterr()
        try:
            code = _run_app()
        finally:
            for s, h in handlers.items():
                signal.signal(s, h)
        out, err = capsys.readouterr()
        return subprocess.CompletedProcess(args, code, out, err)

    return run


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A 2-iteration MDMM run (crop 32, domains apple and orange) that a module's tests only read (or copy)."""
    from gmdrit_cli.config.schema import load_config
    from gmdrit_cli.training.trainer import train

    base = tmp_path_factory.mktemp("mdmm_run")
    root = make_dataset(base / "data")
    train(load_config("mdmm_baseline", tiny_overrides(root, 2) + ["data.domains=[apple,orange]"]), base / "run")
    return base / "run"
