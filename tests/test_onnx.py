"""`gmdrit export --format onnx` and the torch-free `gmdrit translate --checkpoint model.onnx`.

Every registered family is trained for one step at 32 px (width 8, nz 8; GM-DRIT with 2 components per domain),
exported to ONNX, and its graphs are run with onnxruntime against the torch model on the same inputs at several
working sizes (the VAE: its one size). The tolerance is the export's stated one (1e-4 on images in [-1, 1]).
Then the CLI: reference-guided outputs (no random draw) of the two paths agree within one grey level, the
ONNX path runs with torch made unimportable, seeds reproduce, and user errors are one line.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import (
    assert_one_line_error,
    family_overrides,
    family_trains_on_pairs,
    make_dataset,
    make_paired_dataset,
    modules_after_cli,
)

ort = pytest.importorskip("onnxruntime", reason="the onnx extra: pip install 'gmdrit[onnx]'")

from gmdrit_cli.config.schema import load_config  # noqa: E402
from gmdrit_cli.families import MODEL_FAMILIES  # noqa: E402
from gmdrit_cli.inference.model_files import load_for_inference  # noqa: E402
from gmdrit_cli.inference.onnx_export import TOLERANCE, export_onnx  # noqa: E402
from gmdrit_cli.training.trainer import train  # noqa: E402

#: every family trained, exported and checked by onnxruntime at several sizes
pytestmark = pytest.mark.slow

FAMILIES = sorted(MODEL_FAMILIES)
#: families whose exports take only the training crop (their encoders end in dense layers sized for it)
FIXED_SIZE = {"vae", "bicyclegan"}


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """{family: (run folder, ONNX export folder, data root)} for every family, one training step each."""
    base = tmp_path_factory.mktemp("onnx")
    unpaired = make_dataset(base / "data")
    paired = make_paired_dataset(base / "paired")
    made = {}
    for family in FAMILIES:
        root = paired if family_trains_on_pairs(family) else unpaired
        extra = ["mixture.components_per_domain=2"] if family == "gmdrit" else []
        cfg = load_config("quickstart", family_overrides(family, root, 1) + extra)
        run = base / f"run_{family}"
        train(cfg, run)
        out = base / f"onnx_{family}"
        export_onnx(run, out)
        made[family] = (run, out, root)
    return made


def _session(path: Path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


@pytest.mark.parametrize("family", FAMILIES)
def test_onnxruntime_equals_torch_within_the_tolerance(exported, family):
    run, out, _ = exported[family]
    meta = json.loads((out / "onnx.json").read_text())
    assert meta["family"] == family
    assert meta["dynamic_size"] == (family not in FIXED_SIZE)
    cfg, model = load_for_inference(run, "cpu")
    caps = model.capabilities
    translate, prior, reference = (_session(out / n) for n in ("model.onnx", "prior.onnx", "reference.onnx"))
    sizes = [32, 64] if meta["dynamic_size"] else [32]
    assert set(sizes) <= set(meta["checked"]["sizes"])
    g = torch.Generator().manual_seed(1)
    targets = sorted({t for _, t in caps.tasks(cfg.num_domains)})
    checked = 0
    for size in sizes:
        for target in targets:
            for component in range(caps.components_per_domain) if caps.has_mixture else [None]:
                z, condition = model.sample_attributes(target, 3, component, g, 0.8)
                image = torch.rand(1, 3, size, size, generator=g) * 2 - 1
                want = model.translate(image, target, (z, condition)).numpy()
                feed = {"image": image.numpy(), "z": z.numpy(), "condition": condition.numpy()}
                (got,) = translate.run(None, {i.name: feed[i.name] for i in translate.get_inputs()})
                assert got.shape == want.shape == (3, 3, size, size)
                assert np.abs(got - want).max() <= TOLERANCE
                # the prior graph and the runtime's draw reproduce sample_attributes' z from its own noise
                mean, std = model.attribute_prior(condition)
                got_mean, got_std = prior.run(None, {"condition": condition.numpy()})
                assert np.abs(got_mean - mean.numpy()).max() <= TOLERANCE
                assert np.abs(got_std - std.numpy()).max() <= TOLERANCE
                # the exported condition table holds exactly the rows sample_attributes conditions on
                rows = np.asarray(meta["conditions"][str(target)], dtype=np.float32)
                assert any(np.array_equal(condition[0].numpy(), r) for r in rows)
                refs = torch.rand(2, 3, size, size, generator=g) * 2 - 1
                domains = torch.full((2,), target, dtype=torch.long)
                ref_z, ref_c = model.encode_reference(refs, domains)
                feed = {"images": refs.numpy(), "domains": domains.numpy()}
                got_z, got_c = reference.run(None, {i.name: feed[i.name] for i in reference.get_inputs()})
                assert np.abs(got_z - ref_z.numpy()).max() <= TOLERANCE
                assert np.array_equal(got_c, ref_c.numpy())
                checked += 1
    assert checked >= len(sizes)


def test_mixture_components_have_their_own_condition_rows(exported):
    _, out, _ = exported["gmdrit"]
    meta = json.loads((out / "onnx.json").read_text())
    rows = meta["conditions"]["1"]
    assert len(rows) == 2 and meta["components_per_domain"] == 2
    # one-hot over K = 4 components: orange's components are 2 and 3
    assert [int(np.argmax(r)) for r in rows] == [2, 3]


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


@pytest.mark.parametrize("family", ["gmdrit", "mdmm"])
def test_cli_reference_outputs_of_both_paths_agree(cli, exported, family, tmp_path):
    run, out, root = exported[family]
    image, ref = str(root / "testA" / "0.png"), str(root / "testB" / "1.png")
    a = cli(
        "translate",
        image,
        "--domain",
        "orange",
        "--reference",
        ref,
        "--checkpoint",
        str(run),
        "--out",
        str(tmp_path / "torch"),
    )
    b = cli(
        "translate",
        image,
        "--domain",
        "orange",
        "--reference",
        ref,
        "--checkpoint",
        str(out / "model.onnx"),
        "--out",
        str(tmp_path / "onnx"),
    )
    assert a.returncode == 0, a.stderr
    assert b.returncode == 0, b.stderr
    assert "ONNX export" in b.stdout
    names = sorted(p.name for p in (tmp_path / "torch").iterdir())
    assert (
        names
        == sorted(p.name for p in (tmp_path / "onnx").iterdir())
        == ["0_to_orange_grid.png", "0_to_orange_ref1.png"]
    )
    for name in names:
        assert np.abs(_pixels(tmp_path / "torch" / name) - _pixels(tmp_path / "onnx" / name)).max() <= 1


def test_onnx_translate_runs_without_torch(exported, tmp_path):
    """torch made unimportable (a None entry in sys.modules): the ONNX path still writes every output."""
    _, out, root = exported["gmdrit"]
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "from gmdrit_cli.cli.main import _run_app\n"
        f"sys.argv = ['gmdrit', 'translate', {str(root / 'testA')!r}, '--domain', 'orange', '--samples', '3', "
        f"'--seed', '5', '--checkpoint', {str(out / 'model.onnx')!r}, '--out', {str(tmp_path / 'o')!r}]\n"
        "code = _run_app()\n"
        "assert 'torch' not in [m for m in sys.modules if sys.modules[m] is not None and m.split('.')[0] == 'torch']\n"
        "sys.exit(code)\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    assert proc.returncode == 0, proc.stderr
    written = sorted(p.name for p in (tmp_path / "o").iterdir())
    assert len(written) == 4 * 4  # 4 test apples, 3 samples + a grid each
    assert "0_to_orange_3.png" in written and "3_to_orange_grid.png" in written
    with Image.open(tmp_path / "o" / "0_to_orange_grid.png") as grid:
        assert grid.size == (4 * (32 + 2) + 2, 32 + 4)  # input + 3 samples with 2-px gutters


def test_onnx_translate_imports_only_what_it_uses(exported, tmp_path):
    """The ONNX path's start-up budget (0.6 s, docs/app-colab-onnx.md) is mostly imports; one image translated
    with stdout in a pipe loads no torch, no pydantic (typer 0.29 and later validate options with it: pinned
    below), no rich.progress (no bar off a terminal) and none of Pillow's rarely used plugins (listing image
    suffixes imports them all; a single file needs none of that)."""
    _, out, root = exported["gmdrit"]
    proc, loaded = modules_after_cli(
        "translate",
        str(root / "testA" / "0.png"),
        "--domain",
        "orange",
        "--samples",
        "2",
        "--checkpoint",
        str(out / "model.onnx"),
        "--out",
        str(tmp_path / "o"),
    )
    assert proc.returncode == 0, proc.stderr
    assert "onnxruntime" in loaded and "PIL.PngImagePlugin" in loaded  # it did the work
    roots = {name.split(".")[0] for name in loaded}
    assert not roots & {"torch", "torchvision", "pydantic", "scipy", "matplotlib"}
    assert "rich.progress" not in loaded
    assert not loaded & {"PIL.TiffImagePlugin", "PIL.WebPImagePlugin", "PIL.PdfImagePlugin", "PIL.IcoImagePlugin"}
    assert len(list((tmp_path / "o").iterdir())) == 3  # 2 samples and the grid


def test_onnx_seed_reproduces_and_differs_between_seeds(cli, exported, tmp_path):
    _, out, root = exported["mdmm"]
    image = str(root / "testA" / "0.png")
    for name, seed in (("a", "3"), ("b", "3"), ("c", "4")):
        proc = cli(
            "translate",
            image,
            "--domain",
            "orange",
            "--samples",
            "2",
            "--seed",
            seed,
            "--checkpoint",
            str(out),
            "--out",
            str(tmp_path / name),
        )
        assert proc.returncode == 0, proc.stderr
    read = lambda name: (tmp_path / name / "0_to_orange_1.png").read_bytes()  # noqa: E731
    assert read("a") == read("b")
    assert read("a") != read("c")


def test_onnx_user_errors_are_one_line(cli, exported, tmp_path):
    run, out, root = exported["mdmm"]
    image = str(root / "testA" / "0.png")
    onnx = str(out / "model.onnx")
    assert_one_line_error(
        cli("translate", image, "--domain", "orange", "--checkpoint", onnx, "--device", "cuda"), "CPU"
    )
    assert_one_line_error(
        cli("translate", image, "--domain", "orange", "--checkpoint", onnx, "--component", "0"),
        "no mixture components",
    )
    assert_one_line_error(cli("translate", image, "--domain", "pear", "--checkpoint", onnx), "unknown domain")
    assert_one_line_error(
        cli("export", str(run), "--format", "onnx", "--refit-prior", "--out", str(tmp_path / "x")), "--refit-prior"
    )
    assert_one_line_error(
        cli("translate", image, "--domain", "orange", "--checkpoint", onnx, "--engine", "torch"), "--engine torch"
    )
    # an earlier export is not replaced without --force
    before = (out / "model.onnx").read_bytes()
    assert_one_line_error(cli("export", str(run), "--format", "onnx", "--out", str(out)), "--force")
    assert (out / "model.onnx").read_bytes() == before
    # a damaged graph is one line too
    broken = tmp_path / "broken"
    broken.mkdir()
    for name in ("onnx.json", "prior.onnx", "reference.onnx"):
        (broken / name).write_bytes((out / name).read_bytes())
    (broken / "model.onnx").write_bytes(b"not a graph")
    assert_one_line_error(
        cli("translate", image, "--domain", "orange", "--checkpoint", str(broken / "model.onnx")), "cannot load"
    )
