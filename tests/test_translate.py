"""`gmdrit translate` and `gmdrit export` through the CLI on tiny trained MDMM and GM-DRIT models."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import assert_one_line_error, make_dataset, tiny_overrides
from gmdrit_cli.config.schema import load_config
from gmdrit_cli.errors import CheckpointError, InferenceError
from gmdrit_cli.inference import model_files as mf
from gmdrit_cli.inference import translate as inf
from gmdrit_cli.training.trainer import train

DOMAINS = "data.domains=[apple,orange]"


def error_lines(proc) -> list[str]:
    assert "Traceback" not in proc.stderr + proc.stdout
    return [line for line in proc.stderr.splitlines() if line.strip()]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """Tiny MDMM, GM-DRIT (2 components per domain) and GM-DRIT "domain" stage runs, trained once."""
    root = tmp_path_factory.mktemp("translate")
    data = make_dataset(root / "data")
    runs = {}
    for name, preset, extra in (
        ("mdmm", "mdmm_baseline", []),
        ("gmdrit", "reduced_res", ["mixture.components_per_domain=2"]),
        ("gmdrit_domain", "reduced_res", ["mixture.condition_on=domain"]),
    ):
        train(load_config(preset, tiny_overrides(data, 2) + [DOMAINS, *extra]), root / name)
        runs[name] = root / name
    runs["data"] = data
    return runs


def odd_inputs(folder: Path) -> tuple[dict[str, tuple[int, int]], list[str]]:
    """Images of every awkward kind (name -> displayed size) and inputs that must fail."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(1)
    rgb = rng.integers(0, 255, (20, 40, 3), dtype=np.uint8)
    good = {}

    def save(name, im, **kw):
        im.save(folder / name, **kw)
        good[name] = im.size

    save("gray.png", Image.fromarray(rgb[..., 0], "L"))
    save("rgba.png", Image.fromarray(np.dstack([rgb, rgb[..., :1]]), "RGBA"))
    palette = Image.fromarray(rgb).convert("P", palette=Image.ADAPTIVE, colors=16)
    palette.info["transparency"] = 0
    save("palette.png", palette)
    save("gray16.png", Image.fromarray(rgb[..., 0].astype(np.uint16) * 257))
    save("cmyk.jpg", Image.fromarray(rgb).convert("CMYK"))
    exif = Image.Exif()
    exif[0x0112] = 6  # orientation: rotate 90 degrees, so the 40 x 20 pixels display 20 x 40
    Image.fromarray(rgb).save(folder / "exif.jpg", exif=exif)
    good["exif.jpg"] = (20, 40)
    save("large.jpg", Image.fromarray(rng.integers(0, 255, (1500, 2400, 3), dtype=np.uint8)))
    save("one.png", Image.new("RGB", (1, 1), (200, 120, 30)))
    save("wide.png", Image.fromarray(rng.integers(0, 255, (3, 600, 3), dtype=np.uint8)))

    (folder / "bad").mkdir()
    (folder / "bad" / "empty.png").write_bytes(b"")
    buf = io.BytesIO()
    Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)).save(buf, format="JPEG")
    (folder / "bad" / "truncated.jpg").write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    (folder / "bad" / "notes.jpg").write_text("these are my notes, not a picture\n")
    (folder / "nothing_here").mkdir()
    bad = [str(folder / "bad" / n) for n in ("empty.png", "truncated.jpg", "notes.jpg")]
    bad += [str(folder / "nothing_here"), str(folder / "missing.png")]
    return good, bad


def _zlib_level_flag(path: Path) -> int:
    """FLEVEL of the zlib stream in a PNG's first IDAT chunk: 0 = fastest (levels 0-1), 2 = default (6)."""
    data = path.read_bytes()
    at = data.index(b"IDAT") + 4
    return data[at + 1] >> 6


def test_latent_mdmm_odd_inputs_deterministic(cli, models, tmp_path):
    good, bad = odd_inputs(tmp_path / "in")
    inputs = [str(tmp_path / "in" / "*.png"), str(tmp_path / "in" / "*.jpg")]  # globs, quoted
    out = tmp_path / "out"
    proc = cli(
        "translate",
        *inputs,
        *bad,
        "--domain",
        "orange",
        "--samples",
        "3",
        "--run",
        str(models["mdmm"]),
        "--seed",
        "7",
        "--out",
        str(out),
        "--threads",
        "1",
    )
    assert proc.returncode == 1, proc.stderr
    lines = error_lines(proc)
    # one line per failed input, then the summary naming them; every good input was still translated
    assert len(lines) == len(bad) + 1, proc.stderr
    for path, line in zip(bad, lines):
        assert line.startswith(f"error: {path}: "), line
    assert "empty file" in lines[0] and "truncated" in lines[1] and "not an image" in lines[2]
    assert "no image files" in lines[3] and "no such file" in lines[4]
    assert lines[-1].startswith(f"translated {len(good)} of {len(good) + len(bad)} inputs; failed: ")
    for name, (w, h) in good.items():
        stem = Path(name).stem
        samples = [Image.open(out / f"{stem}_to_orange_{k}.png") for k in (1, 2, 3)]
        ow, oh = samples[0].size
        assert all(s.size == (ow, oh) and s.mode == "RGB" for s in samples)
        if name not in ("wide.png",):  # the input's aspect ratio, about the training crop's pixel count
            assert abs(ow / oh - w / h) < 0.1 * (w / h) + 2 / oh, (name, ow, oh)
            assert 0.8 * 32 * 32 < ow * oh < 1.2 * 32 * 32
        grid = Image.open(out / f"{stem}_to_orange_grid.png")
        assert grid.size in ((4 * (ow + 2) + 2, oh + 4), (ow + 4, 4 * (oh + 2) + 2))  # input, then 3 samples
        assert len({s.tobytes() for s in samples}) == 3  # three different attributes
    assert Image.open(out / "exif_to_orange_1.png").size[1] > Image.open(out / "exif_to_orange_1.png").size[0]
    wide = Image.open(out / "wide_to_orange_1.png").size
    assert wide[0] > 20 * wide[1] and max(wide) <= 8 * 32
    assert len(list(out.iterdir())) == 4 * len(good)  # nothing else, no temporary files left
    assert "exif_to_orange_grid.png" in proc.stdout  # the table lists what was written
    assert _zlib_level_flag(out / "cmyk_to_orange_1.png") == 0  # written at zlib's fastest level (speed)

    # determinism: the same seed gives the same bytes, whatever the other inputs of the call
    again = tmp_path / "again"
    proc = cli(
        "translate",
        str(tmp_path / "in" / "cmyk.jpg"),
        "-d",
        "orange",
        "-n",
        "3",
        "--checkpoint",
        str(models["mdmm"] / "checkpoints" / "iter_0000002"),
        "--seed",
        "7",
        "--out",
        str(again),
        "--threads",
        "1",
    )
    assert proc.returncode == 0, proc.stderr
    for k in (1, 2, 3):
        assert (again / f"cmyk_to_orange_{k}.png").read_bytes() == (out / f"cmyk_to_orange_{k}.png").read_bytes()
    assert (again / "cmyk_to_orange_grid.png").read_bytes() == (out / "cmyk_to_orange_grid.png").read_bytes()


def test_reference_guided_mdmm_and_square(cli, models, tmp_path):
    refs = sorted((models["data"] / "testB").glob("*.png"))[:2]
    out = tmp_path / "out"
    src = Image.fromarray(np.full((30, 60, 3), 90, np.uint8))
    src.save(tmp_path / "src.png")
    proc = cli(
        "translate",
        str(tmp_path / "src.png"),
        "--domain",
        "orange",
        "--reference",
        str(refs[0]),
        "-r",
        str(refs[1]),
        "--run",
        str(models["mdmm"]),
        "--square",
        "--size",
        "16",
        "--out",
        str(out),
        "--threads",
        "1",
    )
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in out.iterdir()) == [
        "src_to_orange_grid.png",
        "src_to_orange_ref1.png",
        "src_to_orange_ref2.png",
    ]
    assert Image.open(out / "src_to_orange_ref1.png").size == (16, 16)
    # the attribute is the reference's encoded mean: no randomness, so any seed gives the same output
    model = mf.load_for_inference(models["mdmm"])[1]
    r1 = inf.translate(
        model,
        [tmp_path / "src.png"],
        domain="orange",
        references=refs,
        seed=1,
        size=16,
        square=True,
        out=tmp_path / "s1",
    )
    assert r1.items[0].outputs[0].read_bytes() == (out / "src_to_orange_ref1.png").read_bytes()


def test_gmdrit_latent_component_reference_and_export(cli, models, tmp_path):
    img = str(sorted((models["data"] / "testA").glob("*.png"))[0])
    ref = str(sorted((models["data"] / "testB").glob("*.png"))[0])
    export = tmp_path / "export"
    proc = cli("export", str(models["gmdrit"]), "--out", str(export))
    assert proc.returncode == 0, proc.stderr
    assert sorted(p.name for p in export.iterdir()) == ["config.yaml", "model.safetensors"]
    # latent-guided with a pinned component, from the run and from the exported file: the same bytes
    for name, source in (
        ("run", ["--run", str(models["gmdrit"])]),
        ("export", ["--checkpoint", str(export / "model.safetensors")]),
    ):
        proc = cli(
            "translate",
            img,
            "--domain",
            "orange",
            "--samples",
            "2",
            "--component",
            "1",
            *source,
            "--seed",
            "3",
            "--out",
            str(tmp_path / name),
            "--threads",
            "1",
        )
        assert proc.returncode == 0, proc.stderr
        assert "gmdrit" in proc.stdout
    for k in (1, 2):
        a, b = (tmp_path / n / f"0_to_orange_{k}.png" for n in ("run", "export"))
        assert a.read_bytes() == b.read_bytes()
    proc = cli(
        "translate",
        img,
        "-d",
        "orange",
        "-r",
        ref,
        "--checkpoint",
        str(export),
        "--out",
        str(tmp_path / "ref"),
        "--threads",
        "1",
    )
    assert proc.returncode == 0, proc.stderr
    assert (tmp_path / "ref" / "0_to_orange_ref1.png").is_file()


def test_user_errors_are_one_line(cli, models, tmp_path):
    img = str(sorted((models["data"] / "testA").glob("*.png"))[0])
    out = tmp_path / "out"
    assert_one_line_error(
        cli("translate", img, "--domain", "orang", "--run", str(models["mdmm"]), "--out", str(out)),
        "unknown domain 'orang'",
        "did you mean 'orange'",
        "apple, orange",
    )
    assert_one_line_error(
        cli("translate", img, "--domain", "orange", "--run", str(tmp_path / "nope")), "does not exist"
    )
    assert_one_line_error(
        cli(
            "translate", img, "--domain", "orange", "--component", "0", "--run", str(models["mdmm"]), "--out", str(out)
        ),
        "no mixture components",
    )
    assert not out.exists()  # a call that cannot run writes nothing


def test_model_sources_and_test_time_api(models, tmp_path):
    """Every way to name a model, and the shared test-time interface of both families (in process)."""
    with pytest.raises(InferenceError, match="no such file"):
        inf.translate(mf.load_for_inference(models["mdmm"])[1], [], domain="orange", references=[tmp_path / "x.png"])
    (tmp_path / "weights.safetensors").write_bytes(b"")
    with pytest.raises(CheckpointError, match="config.yaml"):
        mf.resolve_model(tmp_path / "weights.safetensors")
    with pytest.raises(CheckpointError, match="not a run folder"):
        mf.resolve_model(tmp_path)
    ckpt = models["gmdrit"] / "checkpoints" / "iter_0000002"
    assert mf.resolve_model(models["gmdrit"]).weights == ckpt / "model.safetensors"
    assert mf.resolve_model(ckpt).iteration == 2
    mf.export_model(ckpt, tmp_path / "exp")
    src = mf.resolve_model(tmp_path / "exp")
    assert src.kind == "export" and src.iteration == 2 and src.cfg.mixture.components_per_domain == 2
    x = torch.rand(3, 3, 32, 32) * 2 - 1
    for name, code_dim in (("mdmm", 2), ("gmdrit", 4)):
        cfg, model = mf.load_for_inference(models[name])
        assert set(model.networks) == set(mf.INFERENCE_NETWORKS)
        assert not any(net.training for net in model.networks.values())
        g = torch.Generator().manual_seed(0)
        z, y = model.sample_attributes(1, 5, generator=g)
        assert z.shape == (5, 8) and y.shape == (5, code_dim)
        assert (y.argmax(1) // (code_dim // 2) == 1).all()  # every draw belongs to the wanted domain
        zr, yr = model.encode_reference(x, torch.tensor([1, 1, 0]))
        assert zr.shape == (3, 8) and yr.shape == (3, code_dim)
        images = model.generate(model.encode_content(x), zr, yr)
        assert images.shape == (3, 3, 32, 32) and images.abs().max() <= 1
        mean, std = model.attribute_prior(y)
        if name == "mdmm":
            assert torch.equal(mean, torch.zeros_like(mean)) and torch.equal(std, torch.ones_like(std))
            assert torch.equal(y, torch.tensor([[0.0, 1.0]] * 5))
        else:  # z ~ p(z|y) of components 2, 3 (the orange ones); --component pins one
            _, y1 = model.sample_attributes(1, 4, component=1, generator=g)
            assert (y1.argmax(1) == 3).all()
    assert inf.output_size(4000, 10, 32, False)[0] <= 256 and inf.output_size(1, 1, 32, False) == (32, 32)

    # GM-DRIT's "domain" stage (report 5.1): MDMM's N(0, I) prior and the domain code, no components
    cfg, model = mf.load_for_inference(models["gmdrit_domain"])
    img = sorted((models["data"] / "testA").glob("*.png"))[0]
    result = inf.translate(model, [img], domain="orange", samples=2, seed=0, out=tmp_path / "d1")
    assert len(result.items[0].outputs) == 2 and not result.failures
    result = inf.translate(model, [img], domain="orange", references=[img], out=tmp_path / "d2")
    assert result.items[0].outputs[0].is_file()
    with pytest.raises(InferenceError, match="no mixture components"):
        inf.translate(model, [img], domain="orange", component=0, out=tmp_path / "d3")
    path, _ = inf.interpolation_path(model, between="domains", domains=[0, 1], steps=3, seed=0)
    assert torch.allclose(path.y[1], torch.tensor([0.5, 0.5])) and torch.equal(path.z[0], path.z[2])


def test_temperature_translate_and_its_errors(cli, models, tmp_path):
    img = str(sorted((models["data"] / "testA").glob("*.png"))[0])
    ref = str(sorted((models["data"] / "testB").glob("*.png"))[0])
    run = str(models["gmdrit"])
    outs = {}
    for t in ("1", "0.01"):
        proc = cli(
            "translate",
            img,
            "--domain",
            "orange",
            "-n",
            "3",
            "--temperature",
            t,
            "--run",
            run,
            "--out",
            str(tmp_path / t),
        )
        assert proc.returncode == 0, proc.stderr
        outs[t] = [
            np.asarray(Image.open(p), dtype=np.float32) for p in sorted((tmp_path / t).glob("*_to_orange_[0-9].png"))
        ]
    spread = {t: np.mean([np.abs(a - b).mean() for a in o for b in o]) for t, o in outs.items()}
    assert spread["0.01"] < spread["1"]  # near the prior's mean the outputs nearly coincide
    assert_one_line_error(
        cli("translate", img, "--domain", "orange", "--temperature", "0", "--run", run, "--out", str(tmp_path / "x")),
        "--temperature 0.0",
        "above 0",
    )
    assert_one_line_error(
        cli(
            "translate",
            img,
            "--domain",
            "orange",
            "--temperature",
            "2",
            "--reference",
            ref,
            "--run",
            run,
            "--out",
            str(tmp_path / "x"),
        ),
        "--temperature applies to random",
    )
    assert not (tmp_path / "x").exists()


def test_quantize_round_trip_by_hand():
    from gmdrit_cli.inference.quantize import SCALE_SUFFIX, dequantize_tensors, quantize_tensors

    w = torch.linspace(-1, 1, 2048).reshape(2, 1024)
    w[1] *= 0.254  # channel 1's scale: 0.254 / 127 = 0.002
    small, bias = torch.randn(3, 4), torch.randn(1024)
    q = quantize_tensors({"w": w, "small": small, "bias": bias})
    assert q["w"].dtype == torch.int8 and q["w"][0].abs().max().item() == 127
    assert q[f"w{SCALE_SUFFIX}"].tolist() == pytest.approx([1 / 127, 0.254 / 127])
    assert torch.equal(q["small"], small) and torch.equal(q["bias"], bias)  # too small / 1-d: kept as they are
    back = dequantize_tensors(q)
    assert set(back) == {"w", "small", "bias"} and back["w"].dtype == torch.float32
    err = (back["w"] - w).abs().amax(dim=1)
    assert (err <= q[f"w{SCALE_SUFFIX}"] / 2 + 1e-7).all() and err[1] < 0.0011


def test_int8_export_is_small_carries_metadata_and_translates_alike(cli, models, tmp_path):
    from safetensors import safe_open

    full, small = tmp_path / "fp32", tmp_path / "int8"
    assert cli("export", str(models["gmdrit"]), "--out", str(full)).returncode == 0
    proc = cli("export", str(models["gmdrit"]), "--out", str(small), "--int8", "--meta", "trained_with=gmdrit train x")
    assert proc.returncode == 0, proc.stderr
    assert (small / "model.safetensors").stat().st_size < 0.4 * (full / "model.safetensors").stat().st_size
    with safe_open(str(small / "model.safetensors"), framework="pt") as f:
        meta = f.metadata()
        assert not any(k.startswith("generator.pxz.") for k in f.keys())
    assert meta["trained_with"] == "gmdrit train x" and meta["quantized"].startswith("int8")
    img = str(sorted((models["data"] / "testA").glob("*.png"))[0])
    outs = {}
    for name, folder in (("fp32", full), ("int8", small)):
        proc = cli(
            "translate",
            img,
            "-d",
            "orange",
            "-n",
            "2",
            "--checkpoint",
            str(folder),
            "--seed",
            "1",
            "--out",
            str(tmp_path / f"out-{name}"),
            "--threads",
            "1",
        )
        assert proc.returncode == 0, proc.stderr
        outs[name] = np.asarray(Image.open(tmp_path / f"out-{name}" / "0_to_orange_1.png"), dtype=np.float32)
    assert np.abs(outs["fp32"] - outs["int8"]).mean() < 3.0  # of 255
    assert_one_line_error(
        cli("export", str(models["gmdrit"]), "--out", str(tmp_path / "x"), "--meta", "novalue"),
        "--meta 'novalue'",
        "KEY=VALUE",
    )
