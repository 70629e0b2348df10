"""Diversity in `gmdrit eval`: LPIPS and 1 - MS-SSIM over all pairs of the outputs of one input."""

from __future__ import annotations

import numpy as np

from . import MetricError
from .evaluator import Evaluator, TableColumn, fmt, to_float

#: random pairs of distinct real test images for the reference line's set-level LPIPS and MS-SSIM
REAL_PAIRS = 1000


def _diversity_column(key: str, header: str, order: int) -> TableColumn:
    """The per-input diversity ``key`` on task rows, its set-level ``<key>_set`` on the reference lines."""

    def cell(row: dict, real: bool) -> str:
        value = row.get(f"{key}_set" if real else key)
        return "-" if value is None else f"{value['mean']:.4f}"

    return TableColumn(header, order, cell, lambda mean, real: fmt(mean.get(f"{key}_set" if real else key), 4))


class _PairDiversity(Evaluator):
    """Mean over inputs of the mean distance over all pairs of that input's outputs; the reference line: the
    mean over up to :data:`REAL_PAIRS` random pairs of distinct real test images of the target."""

    key: str  # the row key (``<key>_set`` on the reference line)

    @classmethod
    def check_options(cls, o, names):
        if o.samples_per_input < 2:
            raise MetricError(
                f"{cls.key} compares outputs of one input: use --samples-per-input 2 or more, "
                f"or leave {cls.key} out of --metrics"
            )

    def _diversity(self, outputs):
        raise NotImplementedError

    def _random_pairs(self, real) -> tuple[float, int]:
        raise NotImplementedError

    def reference(self, target, real):
        if len(real) < 2:
            return {}
        value, pairs = self._random_pairs(real)
        return {f"{self.key}_set": {"mean": value, "pairs": pairs}}

    def start_task(self, source, target):
        self.values: list[float] = []
        self.distinct = 0  # inputs whose outputs are not all the same 8-bit image

    def update(self, fakes, per_input):
        m = per_input
        groups = [fakes[i * m : (i + 1) * m] for i in range(len(fakes) // m)]
        self.values += [self._diversity(g) for g in groups]
        self.distinct += sum(bool((g != g[:1]).any()) for g in groups)
        self.per_input = m

    def task_result(self):
        m = self.options.samples_per_input
        return {
            self.key: {
                "mean": float(np.mean(self.values)),
                "std_over_inputs": float(np.std(self.values)),
                "inputs": len(self.values),
                "pairs_per_input": m * (m - 1) // 2,
                "inputs_with_distinct_outputs": self.distinct / max(1, len(self.values)),
            }
        }

    def summaries(self):
        key = self.key
        return [
            (key, lambda r: r[key]["mean"] if key in r else None),
            (f"{key}_set", lambda r: r[f"{key}_set"]["mean"] if f"{key}_set" in r else None),
        ]

    def _reference_line(self) -> str:
        return (
            f"set-level: mean over up to {REAL_PAIRS} random pairs of distinct real test images of the target "
            f"(numpy default_rng({self.options.seed}))"
        )


class LPIPSScores(_PairDiversity):
    key = "lpips"
    reference_order = 2
    table_columns = {"lpips": _diversity_column("lpips", "LPIPS", 2)}

    def __init__(self, ctx, names):
        super().__init__(ctx, names)
        from .lpips_diversity import LPIPSDiversity

        o = self.options
        self.lpips = LPIPSDiversity(o.lpips_version, o.lpips_backbone_weights, ctx.device)

    def _diversity(self, outputs):
        return self.lpips.diversity(to_float(outputs, self.ctx.device))

    def _random_pairs(self, real):
        return self.lpips.random_pairs(to_float(real, self.ctx.device), REAL_PAIRS, self.options.seed)

    def protocols(self):
        return {
            "lpips": {
                "pairs": "all M(M-1)/2 pairs of the M outputs of one input; mean per input, "
                "then mean over inputs (StarGAN v2)",
                "reference_line": self._reference_line(),
                **self.lpips.info(),
            }
        }

    def weights(self):
        info = self.lpips.info()
        return {"lpips_backbone": info["backbone"], "lpips_linear": info["linear"]}


class MSSSIMScores(_PairDiversity):
    key = "diversity_msssim"
    reference_order = 3
    table_columns = {"diversity_msssim": _diversity_column("diversity_msssim", "1-MS-SSIM", 3)}

    def __init__(self, ctx, names):
        super().__init__(ctx, names)
        from .msssim_diversity import MSSSIMDiversity

        self.msssim = MSSSIMDiversity(ctx.cfg.data.crop, ctx.device)

    def _diversity(self, outputs):
        return self.msssim.diversity(outputs)

    def _random_pairs(self, real):
        return self.msssim.random_pairs(real, REAL_PAIRS, self.options.seed)

    def protocols(self):
        return {
            "diversity_msssim": {
                "pairs": "all M(M-1)/2 pairs of the M outputs of one input; mean per input, then mean over inputs",
                "reference_line": self._reference_line(),
                **self.msssim.info(),
            }
        }

    def seeds(self):
        return {"msssim_real": f"seed {self.options.seed}"}
