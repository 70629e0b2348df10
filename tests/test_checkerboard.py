"""The checkerboard metric: grid-frequency power of synthetic images with known patterns, real photos, and the
metric inside `gmdrit eval`."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gmdrit_cli.evaluation.evaluate import EvalOptions, evaluate
from gmdrit_cli.evaluation.metrics.checkerboard import checkerboard_ratio, grid_mask, grid_power_share

SIZE = 64
SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "apple2orange"


def grey(values: np.ndarray, copies: int = 3) -> torch.Tensor:
    """H x W float values -> uint8 copies x 3 x H x W grey images."""
    u8 = torch.from_numpy(np.clip(np.round(values), 0, 255).astype(np.uint8))
    return u8[None, None].expand(copies, 3, *u8.shape).contiguous()


def smooth_plus_checkerboard(amplitude: float) -> torch.Tensor:
    """A horizontal cosine of one period per image (power only at kx = +-1) plus a +-amplitude checkerboard
    (period 2 on both axes: all its power at (H/2, W/2))."""
    y, x = np.mgrid[:SIZE, :SIZE]
    return grey(128 + 60 * np.cos(2 * np.pi * x / SIZE) + amplitude * (-1.0) ** (x + y))


def test_the_mask_holds_the_fifteen_frequencies_of_periods_two_and_four():
    mask = grid_mask(SIZE, SIZE)
    assert mask.sum() == 15 and mask[0, 0] == 0
    assert mask[SIZE // 2, SIZE // 2] == 1 and mask[0, SIZE // 4] == 1 and mask[3 * SIZE // 4, SIZE // 2] == 1
    assert mask[1, 0] == 0 and mask[SIZE // 2, SIZE // 2 + 1] == 0


def test_known_patterns_give_their_power_share_and_ratio():
    # a cosine of amplitude A has power A^2 / 2 per pixel, a +-B checkerboard B^2: share = B^2 / (A^2 / 2 + B^2)
    share = grid_power_share(smooth_plus_checkerboard(6.0))
    assert torch.allclose(share, torch.full((3,), 36 / (1800 + 36), dtype=torch.float64), rtol=1e-2)
    expected = (36 / 1836) / (4 / 1804)
    assert checkerboard_ratio(smooth_plus_checkerboard(6.0), smooth_plus_checkerboard(2.0)) == pytest.approx(
        expected, rel=0.02
    )
    # no pattern at all: only rounding noise reaches the grid frequencies
    assert grid_power_share(smooth_plus_checkerboard(0.0)).max() < 1e-4
    # a period-4 stripe pattern along one axis counts too
    y, x = np.mgrid[:SIZE, :SIZE]
    stripes = grey(128 + 60 * np.cos(2 * np.pi * y / SIZE) + 10 * np.cos(np.pi * x / 2))
    assert grid_power_share(stripes)[0] == pytest.approx(50 / (1800 + 50), rel=1e-2)


def test_a_flat_image_has_no_power_and_a_zero_share():
    assert grid_power_share(grey(np.full((SIZE, SIZE), 77.0))).tolist() == [0.0, 0.0, 0.0]


def _photos(folder: Path, n: int) -> torch.Tensor:
    out = []
    for path in sorted(folder.glob("*.jpg"))[:n]:
        im = Image.open(path).convert("RGB").resize((72, 72), Image.BICUBIC).crop((4, 4, 68, 68))
        out.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1))
    return torch.stack(out)


@pytest.mark.slow  # the real apple2orange photos
@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/datasets/apple2orange")
def test_real_photos_against_other_real_photos_give_about_one():
    for letter in "AB":
        ratio = checkerboard_ratio(_photos(SHARED / f"test{letter}", 250), _photos(SHARED / f"train{letter}", 300))
        assert 0.8 < ratio < 1.25, (letter, ratio)


def test_eval_reports_the_ratio_per_task_and_one_on_the_real_line(tiny_gmdrit_run, tmp_path):
    base, root = tiny_gmdrit_run
    result = evaluate(
        EvalOptions(
            run=base / "run",
            data=str(root),
            metrics="checkerboard",
            samples_per_input=2,
            out=tmp_path / "out",
            device="cpu",
        )
    )
    report = result.report
    for task in report["tasks"]:
        value = task["checkerboard"]
        assert value["ratio"] == pytest.approx(value["share"] / value["real_share"])
        # recompute from the saved PNGs and the real test images
        pngs = sorted(Path(task["folder"]).glob("*.png"))
        fakes = torch.stack([torch.from_numpy(np.asarray(Image.open(p)).copy()).permute(2, 0, 1) for p in pngs])
        assert value["share"] == pytest.approx(float(grid_power_share(fakes).mean()), rel=1e-9)
        assert math.isfinite(value["ratio"])
    for row in report["reference"].values():
        assert row["checkerboard"]["ratio"] == 1.0 and row["checkerboard"]["share"] > 0
    assert report["mean"]["checkerboard"] == pytest.approx(
        np.mean([t["checkerboard"]["ratio"] for t in report["tasks"]])
    )
