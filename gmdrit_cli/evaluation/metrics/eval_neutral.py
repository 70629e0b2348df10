"""Plain parts kept in `gmdrit eval`: ``neutral_change`` (``neutral.py``), per task from each output and its input."""

from __future__ import annotations

import torch

from .evaluator import Evaluator, TableColumn, fmt


def _cell(row: dict, real: bool) -> str:
    value = row.get("neutral_change")
    return "-" if value is None or value["percent"] is None else f"{value['percent']:.1f}%"


def _pct(mean: dict) -> str:
    return fmt(mean["neutral_change"], 1) + "%"


class NeutralChangeScores(Evaluator):
    """Per task, the percentage of the inputs' colourless pixels their translations visibly change (mean over the
    outputs whose input has a plain part). Translations have inputs, real images do not: no real line."""

    reference_order = 8
    table_columns = {
        "neutral_change": TableColumn(
            "neutral change", 18, _cell, lambda mean, real: "-" if real or "neutral_change" not in mean else _pct(mean)
        )
    }

    def start_task(self, source, target):
        self.inputs, self.offset, self.shares = self.ctx.test_images[source], 0, []

    def update(self, fakes, per_input):
        from .neutral import neutral_change_shares

        n = len(fakes) // per_input
        inputs = self.inputs[self.offset : self.offset + n].repeat_interleave(per_input, dim=0)
        self.offset += n
        self.shares.append(neutral_change_shares(inputs, fakes))

    def task_result(self):
        shares = torch.cat(self.shares)
        percent = float(shares.mean()) * 100.0 if len(shares) else None
        return {"neutral_change": {"percent": percent, "outputs": len(shares)}}

    def protocols(self):
        from .neutral import COLOURLESS_CHROMA, MIN_COLOURLESS, VISIBLE_CHANGE

        return {
            "neutral_change": f"per output: the share of its input's colourless pixels (chroma max - min of RGB < "
            f"{COLOURLESS_CHROMA:g} on 0..1) whose value moves by more than {VISIBLE_CHANGE:g} (mean over RGB); "
            f"mean over the outputs whose input has at least {MIN_COLOURLESS:.0%} colourless pixels, in percent"
        }

    def summaries(self):
        return [
            (
                "neutral_change",
                lambda r: r["neutral_change"]["percent"] if "neutral_change" in r and r["neutral_change"] else None,
            )
        ]
