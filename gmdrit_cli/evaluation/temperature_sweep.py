"""`gmdrit eval --temperature 0.7,0.8,0.9,1.0`: one evaluation per sampling temperature, a rule that picks one,
and the pick stored with the model.

The temperature scales the standard deviation of the random attributes: lower is more faithful to the target
domain, higher more diverse. It is a setting chosen by looking at figures, so it is chosen on the validation split
(``--split val``: training images held out by ``data.val_fraction``) and only then reported on the test split.
The rule (:func:`choose_temperature`): the highest temperature whose translations are taken for the target domain
at least ``min_accuracy`` of the time in every task; when none reaches it, the one with the best worst task.
A choice made on the validation split of a run is written to ``RUN/sampling.json``, which every later translate,
eval and export of that run reads as ``model.sample_temperature``.
"""

from __future__ import annotations

import math
import os
import sys
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path

from .. import atomic
from ..outputs import claimed_folder
from .evaluate import EvalOptions, EvalResult, ProgressCallback, _default_out, evaluate
from .metrics import MetricError

#: the accuracy every task must reach by default: the pretrained model's target (README "The pretrained model")
MIN_ACCURACY = 0.9
#: more temperatures than this in one sweep is most likely a typo (each one is a full evaluation)
MAX_TEMPERATURES = 20
SWEEP_FILE = "sweep.json"


def parse_temperatures(text: str) -> list[float]:
    """``"0.7,0.8"`` -> [0.7, 0.8]: finite numbers above 0, no repeats, at most :data:`MAX_TEMPERATURES`."""
    values = []
    for part in (p.strip() for p in text.split(",")):
        try:
            value = float(part)
        except ValueError:
            raise MetricError(
                f"--temperature {text!r}: {part!r} is not a number; give one value or a "
                f"comma-separated list such as 0.7,0.8,0.9,1.0"
            ) from None
        if not (math.isfinite(value) and value > 0):
            raise MetricError(f"--temperature {part}: give finite numbers above 0 (1 = the model's prior)")
        if value not in values:
            values.append(value)
    if len(values) > MAX_TEMPERATURES:
        raise MetricError(
            f"--temperature: {len(values)} values; at most {MAX_TEMPERATURES} (each one is a whole evaluation)"
        )
    return values


def sweep_threshold(min_accuracy: float | None, temperatures: list[float]) -> float:
    """The domain accuracy a sweep of ``temperatures`` requires: ``min_accuracy`` (None: :data:`MIN_ACCURACY`),
    a fraction in (0, 1]. Given without a sweep (one temperature or none) it would choose nothing, so it is
    refused rather than silently ignored."""
    if min_accuracy is None:
        return MIN_ACCURACY
    if len(temperatures) < 2:
        raise MetricError(
            "--min-accuracy is the domain accuracy a temperature sweep requires to choose a temperature; it "
            "applies only with several --temperature values (e.g. 0.7,0.8,0.9,1.0): leave it out, or give them"
        )
    if not (math.isfinite(min_accuracy) and 0 < min_accuracy <= 1):
        raise MetricError(f"--min-accuracy {min_accuracy}: give a fraction in (0, 1]")
    return min_accuracy


@dataclass
class SweepRow:
    temperature: float
    result: EvalResult

    def accuracies(self) -> list[float]:
        """The share of outputs taken for the target domain, one per task (domain_accuracy's to_target)."""
        return [task["domain_accuracy"]["to_target"] for task in self.result.report["tasks"]]


@dataclass
class SweepResult:
    rows: list[SweepRow]
    chosen: float | None
    reason: str
    json_path: Path
    stored: Path | None = None
    notes: list[str] = field(default_factory=list)


def choose_temperature(rows: list[tuple[float, list[float]]], min_accuracy: float) -> tuple[float, str]:
    """(temperature, why) from (temperature, domain accuracy of every task) rows: the highest temperature whose
    every task reaches ``min_accuracy``; else the one whose worst task is best (ties: the higher temperature)."""
    passing = [t for t, accs in rows if accs and min(accs) >= min_accuracy]
    if passing:
        return max(passing), f"the highest temperature with domain_accuracy >= {min_accuracy:g} in every task"
    best = max(rows, key=lambda r: (min(r[1]) if r[1] else -1.0, r[0]))
    return best[0], (
        f"no temperature reached domain_accuracy {min_accuracy:g} in every task: the one whose worst task is best"
    )


def _store(run: Path, record: dict) -> Path:
    """Write ``RUN/sampling.json`` (keeping the earlier choices under ``history``); ``run`` is the run folder."""
    from ..inference.model_files import SAMPLING_FILE, read_sampling

    path = run / SAMPLING_FILE
    earlier = read_sampling(run)
    history = (earlier.get("history", []) + [{k: v for k, v in earlier.items() if k != "history"}]) if earlier else []
    atomic.write_json(path, {**record, "history": history})
    return path


def sweep(
    o: EvalOptions,
    temperatures: list[float],
    min_accuracy: float = MIN_ACCURACY,
    on_progress: ProgressCallback | None = None,
) -> SweepResult:
    """Evaluate ``o`` once per temperature (outputs in ``OUT/t<temperature>/``), choose one (needs the
    ``domain_accuracy`` metric), and on the validation split of a run store the choice in ``RUN/sampling.json``."""
    from ..inference.model_files import resolve_model, run_folder_of

    if o.mode != "latent":
        raise MetricError("--temperature scales random attributes: a sweep needs --mode latent")
    if not 0 < min_accuracy <= 1:
        raise MetricError(f"--min-accuracy {min_accuracy}: give a fraction in (0, 1]")
    source = resolve_model(o.run)
    run = run_folder_of(None if o.run is None else Path(o.run))
    if o.split == "val" and run is not None and not os.access(run, os.W_OK):  # found now, not after the sweep
        raise MetricError(
            f"{run} cannot be written, so a choice made on its validation split could not be stored in "
            f"{run / 'sampling.json'}: make it writable, or export the checkpoint and sweep the export"
        )
    # an earlier sweep (or one running at the same time) is never replaced: this one gets the first free OUT,
    # OUT-2, ... and holds it while it runs (gmdrit_cli.outputs)
    wanted = (
        Path(o.out).expanduser()
        if o.out is not None
        else _default_out(None if o.run is None else Path(o.run), source.iteration, "sweep", o.split)
    )
    with claimed_folder(wanted) as base:
        return _sweep_into(base, o, temperatures, min_accuracy, on_progress)


def _sweep_into(
    base: Path,
    o: EvalOptions,
    temperatures: list[float],
    min_accuracy: float,
    on_progress: ProgressCallback | None,
) -> SweepResult:
    """The evaluations, choice and sweep.json of :func:`sweep`, into its folder ``base``."""
    from ..inference.model_files import run_folder_of

    rows = []
    for t in temperatures:
        result = evaluate(replace(o, temperature=t, out=base / f"t{t:g}"), on_progress)
        rows.append(SweepRow(t, result))
    notes: list[str] = []
    chosen, reason = None, "not chosen: add domain_accuracy to --metrics"
    if "domain_accuracy" in rows[0].result.metrics:
        chosen, reason = choose_temperature([(r.temperature, r.accuracies()) for r in rows], min_accuracy)
    report = rows[0].result.report
    record = {
        "sample_temperature": chosen,
        "rule": reason,
        "min_accuracy": min_accuracy,
        "split": o.split,
        "chosen": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "command": " ".join(["gmdrit", *sys.argv[1:]]) if sys.argv and "gmdrit" in sys.argv[0] else None,
        "model": report["model"],
        "samples_per_input": report["settings"]["samples_per_input"],
        "rows": [
            {
                "temperature": r.temperature,
                "eval": str(r.result.json_path),
                "tasks": r.result.report["tasks"],
                "mean": r.result.report["mean"],
            }
            for r in rows
        ],
    }
    json_path = base / SWEEP_FILE
    atomic.write_json(json_path, record)
    stored = None
    run = run_folder_of(o.run)
    if chosen is not None:
        if o.split != "val":
            notes.append("chosen on the test split: not stored (choose on held-out images: --split val)")
        elif run is None:
            notes.append("not stored: only a run folder keeps a chosen temperature (export it afterwards)")
        else:
            stored = _store(
                run,
                {k: v for k, v in record.items() if k != "rows"}
                | {
                    "sweep": str(json_path),
                    "values": [{"temperature": r.temperature, "mean": r.result.report["mean"]} for r in rows],
                },
            )
    return SweepResult(rows, chosen, reason, json_path, stored, notes)
