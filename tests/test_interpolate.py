"""`gmdrit interpolate` through the CLI on tiny trained MDMM and GM-DRIT models, every --between mode."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image, ImageSequence

from conftest import make_dataset, tiny_overrides
from gmdrit_cli.config.schema import load_config
from gmdrit_cli.errors import InferenceError
from gmdrit_cli.inference import model_files as mf
from gmdrit_cli.inference import translate as inf
from gmdrit_cli.training.trainer import train

STEPS = 5


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """Tiny MDMM and GM-DRIT (2 components per domain) runs, trained once for the module."""
    root = tmp_path_factory.mktemp("interpolate")
    data = make_dataset(root / "data")
    runs = {"data": data}
    for name, preset, extra in (
        ("mdmm", "mdmm_baseline", []),
        ("gmdrit", "reduced_res", ["mixture.components_per_domain=2"]),
    ):
        train(load_config(preset, tiny_overrides(data, 2) + ["data.domains=[apple,orange]", *extra]), root / name)
        runs[name] = root / name
    runs["image"] = str(sorted((data / "testA").glob("*.png"))[0])
    runs["refs"] = [str(p) for p in sorted((data / "testB").glob("*.png"))[:2]]
    return runs


def interpolate(cli, setup, model, out, *args):
    proc = cli(
        "interpolate",
        setup["image"],
        "--domain",
        "orange",
        "--steps",
        str(STEPS),
        "--run",
        str(setup[model]),
        "--out",
        str(out),
        "--threads",
        "1",
        *args,
    )
    assert "Traceback" not in proc.stderr + proc.stdout
    return proc


def check_outputs(strip: Path, gif: Path, size=(32, 32), fps=8.0, loop=0) -> list[bytes]:
    """The strip is the input then STEPS frames; the GIF holds the STEPS frames (Pillow merges identical
    neighbours, adding their durations). Returns the decoded GIF frames."""
    w, h = size
    assert Image.open(strip).size == ((STEPS + 1) * (w + 2) + 2, h + 4)
    im = Image.open(gif)
    assert im.format == "GIF" and im.size == size and im.info.get("loop") == loop
    frames = [f.convert("RGB").tobytes() for f in ImageSequence.Iterator(im)]
    durations = [f.info["duration"] for f in ImageSequence.Iterator(Image.open(gif))]
    assert 1 <= len(frames) <= STEPS and sum(durations) == STEPS * 10 * round(100 / fps)
    return frames


def test_mdmm_random_is_deterministic_and_reports_bad_inputs(cli, setup, tmp_path):
    out = tmp_path / "a"
    proc = interpolate(
        cli, setup, "mdmm", out, "--seed", "5", str(tmp_path / "missing.jpg"), "--fps", "4", "--loop", "2"
    )
    assert proc.returncode == 1  # one input failed; the good one is still interpolated
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines[0] == f"error: {tmp_path / 'missing.jpg'}: no such file or folder"
    assert lines[1].startswith("interpolated 1 of 2 inputs; failed: ")
    stem = "0_to_orange_random"
    check_outputs(out / f"{stem}.png", out / f"{stem}.gif", fps=4, loop=2)
    assert sorted(p.name for p in out.iterdir()) == [f"{stem}.gif", f"{stem}.png"]
    # the same seed gives the same bytes
    again = tmp_path / "b"
    proc = interpolate(cli, setup, "mdmm", again, "--seed", "5", "--fps", "4", "--loop", "2")
    assert proc.returncode == 0, proc.stderr
    for suffix in (".png", ".gif"):
        assert (again / f"{stem}{suffix}").read_bytes() == (out / f"{stem}{suffix}").read_bytes()


def test_mdmm_domains_and_references(cli, setup, tmp_path):
    proc = interpolate(cli, setup, "mdmm", tmp_path, "--between", "domains", "--square", "--size", "16")
    assert proc.returncode == 0, proc.stderr
    assert "from apple to orange" in proc.stdout  # one --domain of a 2-domain model: from the other one
    check_outputs(tmp_path / "0_apple_to_orange.png", tmp_path / "0_apple_to_orange.gif", size=(16, 16))
    proc = interpolate(
        cli,
        setup,
        "mdmm",
        tmp_path,
        "--between",
        "references",
        "--reference",
        setup["refs"][0],
        "--reference",
        setup["refs"][1],
    )
    assert proc.returncode == 0, proc.stderr
    check_outputs(tmp_path / "0_references_0_1.png", tmp_path / "0_references_0_1.gif")
    proc = interpolate(cli, setup, "mdmm", tmp_path / "no", "--between", "components")
    assert proc.returncode == 1 and not (tmp_path / "no").exists()
    assert proc.stderr.strip().splitlines() == [
        "error: --between components: this model has no mixture components; use --between random or domains"
    ]


def test_gmdrit_every_mode(cli, setup, tmp_path):
    runs = [
        ("random", ["-k", "1"], "0_to_orange_random_component1"),
        ("components", [], "0_to_orange_components_0_1"),
        ("domains", [], "0_orange_to_apple"),
        ("references", ["--reference", setup["refs"][0], "--reference", setup["refs"][1]], "0_references_0_1"),
    ]
    for between, extra, stem in runs:
        if between == "domains":  # both domains named explicitly, reversed
            proc = cli(
                "interpolate",
                setup["image"],
                "-d",
                "orange",
                "-d",
                "apple",
                "--between",
                "domains",
                "--steps",
                str(STEPS),
                "--checkpoint",
                str(setup["gmdrit"]),
                "--out",
                str(tmp_path),
                "--threads",
                "1",
                "--seed",
                "1",
            )
        else:
            proc = interpolate(cli, setup, "gmdrit", tmp_path, "--between", between, "--seed", "1", *extra)
        assert proc.returncode == 0, (between, proc.stderr)
        frames = check_outputs(tmp_path / f"{stem}.png", tmp_path / f"{stem}.gif")
        if between != "references":  # two references of a 2-iteration model may decode alike
            assert len(set(frames)) >= 2, between  # the walk changes the output


def test_paths_follow_the_prior(setup):
    """In process: slerp, and the attribute path of each mode has the right endpoints."""
    a, b = torch.randn(3, 8), torch.randn(3, 8)
    assert torch.allclose(inf.slerp(a, b, 0.0), a, atol=1e-5) and torch.allclose(inf.slerp(a, b, 1.0), b, atol=1e-5)
    u, v = torch.eye(8)[:1] * 3, torch.eye(8)[1:2] * 3
    assert torch.allclose(inf.slerp(u, v, 0.5).norm(), torch.tensor(3.0))  # stays on the sphere
    assert torch.allclose(inf.slerp(u, u, 0.3), u)  # parallel: no division by zero
    _, mdmm = mf.load_for_inference(setup["mdmm"])
    path, _ = inf.interpolation_path(mdmm, between="domains", domains=[0, 1], steps=3, seed=0)
    assert torch.allclose(path.y, torch.tensor([[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]))
    assert torch.equal(path.z[0], path.z[2])  # one fixed attribute, the domain code walks
    _, gm = mf.load_for_inference(setup["gmdrit"])
    path, _ = inf.interpolation_path(gm, between="components", domains=[1], steps=3, seed=0)
    assert path.y[0].argmax() == 2 and path.y[-1].argmax() == 3  # orange's components 0 and 1 (global 2, 3)
    mean, std = gm.attribute_prior(path.y)
    eps = (path.z - mean) / std
    assert torch.allclose(eps[0], eps[-1], atol=1e-5)  # one noise draw, the component prior walks
    path, _ = inf.interpolation_path(gm, between="random", domains=[1], components=[0], steps=4, seed=0)
    z0, y0 = gm.sample_attributes(1, 1, 0, torch.Generator().manual_seed(0))
    assert torch.allclose(path.z[0], z0[0], atol=1e-5) and torch.equal(path.y[0], y0[0])
    with pytest.raises(InferenceError, match="two reference images"):
        inf.interpolation_path(gm, between="references", domains=[1], references=[setup["refs"][0]], steps=3)
    with pytest.raises(InferenceError, match="0..1"):
        inf.interpolation_path(gm, between="random", domains=[1], components=[2], steps=3)
