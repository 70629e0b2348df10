"""`gmdrit benchmark` end to end at a tiny size, and the fast paths keep training correct."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest import set_args, tiny_overrides
from gmdrit_cli.config.schema import load_config
from gmdrit_cli.data.unpaired import Batch
from gmdrit_cli.families import build_for_training
from gmdrit_cli.training.benchmark import REPORT_TABLE, ROW_KEYS, select_rows

TINY = ["data.crop=32", "data.resize=36", "model.width=8", "model.nz=8"]


def test_report_table_is_table_3_of_the_report():
    """The timings of Table 3 of the GM-DRIT report ([R1] in docs/references.md; docs/benchmark.md)."""
    assert len([r for r in REPORT_TABLE if r.resolution in (108, 216)]) == 12
    by_key = {(r.key, r.resolution): r.report_seconds for r in REPORT_TABLE}
    assert by_key[("gmdrit", 108)] == 0.538 and by_key[("gmdrit", 216)] == 2.261
    assert by_key[("mdmm", 108)] == 0.313 and by_key[("mdmm", 216)] == 0.615
    assert by_key[("double_conv", 216)] == 3.716
    assert set(ROW_KEYS) == {
        "gmdrit",
        "double_gen_enc",
        "half_discr",
        "adain",
        "double_conv",
        "mdmm",
        "bicyclegan",
        "vae_phase1",
        "vae_phase2",
    }


def test_bicyclegan_rows_are_named_and_untimed_by_the_report():
    rows = select_rows(["bicyclegan"], [108, 216, 128, 256])
    assert [(r.preset, r.resolution, r.report_seconds) for r in rows] == [
        ("bicyclegan_report_unet", 128, None),
        ("edges2shoes", 256, None),
    ]
    assert all(r.key != "bicyclegan" for r in select_rows(None, [108, 216, 128, 256]))  # default: Table 3 only


@pytest.mark.slow
def test_benchmark_times_a_tiny_bicyclegan_row(cli, tmp_path):
    sets = ["model.width=4", "train.batch_size=2"]
    proc = cli(
        "benchmark",
        "--iters",
        "1",
        "--warmup",
        "0",
        "--rows",
        "bicyclegan",
        "--resolution",
        "128",
        "--out",
        tmp_path,
        *set_args(sets),
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads((tmp_path / "benchmark.json").read_text())["rows"]
    assert row["key"] == "bicyclegan" and row["resolution"] == 128 and row["ratio_to_report"] is None
    assert len(row["seconds"]) == 1 and row["median"] > 0


@pytest.mark.slow  # two phases timed at 256 px
def test_vae_rows_time_each_phase_at_256_px(cli, tmp_path):
    """The VAE rows at 256 px have no report figure; phase 2 changes only the timed decoder."""
    rows = {r.key: r for r in select_rows(["vae_phase1", "vae_phase2"], [256])}
    assert {k: (r.preset, r.phase, r.report_seconds) for k, r in rows.items()} == {
        "vae_phase1": ("vae_apple2orange", "shared", None),
        "vae_phase2": ("vae_apple2orange", "decoder_x", None),
    }
    proc = cli(
        "benchmark",
        "--iters",
        "2",
        "--warmup",
        "0",
        "--rows",
        "vae_phase1,vae_phase2",
        "--resolution",
        "256",
        "--out",
        tmp_path,
        *set_args(TINY + ["train.batch_size=2"]),
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads((tmp_path / "benchmark.json").read_text())
    assert [(r["key"], r["resolution"], r["ratio_to_report"]) for r in data["rows"]] == [
        ("vae_phase1", 256, None),
        ("vae_phase2", 256, None),
    ]


@pytest.mark.slow  # four rows, at 108 and 216 px
def test_benchmark_command_writes_table_json_csv_png(cli, tmp_path):
    proc = cli(
        "benchmark",
        "--iters",
        "2",
        "--warmup",
        "0",
        "--rows",
        "gmdrit,mdmm",
        "--resolution",
        "both",
        "--out",
        tmp_path,
        *set_args(TINY),
    )
    assert proc.returncode == 0, proc.stderr
    assert "report T4" in proc.stdout and "MDMM [5.5]" in proc.stdout
    data = json.loads((tmp_path / "benchmark.json").read_text())
    assert {"device", "torch", "threads"} <= set(data["environment"])
    assert data["settings"]["iters"] == 2
    rows = data["rows"]
    assert [(r["key"], r["resolution"]) for r in rows] == [
        ("gmdrit", 108),
        ("mdmm", 108),
        ("gmdrit", 216),
        ("mdmm", 216),
    ]
    for r in rows:
        assert len(r["seconds"]) == 2 and r["median"] > 0 and r["peak_memory_bytes"] > 0
        assert r["ratio_to_report"] == pytest.approx(r["median"] / r["report_seconds"])
    with open(tmp_path / "benchmark.csv") as f:
        assert len(list(csv.DictReader(f))) == 4
    assert (tmp_path / "benchmark.png").stat().st_size > 0


def test_unknown_row_is_a_one_line_error(cli, tmp_path):
    proc = cli("benchmark", "--rows", "nope", "--out", tmp_path)
    assert proc.returncode == 1 and "unknown benchmark row nope" in proc.stderr and "Traceback" not in proc.stderr


def _losses(root, *speed, steps=3):
    cfg = load_config("reduced_res", tiny_overrides(root) + list(speed))
    torch.manual_seed(0)
    model, engine = build_for_training(cfg, torch.device("cpu"))
    g = torch.Generator().manual_seed(1)
    out = []
    for i in range(steps):
        batch = Batch(torch.rand(2, 3, 32, 32, generator=g) * 2 - 1, torch.tensor([0, 1]))
        out.append({k: float(v) for k, v in model.train_step([batch], i, engine).items()})
    return out


@pytest.mark.parametrize(
    "fast",
    [
        pytest.param(["speed.amp=bf16"], marks=pytest.mark.slow),  # autocast on the CPU: slower than fp32
        ["speed.channels_last=on"],
        ["speed.optimizer=foreach"],
        ["speed.optimizer=fused"],
        pytest.param(["speed.amp=fp16"], marks=pytest.mark.slow),
        ["speed.keep_freed_memory=on"],
    ],
)
def test_fast_paths_keep_losses_close_to_fp32(tiny_data, fast):
    reference = _losses(tiny_data, "speed.amp=off", "speed.channels_last=off", "speed.optimizer=loop")
    fast_run = _losses(tiny_data, "speed.amp=off", "speed.channels_last=off", "speed.optimizer=loop", *fast)
    # amp changes precision; channels-last lays the content noise out in another memory order
    exact = not any("amp" in f or "channels_last" in f for f in fast)
    for ref, got in zip(reference, fast_run):
        assert ref.keys() == got.keys()
        for k in ref:
            tol = dict(rel=2e-3, abs=1e-4) if exact else dict(rel=0.05, abs=0.05)
            assert got[k] == pytest.approx(ref[k], **tol), (fast, k)


def test_keep_freed_memory_applies_only_where_asked():
    from gmdrit_cli.training import speed

    assert speed.keep_freed_memory("off", torch.device("cpu")) is False
    assert speed.keep_freed_memory("auto", torch.device("cuda")) is False
    import platform

    if platform.system() == "Linux" and platform.libc_ver()[0] == "glibc":
        assert speed.keep_freed_memory("auto", torch.device("cpu")) is True


@pytest.mark.slow  # a new Python process per case: torch reads the caps when it is imported
@pytest.mark.parametrize(
    "env,expected",
    [
        ({"ONEDNN_MAX_CPU_ISA": "AVX2"}, False),
        ({"ONEDNN_MAX_CPU_ISA": "avx512_core"}, False),
        ({"ATEN_CPU_CAPABILITY": "avx2"}, False),
        ({"ONEDNN_MAX_CPU_ISA": "AVX512_CORE_AMX"}, None),
        ({}, None),
    ],
)
def test_amp_auto_follows_an_instruction_set_cap(env, expected):
    """With the ISA capped below bf16 (an AVX2 machine reproduced), speed.amp auto must pick fp32; without a
    cap it follows the CPU flags (None: whatever /proc/cpuinfo says)."""
    code = (
        "from gmdrit_cli.training import speed; import torch; "
        "print(speed.cpu_has_bf16(), speed.amp_dtype('auto', torch.device('cpu')))"
    )
    base = {
        k: v
        for k, v in os.environ.items()
        if k not in ("ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "ATEN_CPU_CAPABILITY")
    }
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**base, **env}, timeout=120
    ).stdout.split()
    flags = Path("/proc/cpuinfo").read_text(errors="ignore") if Path("/proc/cpuinfo").exists() else ""
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    want = native if expected is None else expected
    assert out == [str(want), "torch.bfloat16" if want else "None"]
