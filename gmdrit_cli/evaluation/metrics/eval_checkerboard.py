"""The grid pattern in `gmdrit eval`: grid-frequency power of the outputs relative to real target images."""

from __future__ import annotations

import torch

from .evaluator import Evaluator, TableColumn, fmt


def _cell(row: dict, real: bool) -> str:
    value = row.get("checkerboard")
    return "-" if value is None else f"{value['ratio']:.2f}"


class CheckerboardScores(Evaluator):
    """Per task, the outputs' mean share of luminance power at the grid frequencies (``checkerboard.py``) divided
    by the same mean share of the target's real test images, which are preprocessed to the output size (the real
    line is 1 by construction and shows the share itself)."""

    reference_order = 6
    table_columns = {
        "checkerboard": TableColumn("checkerboard", 12, _cell, lambda mean, real: fmt(mean.get("checkerboard"), 2))
    }

    def __init__(self, ctx, names):
        super().__init__(ctx, names)
        self._real_share: dict[int, float] = {}

    def _real(self, target: int) -> float:
        from .checkerboard import grid_power_share

        if target not in self._real_share:
            self._real_share[target] = float(grid_power_share(self.ctx.test_images[target]).mean())
        return self._real_share[target]

    def reference(self, target, real):
        return {"checkerboard": {"ratio": 1.0, "share": self._real(target), "images": len(real)}}

    def start_task(self, source, target):
        self.target, self.shares = target, []

    def update(self, fakes, per_input):
        from .checkerboard import grid_power_share

        self.shares.append(grid_power_share(fakes))

    def task_result(self):
        share = float(torch.cat(self.shares).mean())
        real = self._real(self.target)
        return {
            "checkerboard": {"ratio": share / real if real > 0 else float("inf"), "share": share, "real_share": real}
        }

    def protocols(self):
        return {
            "checkerboard": {
                "share": "per image: power of the mean-removed Rec. 601 luma at the 15 FFT bins (ky, kx), ky and kx "
                "multiples of a quarter of the size (patterns of period 2 and 4, both axes), over its total "
                "power",
                "ratio": "mean share of the outputs / mean share of the target's real test images at the same size "
                "(1 = no more grid than photos)",
            }
        }

    def summaries(self):
        return [("checkerboard", lambda r: r["checkerboard"]["ratio"] if "checkerboard" in r else None)]
