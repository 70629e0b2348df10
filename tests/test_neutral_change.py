"""The neutral_change metric: synthetic pictures with a known share of changed plain pixels, and the metric inside
`gmdrit eval` recomputed from the PNGs it saved."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from gmdrit_cli.evaluation.evaluate import EvalOptions, evaluate
from gmdrit_cli.evaluation.metrics.images import open_images
from gmdrit_cli.evaluation.metrics.neutral import neutral_change_shares


def _product_photo() -> torch.Tensor:
    """uint8 1 x 3 x 10 x 10: a white background with an orange square of 4 x 4 pixels."""
    image = torch.full((1, 3, 10, 10), 250, dtype=torch.uint8)
    image[:, :, 3:7, 3:7] = torch.tensor([240, 140, 20], dtype=torch.uint8).view(1, 3, 1, 1)
    return image


def test_recolouring_the_object_changes_no_plain_pixel():
    photo = _product_photo()
    apple = photo.clone()
    apple[:, :, 3:7, 3:7] = torch.tensor([200, 30, 40], dtype=torch.uint8).view(1, 3, 1, 1)
    assert neutral_change_shares(photo, apple).tolist() == [0.0]
    slight = photo.clone()
    slight[:, :, :2] -= 20  # a faint shade on two rows: below the visible change
    assert neutral_change_shares(photo, slight).tolist() == [0.0]


def test_a_tinted_background_counts_its_share_of_the_plain_pixels():
    photo = _product_photo()
    teal = photo.clone()
    teal[:, 0, :3] = 60  # the top three rows lose their red: mean change 190 / 3 over RGB
    # 84 plain pixels (100 - 16), of which the top 30 changed
    assert neutral_change_shares(photo, teal).tolist() == [pytest.approx(30 / 84)]
    orange_only = torch.zeros(1, 3, 10, 10, dtype=torch.uint8)
    orange_only[:, 0] = 250  # no plain pixel: left out
    assert neutral_change_shares(orange_only, teal).numel() == 0


def test_eval_reports_the_share_recomputed_from_its_pngs(tiny_gmdrit_run, tmp_path):
    base, root = tiny_gmdrit_run
    report = evaluate(
        EvalOptions(
            run=base / "run",
            data=str(root),
            metrics="neutral_change",
            samples_per_input=2,
            out=tmp_path / "out",
            device="cpu",
        )
    ).report
    from gmdrit_cli.inference.model_files import load_for_inference

    cfg, _ = load_for_inference(base / "run")
    test = open_images(str(root), cfg, "test")
    for task in report["tasks"]:
        source = cfg.data.domains.index(task["source"])
        inputs = torch.cat([b for b, _ in test.batches(source, 100)])
        pngs = sorted(Path(task["folder"]).glob("*.png"))
        fakes = torch.stack([torch.from_numpy(np.asarray(Image.open(p)).copy()).permute(2, 0, 1) for p in pngs])
        shares = neutral_change_shares(inputs.repeat_interleave(2, dim=0), fakes)
        assert task["neutral_change"]["outputs"] == len(shares) > 0
        assert task["neutral_change"]["percent"] == pytest.approx(float(shares.mean()) * 100)
    assert "neutral_change" not in next(iter(report["reference"].values()))
