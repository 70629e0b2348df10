"""Files written by gmdrit before the layout change (issue 27) keep working with the code of today.

The flat-layout code of commit ``PRE_LAYOUT`` is taken from this repository's history (``git archive``) and run
in a subprocess: for every family it trains a tiny run, translates with it at a fixed seed, exports it, and
resumes a copy by one iteration; for GM-DRIT it also writes an int8 and an ONNX export. The code of today must
then translate those run folders and exports to the same pixels, evaluate them, and resume a copy to the same
weights as the old code did. Skipped where the history is not there (an exported source tree, a shallow clone).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tarfile
from io import BytesIO
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from conftest import (
    family_overrides,
    family_trains_on_pairs,
    input_image,
    make_dataset,
    make_paired_dataset,
    set_args,
)
from gmdrit_cli.families import MODEL_FAMILIES

#: the last commit of the flat layout (gmdrit_cli/config.py, models/, nets/, cli.py)
PRE_LAYOUT = "42ae977aee50285f2821d3db06124f80baafe575"
REPO = Path(__file__).resolve().parents[1]
FAMILIES = sorted(MODEL_FAMILIES)

OLD_DRIVER = """
import json, sys
from gmdrit_cli.cli import _run_app
jobs = json.loads(sys.argv[1])
for args in jobs:
    sys.argv = ["gmdrit", *args]
    code = _run_app()
    if code:
        raise SystemExit(f"old gmdrit {' '.join(args)}: exit {code}")
"""


def _history_has_pre_layout() -> bool:
    try:
        proc = subprocess.run(
            ["git", "-C", str(REPO), "cat-file", "-e", f"{PRE_LAYOUT}^{{commit}}"], capture_output=True, timeout=30
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return proc.returncode == 0


pytestmark = [
    pytest.mark.skipif(not _history_has_pre_layout(), reason="the pre-layout commit is not in this clone"),
    pytest.mark.slow,  # the old code trains, translates and exports every family in a process of its own
]


def _extract_old_code(dest: Path) -> Path:
    """The flat package of PRE_LAYOUT under ``dest`` (presets inside it, where the old package looked for them)."""
    for paths, into in ((["gmdrit_cli"], dest), (["presets"], dest / "gmdrit_cli")):
        tar = subprocess.run(
            ["git", "-C", str(REPO), "archive", "--format=tar", PRE_LAYOUT, *paths],
            capture_output=True,
            check=True,
            timeout=120,
        ).stdout
        with tarfile.open(fileobj=BytesIO(tar)) as archive:
            archive.extractall(into, filter="data")
    assert (dest / "gmdrit_cli" / "config.py").is_file() and (dest / "gmdrit_cli" / "presets").is_dir()
    return dest


def _translate_args(image: Path, model_flag: str, model: Path, out: Path) -> list[str]:
    return [
        "translate",
        str(image),
        model_flag,
        str(model),
        "--domain",
        "orange",
        "-n",
        "2",
        "--seed",
        "0",
        "--threads",
        "1",
        "--out",
        str(out),
    ]


@pytest.fixture(scope="module")
def old_files(tmp_path_factory):
    """family -> (folder of what the old code wrote, data root); the old code ran once for all families."""
    base = tmp_path_factory.mktemp("pre_layout")
    code = _extract_old_code(base / "code")
    jobs, out = [], {}
    for family in FAMILIES:
        folder = base / family
        paired = family_trains_on_pairs(family)
        root = make_paired_dataset(folder / "data", size=32) if paired else make_dataset(folder / "data")
        run = folder / "run"
        jobs.append(
            [
                "train",
                "--preset",
                "quickstart",
                "--run-dir",
                str(run),
                *set_args(family_overrides(family, root)),
            ]
        )
        jobs.append(_translate_args(input_image(root), "--run", run, folder / "translated"))
        jobs.append(["export", str(run), "--out", str(folder / "export")])
        out[family] = (folder, root)
    gm_folder = out["gmdrit"][0]
    jobs.append(["export", str(gm_folder / "run"), "--int8", "--out", str(gm_folder / "export_int8")])
    jobs.append(["export", str(gm_folder / "run"), "--format", "onnx", "--out", str(gm_folder / "export_onnx")])
    env = {**os.environ, "PYTHONPATH": str(code), "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(
        [sys.executable, "-c", OLD_DRIVER, json.dumps(jobs)],
        capture_output=True,
        text=True,
        env=env,
        cwd=code,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    # the old code resumes a copy of each run by one iteration: what the new code's resume must equal
    resume_jobs = []
    for folder, _ in out.values():
        shutil.copytree(folder / "run", folder / "resumed_old")
        resume_jobs.append(["resume", str(folder / "resumed_old"), "--set", "train.max_iters=3"])
    proc = subprocess.run(
        [sys.executable, "-c", OLD_DRIVER, json.dumps(resume_jobs)],
        capture_output=True,
        text=True,
        env=env,
        cwd=code,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


def _pngs(folder: Path) -> dict[str, bytes]:
    """name -> decoded RGB pixels of each PNG (since issue 25 the files also carry gmdrit's mark, a text chunk
    the old code did not write: the pixels are what must not change)."""
    out = {}
    for p in sorted(folder.glob("*.png")):
        with Image.open(p) as im:
            out[p.name] = im.convert("RGB").tobytes() + repr(im.size).encode()
    return out


@pytest.mark.parametrize("family", FAMILIES)
def test_old_run_folders_and_exports_translate_to_the_same_pixels(family, old_files, cli, tmp_path):
    folder, root = old_files[family]
    before = _pngs(folder / "translated")
    assert len(before) == 3  # 2 samples and the grid
    for flag, model in (("--run", folder / "run"), ("--checkpoint", folder / "export")):
        proc = cli(*_translate_args(input_image(root), flag, model, tmp_path / model.name))
        assert proc.returncode == 0, proc.stderr
        assert _pngs(tmp_path / model.name) == before, f"{family}: {model.name} translates differently"


@pytest.mark.parametrize("family", FAMILIES)
def test_old_run_folders_evaluate(family, old_files, cli, tmp_path):
    folder, _ = old_files[family]
    proc = cli(
        "eval",
        folder / "run",
        "--metrics",
        "ndb,jsd",
        "--ndb-bins",
        "2",
        "--samples-per-input",
        "2",
        "--no-reference",
        "--device",
        "cpu",
        "--out",
        tmp_path / "ev",
    )
    assert proc.returncode == 0, proc.stderr
    report = json.loads((tmp_path / "ev" / "eval.json").read_text())
    assert report["model"]["family"] == family and report["tasks"]


@pytest.mark.parametrize("family", FAMILIES)
def test_old_run_folders_resume_to_the_weights_the_old_code_reached(family, old_files, cli):
    folder, _ = old_files[family]
    copy = folder / "resumed_new"
    shutil.copytree(folder / "run", copy)
    proc = cli("resume", copy, "--set", "train.max_iters=3")
    assert proc.returncode == 0, proc.stderr
    new = load_file(copy / "checkpoints" / "iter_0000003" / "model.safetensors")
    old = load_file(folder / "resumed_old" / "checkpoints" / "iter_0000003" / "model.safetensors")
    assert new.keys() == old.keys()
    assert all(torch.equal(new[k], old[k]) for k in old), f"{family}: the resumed weights differ"


def test_old_int8_and_onnx_exports_translate(old_files, cli, tmp_path):
    folder, root = old_files["gmdrit"]
    for name in ("export_int8", "export_onnx"):
        proc = cli(*_translate_args(input_image(root), "--checkpoint", folder / name, tmp_path / name))
        assert proc.returncode == 0, proc.stderr
        assert len(_pngs(tmp_path / name)) == 3
