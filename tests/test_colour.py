"""The colour-only metrics hue_match and foreign_hue: hues of known colours, histograms of synthetic images, the
nearest prototype, foreign hues, real photos, and both metrics inside `gmdrit eval`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gmdrit_cli.evaluation.evaluate import EvalOptions, evaluate
from gmdrit_cli.evaluation.metrics import colour

SHARED = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "apple2orange"
ORANGE, RED, CYAN, WHITE, GREY, BLACK = (255, 128, 0), (200, 0, 0), (0, 200, 200), (255, 255, 255), (120,) * 3, (0,) * 3


def flat(*colours_and_rows: tuple[tuple[int, int, int], int], width: int = 8) -> torch.Tensor:
    """One uint8 1 x 3 x H x width image of horizontal bands: (colour, rows) each."""
    rows = [torch.tensor(c, dtype=torch.uint8)[:, None, None].expand(3, n, width) for c, n in colours_and_rows]
    return torch.cat(rows, dim=1)[None]


def test_hue_of_known_colours():
    rgb = torch.tensor([RED, ORANGE, (0, 255, 0), CYAN, (0, 0, 255), (255, 0, 255), GREY], dtype=torch.float64)
    hue, saturation, value = colour.hue_degrees(rgb.T[None, :, :, None] / 255.0)
    assert hue.flatten().tolist() == pytest.approx([0.0, 30.117647, 120.0, 180.0, 240.0, 300.0, 0.0])
    assert saturation.flatten()[-1] == 0.0 and value.flatten()[-1] == pytest.approx(120 / 255)


def test_histogram_shares_per_hue_bin_and_the_colourless_bin():
    # a quarter orange (30 deg: bin 1), a quarter cyan (180 deg: bin 9), white, grey and black colourless
    image = flat((ORANGE, 4), (CYAN, 4), (WHITE, 3), (GREY, 3), (BLACK, 2))
    hist = colour.colour_histograms(image)[0]
    assert hist.shape == (colour.HUE_BINS + 1,)
    assert hist[1] == 0.25 and hist[9] == 0.25 and hist[-1] == 0.5
    assert float(hist.sum()) == pytest.approx(1.0)


def test_nearest_prototype_and_foreign_hues():
    oranges = torch.cat([flat((ORANGE, 12), (WHITE, 4)), flat((ORANGE, 8), (WHITE, 8))])
    reds = torch.cat([flat((RED, 12), (WHITE, 4)), flat((RED, 6), (GREY, 10))])
    prototypes = torch.stack([colour.colour_histograms(x).mean(0) for x in (reds, oranges)])
    cast = flat((ORANGE, 8), (CYAN, 8))  # orange fruit on a cyan background
    assert colour.nearest_prototype(colour.colour_histograms(torch.cat([reds, cast])), prototypes).tolist() == [
        0,
        0,
        1,
    ]
    foreign = colour.foreign_bins(prototypes[1])
    assert not foreign[1] and foreign[9] and not foreign[-1]  # orange is at home, cyan foreign, grey never
    shares = colour.foreign_share(colour.colour_histograms(torch.cat([oranges, cast])), foreign)
    assert shares.tolist() == [0.0, 0.0, 0.5]
    assert colour.hue_match_share(cast, 1, prototypes) == 1.0  # the fruit is orange: the cast is foreign_hue's


def _photos(folder: Path, n: int) -> torch.Tensor:
    images = []
    for path in sorted(folder.glob("*.jpg"))[:n]:
        im = Image.open(path).convert("RGB").resize((64, 64), Image.BICUBIC)
        images.append(torch.from_numpy(np.asarray(im).copy()).permute(2, 0, 1))
    return torch.stack(images)


@pytest.mark.slow  # the real apple2orange photos
@pytest.mark.skipif(not SHARED.is_dir(), reason="needs ../shared/datasets/apple2orange")
def test_real_photos_take_their_domains_colours_and_a_hue_rotation_is_foreign():
    train = [_photos(SHARED / f"train{letter}", 300) for letter in "AB"]
    prototypes = torch.stack([colour.colour_histograms(x).mean(0) for x in train])
    for d, letter in enumerate("AB"):
        assert colour.hue_match_share(_photos(SHARED / f"test{letter}", 150), d, prototypes) > 0.75
    oranges = _photos(SHARED / "testB", 150)
    foreign = colour.foreign_bins(prototypes[1])
    real = float(colour.foreign_share(colour.colour_histograms(oranges), foreign).mean())
    cyan_oranges = oranges[:, [2, 1, 0]].roll(1, dims=1)  # RGB -> (G, B, R): orange fruit turns cyan-blue
    rotated = float(colour.foreign_share(colour.colour_histograms(cyan_oranges), foreign).mean())
    assert real < 0.06 and rotated > 5 * real


def test_eval_reports_both_metrics_per_task_and_on_the_real_line(tiny_gmdrit_run, tmp_path):
    base, root = tiny_gmdrit_run
    report = evaluate(
        EvalOptions(
            run=base / "run",
            data=str(root),
            metrics="hue_match,foreign_hue",
            samples_per_input=2,
            out=tmp_path / "out",
            device="cpu",
        )
    ).report
    bins = report["protocols"]["hue_match"]["prototypes"]
    for task in report["tasks"]:
        value = task["foreign_hue"]
        if value["real_share"] > 0:
            assert value["ratio"] == pytest.approx(value["share"] / value["real_share"])
        else:  # random test images hold every hue: nothing to divide by
            assert value["ratio"] is None
        # recompute the share from the saved PNGs and the recorded foreign bins of the target
        pngs = sorted(Path(task["folder"]).glob("*.png"))
        fakes = torch.stack([torch.from_numpy(np.asarray(Image.open(p)).copy()).permute(2, 0, 1) for p in pngs])
        foreign = torch.zeros(colour.HUE_BINS + 1, dtype=torch.bool)
        foreign[bins[task["target"]]["foreign_bins"]] = True
        shares = colour.foreign_share(colour.colour_histograms(fakes), foreign)
        assert value["share"] == pytest.approx(float(shares.mean()))
        assert 0.0 <= task["hue_match"]["share"] <= 1.0 and len(pngs) == 8
    for row in report["reference"].values():
        assert row["foreign_hue"]["ratio"] == 1.0 and 0.0 <= row["hue_match"]["share"] <= 1.0
    assert report["mean"]["hue_match"] == pytest.approx(np.mean([t["hue_match"]["share"] for t in report["tasks"]]))
