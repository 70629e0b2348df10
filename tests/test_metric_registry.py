"""Every `gmdrit eval` metric is an Evaluator named by its registry entry (metrics/evaluator.py)."""

from gmdrit_cli.evaluation.metrics import METRICS
from gmdrit_cli.evaluation.metrics.evaluator import Evaluator


def test_every_registered_metric_names_an_evaluator():
    served: dict[type, set[str]] = {}
    for name, info in METRICS.items():
        cls = info.evaluator_class
        assert issubclass(cls, Evaluator), name
        served.setdefault(cls, set()).add(name)
    for cls, names in served.items():
        assert set(cls.table_columns) <= names, cls  # columns only for metrics the evaluator computes
    orders = [c.order for cls in served for c in cls.table_columns.values()]
    assert len(orders) == len(set(orders))  # one place per column in the printed table
