"""Reading a run's ``metrics.jsonl`` and sorting its loss terms into groups.

TensorBoard tags (``tb_log.py``) and the report's charts (``report.py``) use the same groups, so a loss
term sits in the same chart in both. No torch, no matplotlib here: both readers import this cheaply.
"""

from __future__ import annotations

from pathlib import Path

from .. import jsonfile

#: the loss groups, in display order: (group, title, does this loss key belong to it)
LOSS_GROUPS: tuple[tuple[str, str, object], ...] = (
    ("discriminators", "discriminator losses (real vs fake, domain classification)", lambda k: k.startswith("dis_")),
    ("generator", "generator adversarial and classification terms", lambda k: k.startswith(("adv_", "cls_"))),
    (
        "reconstruction",
        "reconstruction terms (self, cross-cycle, latent regression, p(x|z) thumbnail)",
        lambda k: k in ("self_recon", "cycle_recon", "latent", "thumb_rec") or k.endswith("_recon"),
    ),
    (
        "latent",
        "attribute space terms (KL divergences, q(y|x) labels)",
        lambda k: k.startswith("kl_") or k in ("label", "label_sim"),
    ),
    ("diversity", "mode-seeking term", lambda k: k == "mode_seeking"),
    ("totals", "encoder/generator objectives (sums of their terms)", lambda k: k.startswith("loss_")),
    (
        "schedule",
        "schedules (learning-rate factor, Gumbel-softmax temperature)",
        lambda k: k in ("lr_factor", "gumbel_tau"),
    ),
)
OTHER_GROUP = ("other", "other logged values")


def loss_group(key: str) -> str:
    """The group name of a metrics.jsonl key (``"other"`` for keys no group claims)."""
    for name, _, belongs in LOSS_GROUPS:
        if belongs(key):
            return name
    return OTHER_GROUP[0]


def group_titles() -> dict[str, str]:
    """Group name -> its one-line title, in display order."""
    return {name: title for name, title, _ in LOSS_GROUPS} | {OTHER_GROUP[0]: OTHER_GROUP[1]}


def read_metrics(path: str | Path) -> list[dict]:
    """Every complete line of a ``metrics.jsonl``, in file order (a line cut off by a kill is skipped).

    A line is ``{"iter": int, "epoch": int, "lr_factor": float, "time": float, <loss>: float, ...}``.
    """
    path = Path(path)
    if not path.is_file():  # missing, or a folder in its place: no loss curves (the report says so)
        return []
    records = []
    for line in _lines(path):
        record = _record(line)
        if record is not None:
            records.append(record)
    return records


def _lines(path: Path) -> list[str]:
    # bytes that are not UTF-8 (a damaged file) spoil their line only, which is then skipped
    return path.read_bytes().decode("utf-8", "replace").splitlines()


def _record(line: str) -> dict | None:
    try:
        record = jsonfile.loads(line)
    except (ValueError, RecursionError):
        return None
    if not isinstance(record, dict) or not isinstance(record.get("iter"), int):
        return None
    return record


def damaged_metric_lines(path: str | Path) -> int:
    """Non-empty lines of a ``metrics.jsonl`` that are not a complete record (0 when there is no file)."""
    path = Path(path)
    if not path.is_file():
        return 0
    return sum(1 for line in _lines(path) if line.strip() and _record(line) is None)


def series(records: list[dict]) -> dict[str, tuple[list[int], list[float]]]:
    """``{key: (iterations, values)}`` for every numeric key but ``iter``/``epoch``/``time``; a later line
    for an iteration already seen replaces the earlier one (a resumed run re-logs those iterations)."""
    latest: dict[int, dict] = {}
    for record in records:
        latest[record["iter"]] = record
    out: dict[str, tuple[list[int], list[float]]] = {}
    for it in sorted(latest):
        for key, value in latest[it].items():
            if key in ("iter", "epoch", "time") or not isinstance(value, (int, float)) or isinstance(value, bool):
                continue
            xs, ys = out.setdefault(key, ([], []))
            xs.append(it)
            ys.append(float(value))
    return out
